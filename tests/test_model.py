"""HarmonyModel: layouts vs the public checkpoints, GLDI locality, RoPE alignment, shapes, errors."""
import json
import re
from pathlib import Path

import pytest
import torch

from harmony import attention as attn
from harmony import keymap
from harmony.config import HarmonyConfig, get_config
from harmony.interaction import audio_positions, audio_time, local_window_mask, style_alignment_step
from harmony.model import Conditioning, HarmonyModel
from harmony.rope import apply_rope, audio_rope, video_rope
from harmony.tower import WanTower

REF = Path(__file__).parent / "fixtures" / "reference"
GLDI_ONLY = re.compile(r"^audio_model\.blocks\.(\d+)\.(norm_style|style_attn)\.")


def _listing(name):
    rows = [line.rstrip("\n").split("\t") for line in (REF / name).read_text().splitlines()[1:]]
    return {n: tuple(int(x) for x in s.strip("[]").split(",") if x.strip()) for n, s, _ in rows}


def _shapes(module):
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _randomize(model, seed=0):
    """Random non-zero weights everywhere (default init leaves style_attn.o at zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) / (p[0].numel() ** 0.5))
            else:
                p.copy_(0.02 * torch.randn(p.shape, generator=g))
    return model.eval()


def _inputs(cfg, B=1, F=5, H=4, W=4, La=25, Lr=0, seed=1):
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(B, cfg.video.in_dim, F, H, W, generator=g)
    audio = torch.randn(B, La, cfg.audio.in_dim, generator=g)
    ref = torch.randn(B, Lr, cfg.audio.in_dim, generator=g) if Lr else None
    cond = Conditioning(torch.randn(B, 7, cfg.video.text_dim, generator=g),
                        torch.randn(B, 9, cfg.audio.text_dim, generator=g), ref)
    return video, audio, cond


# --- layouts on the meta device -------------------------------------------------

@pytest.fixture(scope="module")
def meta_models():
    with torch.device("meta"):
        return (WanTower(get_config("5b").video), HarmonyModel(get_config("5b-global")), HarmonyModel(get_config("5b")))


def test_5b_video_tower_is_wan22_ti2v_5b(meta_models):
    wan = _listing("wan22_ti2v_5b.params.tsv")
    ours = _shapes(meta_models[0])
    assert ours == wan, f"differs: {sorted(set(ours) ^ set(wan))[:10]}"


def test_5b_global_is_ovi_fusion_through_keymap(meta_models):
    ovi = _listing("ovi_fusion.params.tsv")
    ours = {keymap.to_upstream(k, "ovi"): s for k, s in _shapes(meta_models[1]).items()}
    assert ours == ovi, f"differs: {sorted(set(ours) ^ set(ovi))[:10]}"


def test_5b_gldi_adds_only_style_alignment(meta_models):
    glob, gldi = _shapes(meta_models[1]), _shapes(meta_models[2])
    assert set(glob) <= set(gldi) and all(gldi[k] == glob[k] for k in glob)
    extra = set(gldi) - set(glob)
    assert extra and all(GLDI_ONLY.match(k) for k in extra), sorted(extra)[:5]
    assert {int(GLDI_ONLY.match(k).group(1)) for k in extra} == set(range(30))
    assert all(keymap.to_upstream(k, "ovi") is None for k in extra)


# --- key maps -----------------------------------------------------------------------

def test_keymap_round_trip_and_detect():
    assert keymap.to_upstream("video_model.blocks.3.modulation", "ovi") == "video_model.blocks.3.modulation.modulation"
    assert keymap.from_upstream_name("audio_model.blocks.3.modulation.modulation", "ovi") == "audio_model.blocks.3.modulation"
    assert keymap.to_upstream("video_model.head.modulation", "ovi") == "video_model.head.modulation"
    assert keymap.from_upstream_name("blocks.0.modulation", "wan2.2-ti2v-5b") == "video_model.blocks.0.modulation"
    assert keymap.from_upstream_name("model.diffusion_model.head.head.weight", "wan2.2-ti2v-5b") == "video_model.head.head.weight"
    assert keymap.to_upstream("audio_model.head.head.weight", "wan2.2-ti2v-5b") is None
    assert keymap.to_upstream("video_model.blocks.0.cross_attn.k_fusion.weight", "wan2.2-ti2v-5b") is None
    ovi = list(_listing("ovi_fusion.params.tsv"))
    assert keymap.detect_layout(ovi) == "ovi"
    assert keymap.detect_layout(list(_listing("wan22_ti2v_5b.params.tsv"))) == "wan2.2-ti2v-5b"
    assert keymap.detect_layout(keymap.from_upstream(dict.fromkeys(ovi), "ovi")) == "harmony"
    assert keymap.detect_layout(["encoder.conv1.weight"]) == "unknown"
    with pytest.raises(ValueError, match="known layouts"):
        keymap.to_upstream("x", "sd15")


def test_tiny_global_state_dict_loads_from_ovi_names():
    model = HarmonyModel(get_config("tiny-global"))
    ovi = {keymap.to_upstream(k, "ovi"): v for k, v in model.state_dict().items()}
    assert keymap.detect_layout(ovi) == "ovi"
    back = keymap.from_upstream(ovi, "ovi")
    assert back.keys() == model.state_dict().keys()


# --- GLDI -------------------------------------------------------------------------------

def test_local_window_mask():
    m = local_window_mask(5, 25, 1.0)  # audio token j at time j * 5 / 25 = 0.2 j
    assert m.shape == (5, 25)
    assert m[2].nonzero().flatten().tolist() == list(range(5, 16))  # |0.2 j - 2| <= 1
    tiny = local_window_mask(7, 3, 0.01)  # window smaller than the spacing: nearest partners kept
    assert tiny.any(dim=1).all() and tiny.any(dim=0).all()


def test_rope_rescaling_puts_audio_on_the_video_timeline():
    assert torch.allclose(audio_time(157, 31), torch.arange(157, dtype=torch.float64) * 31 / 157)
    assert audio_time(157, 31)[157 // 2].item() == pytest.approx(78 * 31 / 157)
    cfg = get_config("tiny")
    pos = audio_positions(cfg, n_frames=5, n_audio=10, n_ref=3)
    assert torch.allclose(pos, (torch.arange(13, dtype=torch.float64) - 3) * 0.5)
    ovi_pos = audio_positions(cfg.replace(audio_rope="ovi"), 5, 10)
    assert torch.allclose(ovi_pos, torch.arange(10, dtype=torch.float64) * 0.19676)
    # audio token j = 4 sits at time 2.0: its rotated pairs turn exactly like video frame 2's t pairs
    d = cfg.audio.head_dim
    nt = cfg.audio.rope_pairs[0]
    ra = audio_rope(audio_positions(cfg, 5, 10), d)
    rv = video_rope((5, 2, 2), d)
    assert torch.equal(ra.cos[4, :nt], rv.cos[2 * 4, :nt]) and torch.equal(ra.sin[4, :nt], rv.sin[2 * 4, :nt])
    assert torch.all(ra.cos[:, nt:] == 1) and torch.all(ra.sin[:, nt:] == 0)  # the other pairs pass through
    x = torch.randn(1, 10, 2, d)
    assert torch.allclose(apply_rope(x, ra)[..., 2 * nt:], x[..., 2 * nt:])


def _tokens(model, video, audio):
    """Token states after the patch embeddings (the audio Conv1d mixes neighbouring latents)."""
    with torch.no_grad():
        v, grid = model.video_model.patchify(video)
        a, _ = model.audio_model.patchify(audio)
    return v, a, grid


def _layer0_cross(model, v, a, grid, cond, n_ref=0):
    """Layer-0 cross-attention outputs (video queries, audio queries) from token states."""
    vm, am = model.video_model, model.audio_model
    La = a.shape[1] - n_ref
    rope_v = vm.rope(grid)
    rope_a = am.rope((La + n_ref,), positions=audio_positions(model.cfg, grid[0], La, n_ref))
    plan = model.interaction.plan(grid, La + n_ref, n_ref, rope_v, rope_a)
    ctx_v, ctx_a = vm.embed_text(cond.video_context), am.embed_text(cond.audio_context)
    vb, ab = vm.blocks[0], am.blocks[0]
    return (model.interaction.video_cross(vb, v, a, ctx_v, plan),
            model.interaction.audio_cross(ab, a, v, ctx_a, plan))


def test_gldi_local_attention_is_local():
    torch.manual_seed(0)
    model = _randomize(HarmonyModel(get_config("tiny")))
    F, H, W, La = 5, 4, 4, 25
    video, audio, cond = _inputs(model.cfg, F=F, H=H, W=W, La=La)
    v, a, grid = _tokens(model, video, audio)
    window = local_window_mask(F, La, model.cfg.local_window)
    hw = (H // 2) * (W // 2)
    frame = 0
    inside, outside = window[frame], ~window[frame]
    with torch.no_grad():
        v0, a0 = _layer0_cross(model, v, a, grid, cond)
        far = a.clone()
        far[:, outside] += 3 * torch.randn_like(far[:, outside])
        v1, _ = _layer0_cross(model, v, far, grid, cond)
        near = a.clone()
        near[:, inside] += 3 * torch.randn_like(near[:, inside])
        v2, _ = _layer0_cross(model, v, near, grid, cond)
        rows = slice(frame * hw, (frame + 1) * hw)
        assert torch.equal(v1[:, rows], v0[:, rows]), "frame 0 changed when only audio outside its window changed"
        assert (v2[:, rows] - v0[:, rows]).abs().max() > 1e-3, "frame 0 ignores audio inside its window"
        assert (v1 - v0).abs().max() > 1e-3  # later frames do see that audio
        # the other direction: audio token 0 sees only the video frames within the window of its time
        far_frames = (~window[:, 0]).repeat_interleave(hw)
        vid_far = v.clone()
        vid_far[:, far_frames] += 3 * torch.randn_like(vid_far[:, far_frames])
        _, a1 = _layer0_cross(model, vid_far, a, grid, cond)
        assert torch.equal(a1[:, 0], a0[:, 0]), "audio token 0 saw video frames outside its window"
        assert (a1 - a0).abs().max() > 1e-3


def test_global_fusion_is_not_local():
    model = _randomize(HarmonyModel(get_config("tiny-global")))
    v, a, grid = _tokens(model, *_inputs(model.cfg)[:2])
    cond = _inputs(model.cfg)[2]
    far = a.clone()
    far[:, 15:] += 3 * torch.randn_like(far[:, 15:])  # (a constant shift would vanish in the LayerNorm)
    with torch.no_grad():
        v0, _ = _layer0_cross(model, v, a, grid, cond)
        v1, _ = _layer0_cross(model, v, far, grid, cond)
    assert (v1[:, :4] - v0[:, :4]).abs().max() > 1e-3


def test_reference_voice_is_outside_the_local_path_and_style_changes_only_it():
    model = _randomize(HarmonyModel(get_config("tiny")))
    n_ref = 4
    video, audio, cond = _inputs(model.cfg, La=25, Lr=n_ref)
    v, a, grid = _tokens(model, video, torch.cat([cond.ref_audio, audio], 1))
    moved = a.clone()
    moved[:, :n_ref] += 3 * torch.randn_like(moved[:, :n_ref])
    with torch.no_grad():
        v0, a0 = _layer0_cross(model, v, a, grid, cond, n_ref=n_ref)
        v1, a1 = _layer0_cross(model, v, moved, grid, cond, n_ref=n_ref)
        assert torch.equal(v0, v1), "video's local attention saw the reference-voice tokens"
        assert torch.equal(a0[:, n_ref:], a1[:, n_ref:])
        # style alignment: reference tokens attend the whole video; target audio untouched
        block = model.audio_model.blocks[0]
        tokens = torch.randn(1, n_ref + 25, model.cfg.audio.dim)
        vid = torch.randn(1, 80, model.cfg.video.dim)
        out = style_alignment_step(block, tokens, vid, n_ref)
        assert torch.equal(out[:, n_ref:], tokens[:, n_ref:])
        assert (out[:, :n_ref] - tokens[:, :n_ref]).abs().max() > 1e-3
        vid2 = vid.clone()
        vid2[:, -1] += 3 * torch.randn_like(vid2[:, -1])  # the last video token, far from anything local: the global path sees it
        assert (style_alignment_step(block, tokens, vid2, n_ref) - out).abs().max() > 1e-4


def test_gldi_with_an_all_covering_window_equals_global_fusion():
    """GLDI reuses the fusion parameters: with no ref audio and a window covering everything it is Ovi's fusion."""
    glob = _randomize(HarmonyModel(get_config("tiny-global").replace(audio_rope="aligned")))
    gldi = HarmonyModel(get_config("tiny").replace(local_window=1e6))
    missing, unexpected = gldi.load_state_dict(glob.state_dict(), strict=False)
    assert not unexpected and missing and all(GLDI_ONLY.match(k) for k in missing)
    gldi.eval()
    video, audio, cond = _inputs(glob.cfg, B=2)
    with torch.no_grad():
        vg, ag = glob(video, audio, torch.tensor([900.0, 100.0]), torch.tensor([300.0, 700.0]), cond)
        vl, al = gldi(video, audio, torch.tensor([900.0, 100.0]), torch.tensor([300.0, 700.0]), cond)
    torch.testing.assert_close(vl, vg, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(al, ag, atol=1e-5, rtol=1e-5)


# --- forward: shapes, timesteps, determinism -----------------------------------------

@pytest.mark.parametrize("name", ["tiny", "tiny-global"])
@pytest.mark.parametrize("n_ref", [0, 6])
def test_tiny_shapes(name, n_ref):
    torch.manual_seed(0)
    model = HarmonyModel(get_config(name)).eval()
    B, F, La = 2, 3, 13
    video, audio, cond = _inputs(model.cfg, B=B, F=F, H=8, W=6, La=La, Lr=n_ref)
    t_video = torch.tensor([[0.0, 500.0, 500.0]] * B)  # I2AV: first latent frame clean
    with torch.no_grad():
        v, a = model(video, audio, t_video, torch.full((B, La), 500.0), cond)
    assert v.shape == video.shape and a.shape == audio.shape
    assert torch.isfinite(v).all() and torch.isfinite(a).all()


def test_timesteps_per_modality_and_per_frame():
    model = _randomize(HarmonyModel(get_config("tiny")))
    video, audio, cond = _inputs(model.cfg, F=3)
    with torch.no_grad():
        base = model(video, audio, torch.tensor([500.0]), torch.tensor([500.0]), cond)
        same = model(video, audio, torch.tensor([[500.0] * 3]), torch.full((1, 25), 500.0), cond)
        i2av = model(video, audio, torch.tensor([[0.0, 500.0, 500.0]]), torch.tensor([500.0]), cond)
        a2v = model(video, audio, torch.tensor([500.0]), torch.tensor([0.0]), cond)
    torch.testing.assert_close(same[0], base[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(same[1], base[1], atol=1e-5, rtol=1e-5)
    assert (i2av[0] - base[0]).abs().max() > 1e-3
    assert (a2v[1] - base[1]).abs().max() > 1e-3 and (a2v[0] - base[0]).abs().max() > 1e-4


def test_deterministic_and_layer_hook_and_slg():
    model = _randomize(HarmonyModel(get_config("tiny")))
    video, audio, cond = _inputs(model.cfg, Lr=3)
    seen = []
    model.layer_hook = seen.append
    with torch.no_grad():
        a = model(video, audio, torch.tensor([400.0]), torch.tensor([400.0]), cond)
        b = model(video, audio, torch.tensor([400.0]), torch.tensor([400.0]), cond)
        c = model(video, audio, torch.tensor([400.0]), torch.tensor([400.0]), cond, slg_layers=[2])
    assert seen == [0, 1, 2, 3] * 3
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert (c[0] - a[0]).abs().max() > 1e-3


def test_bf16_forward_runs_close_to_fp32():
    model = _randomize(HarmonyModel(get_config("tiny")))
    video, audio, cond = _inputs(model.cfg, Lr=2)
    t = torch.tensor([600.0])
    with torch.no_grad():
        v32, a32 = model(video, audio, t, t, cond)
        v16, a16 = model.to(torch.bfloat16)(video.bfloat16(), audio.bfloat16(), t, t, cond.to(torch.bfloat16))
    assert v16.dtype == torch.bfloat16
    rel = lambda x, y: ((x.float() - y).norm() / y.norm()).item()  # noqa: E731
    assert rel(v16, v32) < 0.05 and rel(a16, a32) < 0.05


# --- config / conditioning / attention ---------------------------------------------------

def test_config_round_trip_and_names():
    for name in ("5b", "5b-global", "tiny", "tiny-global"):
        cfg = get_config(name)
        assert HarmonyConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert get_config("5b").interaction == "gldi" and get_config("5b-global").audio_rope == "ovi"
    assert get_config("tiny").replace(local_window=2.5).local_window == 2.5
    with pytest.raises(ValueError, match="tiny-global"):
        get_config("huge")
    with pytest.raises(ValueError, match="interaction"):
        get_config("tiny").replace(interaction="cross")


def test_conditioning_repeat_and_cat():
    c = Conditioning(torch.randn(1, 5, 64), torch.randn(1, 7, 64), torch.randn(1, 3, 20))
    r = c.repeat(3)
    assert r.video_context.shape == (3, 5, 64) and r.ref_audio.shape == (3, 3, 20)
    d = Conditioning(torch.randn(2, 8, 64), torch.randn(2, 2, 64), torch.randn(2, 3, 20))
    both = Conditioning.cat([c, d])
    assert both.video_context.shape == (3, 8, 64) and both.audio_context.shape == (3, 7, 64)
    assert torch.equal(both.video_context[0, :5], c.video_context[0]) and both.video_context[0, 5:].abs().sum() == 0
    with pytest.raises(ValueError, match="ref_audio"):
        Conditioning.cat([c, Conditioning(d.video_context, d.audio_context)])


def test_attention_backends():
    assert attn.available_backends()[0] == "sdpa"
    q, k, v = torch.randn(2, 5, 3, 8), torch.randn(2, 7, 3, 8), torch.randn(2, 7, 3, 8)
    mask = torch.rand(5, 7) > 0.5
    mask[:, 0] = True
    logits = torch.einsum("bqhd,bkhd->bhqk", q, k) / 8 ** 0.5
    want = torch.einsum("bhqk,bkhd->bqhd", logits.masked_fill(~mask, float("-inf")).softmax(-1), v)
    torch.testing.assert_close(attn.attention(q, k, v, mask), want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(attn.Attention("sdpa")(q, k, v, mask), want, atol=1e-5, rtol=1e-5)
    for name in ("flash", "sage"):
        if name not in attn.available_backends():
            with pytest.raises(RuntimeError, match="available here: sdpa"):
                attn.check_backend(name)
    with pytest.raises(ValueError, match="unknown attention backend"):
        attn.Attention("xformers")


def test_attention_backend_belongs_to_the_model():
    """Every attention layer of a model uses that model's backend; another model is not affected."""
    a, b = HarmonyModel(get_config("tiny")), HarmonyModel(get_config("tiny-global"))
    layers = [m for m in a.modules() if hasattr(m, "attend")]
    assert len(layers) > 3 * a.num_layers and all(m.attend is a.attend for m in layers)
    assert any(type(m).__name__ == "StyleAlignment" for m in layers)
    a.attend.backend = "flash"  # (set directly: flash-attn need not be installed here)
    assert all(m.attend.backend == "flash" for m in layers)
    assert b.attention_backend == "sdpa" and HarmonyModel(get_config("tiny")).attention_backend == "sdpa"
    with pytest.raises(ValueError, match="unknown attention backend"):
        b.set_attention_backend("xformers")
    assert b.attention_backend == "sdpa"


@pytest.mark.parametrize("change, match", [
    (lambda v, a, tv, ta, c: (v[0], a, tv, ta, c), r"video must be a \[B, C, F, H, W\]"),
    (lambda v, a, tv, ta, c: (v[:, :8], a, tv, ta, c), "video has 8 channels"),
    (lambda v, a, tv, ta, c: (v, a.transpose(1, 2), tv, ta, c), "transpose"),
    (lambda v, a, tv, ta, c: (v, a[:1], tv, ta, c), "batch mismatch"),
    (lambda v, a, tv, ta, c: (v[..., :3], a, tv, ta, c), "not divisible by the patch size"),
    (lambda v, a, tv, ta, c: (v, a, tv, ta, Conditioning(c.video_context[..., :32], c.audio_context)), "text_dim=64"),
    (lambda v, a, tv, ta, c: (v, a, tv, ta, Conditioning(c.video_context[:1], c.audio_context)), "cond.repeat"),
    (lambda v, a, tv, ta, c: (v, a, torch.zeros(2, 4), ta, c), "t_video has shape"),
    (lambda v, a, tv, ta, c: (v, a, tv, torch.zeros(2, 7), c), "t_audio has shape"),
    (lambda v, a, tv, ta, c: (v, a, tv, ta, Conditioning(c.video_context, c.audio_context, torch.zeros(2, 3, 5))),
     "ref_audio must be"),
    (lambda v, a, tv, ta, c: (v, a, tv, ta, (c.video_context, c.audio_context)), "Conditioning"),
])
def test_clear_errors(change, match):
    model = HarmonyModel(get_config("tiny"))
    video, audio, cond = _inputs(model.cfg, B=2, F=3)
    args = change(video, audio, torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0]), cond)
    with pytest.raises((ValueError, TypeError), match=match):
        model(*args)


def test_text_longer_than_text_len_is_refused():
    model = HarmonyModel(get_config("tiny"))
    video, audio, cond = _inputs(model.cfg)
    n = model.cfg.video.text_len
    cond = Conditioning(torch.randn(1, n + 1, model.cfg.video.text_dim), cond.audio_context)
    with pytest.raises(ValueError, match=f"text_len={n}"):
        model(video, audio, torch.tensor([1.0]), torch.tensor([1.0]), cond)


# --- speed paths: same results (issue 15) ----------------------------------------------

def test_conv1d_as_one_matmul_equals_conv1d():
    from harmony.ops import Conv1d
    g = torch.Generator().manual_seed(0)
    for c_in, c_out, k, L in ((20, 64, 7, 13), (64, 96, 7, 5), (3, 8, 3, 1)):
        conv = Conv1d(c_in, c_out, k, padding=k // 2)
        with torch.no_grad():
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) / (c_in * k) ** 0.5)
            conv.bias.copy_(torch.randn(c_out, generator=g))
        x = torch.randn(2, L, c_in, generator=g)
        want = torch.nn.functional.conv1d(x.transpose(1, 2), conv.weight, conv.bias, padding=k // 2).transpose(1, 2)
        got = conv.forward_sequence(x)
        assert got.shape == want.shape
        assert (got - want).abs().max() <= 1e-6 * want.abs().max()  # fp32: summation order only
        conv64, x64 = conv.double(), x.double()
        want64 = torch.nn.functional.conv1d(x64.transpose(1, 2), conv64.weight, conv64.bias, padding=k // 2)
        assert (conv64.forward_sequence(x64) - want64.transpose(1, 2)).abs().max() <= 1e-12


def test_video_patch_embedding_as_one_matmul_equals_conv3d():
    from harmony.ops import Conv3d
    g = torch.Generator().manual_seed(0)
    conv = Conv3d(16, 32, kernel_size=(1, 2, 2), stride=(1, 2, 2))
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) / 8)
    x = torch.randn(2, 16, 3, 6, 8, generator=g)
    want = torch.nn.functional.conv3d(x, conv.weight, conv.bias, stride=(1, 2, 2))  # [B, C, f, h, w]
    tokens, grid = conv.forward_patches(x)
    assert grid == (3, 3, 4) and tokens.shape == (2, 36, 32)
    assert (tokens - want.flatten(2).transpose(1, 2)).abs().max() <= 1e-6 * want.abs().max()


def test_audio_patch_embedding_matches_ovi_conv_stack():
    """Conv1d k7 -> SiLU -> ConvMLP written with torch's conv1d (Ovi's formula) vs the unfolded matmuls."""
    model = _randomize(HarmonyModel(get_config("tiny")))
    pe = model.audio_model.patch_embedding
    x = torch.randn(2, 17, model.cfg.audio.in_dim)
    conv = lambda m, y: torch.nn.functional.conv1d(y, m.weight, m.bias, padding=m.padding)  # noqa: E731
    y = torch.nn.functional.silu(conv(pe[0], x.transpose(1, 2)))
    mlp = pe[2]
    want = conv(mlp.w2, torch.nn.functional.silu(conv(mlp.w1, y)) * conv(mlp.w3, y)).transpose(1, 2)
    with torch.no_grad():
        torch.testing.assert_close(pe(x), want, atol=1e-5, rtol=1e-5)
    assert pe.receptive_radius == 9  # three kernel-7 convolutions


def test_fp32_compute_weights_are_stored_in_fp32_with_identical_outputs():
    from harmony.tower import computes_in_fp32
    model = _randomize(HarmonyModel(get_config("tiny"))).to(torch.bfloat16)
    names = {n for n, p in model.named_parameters() if p.dtype == torch.float32}
    assert names and all(computes_in_fp32(n) for n in names)
    assert "video_model.time_projection.1.weight" in names and "audio_model.blocks.3.modulation" in names
    assert "video_model.head.modulation" in names and "video_model.text_embedding.0.weight" not in names
    video, audio, cond = _inputs(model.cfg, Lr=2)
    args = (video.bfloat16(), audio.bfloat16(), torch.tensor([600.0]), torch.tensor([300.0]), cond.to(torch.bfloat16))
    with torch.no_grad():
        stored = model(*args)
        for n in names:  # what the model did before: bf16 storage, cast to fp32 at every use
            model.get_parameter(n).data = model.get_parameter(n).data.bfloat16()
        cast_on_use = model(*args)
        model.load_state_dict(model.state_dict())  # loading stores them in fp32 again
    assert all(model.get_parameter(n).dtype == torch.float32 for n in names)
    assert torch.equal(stored[0], cast_on_use[0]) and torch.equal(stored[1], cast_on_use[1])


@pytest.mark.parametrize("n_ref", [0, 5, 25])
def test_prepared_conditioning_gives_the_raw_result(n_ref):
    """prepare() once + forward(prepared) == forward(raw), including a reference voice longer than 2r."""
    from harmony.model import PreparedConditioning
    model = _randomize(HarmonyModel(get_config("tiny")))
    video, audio, cond = _inputs(model.cfg, B=2, Lr=n_ref)
    tv, ta = torch.tensor([700.0, 200.0]), torch.tensor([300.0, 900.0])
    with torch.no_grad():
        raw = model(video, audio, tv, ta, cond)
        prep = model.prepare(cond)
        assert isinstance(prep, PreparedConditioning)
        assert (prep.ref_tokens is not None) == (n_ref > 18)
        got = model(video, audio, tv, ta, prep)
        torch.testing.assert_close(got[0], raw[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got[1], raw[1], atol=1e-5, rtol=1e-5)
        # guidance batches: cat / repeat of prepared conditioning == prepared cat / repeat
        both = PreparedConditioning.cat([prep, prep])
        ref_both = model(torch.cat([video] * 2), torch.cat([audio] * 2), tv.repeat(2), ta.repeat(2),
                         Conditioning.cat([cond, cond]))
        out_both = model(torch.cat([video] * 2), torch.cat([audio] * 2), tv.repeat(2), ta.repeat(2), both)
        torch.testing.assert_close(out_both[1], ref_both[1], atol=1e-5, rtol=1e-5)
        assert prep.repeat(3).video_context.shape[0] == 6
        # prepared for another dtype: forward re-prepares instead of mixing dtypes
        other = model.prepare(cond, dtype=torch.float64)
        torch.testing.assert_close(model(video, audio, tv, ta, other)[0], raw[0], atol=1e-5, rtol=1e-5)


def test_prepare_does_the_text_embedding_once():
    model = _randomize(HarmonyModel(get_config("tiny")))
    video, audio, cond = _inputs(model.cfg)
    calls = []
    model.video_model.text_embedding.register_forward_hook(lambda *_: calls.append(1))
    t = torch.tensor([500.0])
    with torch.no_grad():
        prep = model.prepare(cond)
        for _ in range(3):
            model(video, audio, t, t, prep)
        assert len(calls) == 1
        model(video, audio, t, t, cond)
        assert len(calls) == 2


def test_rope_tables_and_window_plans_are_built_once_per_shape_and_device():
    model = _randomize(HarmonyModel(get_config("tiny")))
    t = torch.tensor([500.0])
    video, audio, cond = _inputs(model.cfg, F=5, La=25)
    with torch.no_grad():
        model(video, audio, t, t, cond)
        plan = model.plan((5, 2, 2), 25, 0, "cpu")
        model(video, audio, t, t, cond)
        assert len(model.plans) == 1 and model.plan((5, 2, 2), 25, 0, torch.device("cpu")) is plan
        v2, a2, c2 = _inputs(model.cfg, F=3, La=13)
        model(v2, a2, t, t, c2)
        assert len(model.plans) == 2
    # the cached tables are the tables: same as building them afresh
    fresh = model.video_model.rope((5, 2, 2))
    assert torch.equal(plan.rope_video.cos, fresh.cos) and torch.equal(plan.rope_video.sin, fresh.sin)
    assert torch.equal(plan.mask_video, local_window_mask(5, 25, 1.0).repeat_interleave(4, dim=0))
    # a table built during inference can be used in training (not an inference tensor)
    with torch.inference_mode():
        model.plans.clear()
        model(video, audio, t, t, cond)
    model.train()
    v, _ = model(video, audio, t, t, cond)
    v.sum().backward()
