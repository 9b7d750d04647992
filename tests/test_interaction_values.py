"""The reference-voice paths and the local window checked against a reference result or a
hand-computed value (issue 22), not only for invariance:

* the target audio tokens computed with a reference voice equal the same tokens computed
  without one wherever the maths says they must (the partner attention of the target rows,
  their RoPE positions in both modes, the model's output rows once the layers are skipped);
* the local window at a window under half a frame, mask written out by hand.
"""
import pytest
import torch

from harmony.config import get_config
from harmony.interaction import audio_positions, cross_attention_with_partner, local_window_mask
from harmony.model import HarmonyModel
from harmony.rope import audio_rope, video_rope
from test_model import _inputs, _randomize, _tokens


def _close(a, b):
    torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-5)


# --- the RoPE positions -------------------------------------------------------------

def test_ovi_positions_with_a_reference_voice_by_hand():
    """"ovi": target token j at j * 0.19676 whatever the reference length; the reference
    continues the spacing to negative positions."""
    cfg = get_config("tiny").replace(audio_rope="ovi")
    pos = audio_positions(cfg, n_frames=5, n_audio=4, n_ref=3)
    want = torch.tensor([-3, -2, -1, 0, 1, 2, 3], dtype=torch.float64) * 0.19676
    torch.testing.assert_close(pos, want, atol=1e-12, rtol=0)


@pytest.mark.parametrize("mode", ["aligned", "ovi"])
@pytest.mark.parametrize("n_ref", [1, 6, 30])
def test_target_positions_do_not_depend_on_the_reference_length(mode, n_ref):
    cfg = get_config("tiny").replace(audio_rope=mode)
    without = audio_positions(cfg, n_frames=7, n_audio=20, n_ref=0)
    with_ref = audio_positions(cfg, n_frames=7, n_audio=20, n_ref=n_ref)
    assert with_ref.shape == (n_ref + 20,)
    torch.testing.assert_close(with_ref[n_ref:], without, atol=1e-12, rtol=0)
    assert torch.all(with_ref[:n_ref] < 0)  # the reference sits before the clip


def test_aligned_positions_with_a_reference_voice_by_hand():
    """"aligned": 10 audio tokens over 5 latent frames, 0.5 frame apart; 2 reference tokens at -1, -0.5."""
    pos = audio_positions(get_config("tiny"), n_frames=5, n_audio=10, n_ref=2)
    want = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5], dtype=torch.float64)
    torch.testing.assert_close(pos, want, atol=1e-12, rtol=0)


# --- the partner attention with query rows before q_start ---------------------------------

@pytest.mark.parametrize("with_mask", [False, True])
def test_partner_attention_skips_the_first_rows_and_keeps_the_target_rows(with_mask):
    """``q_start = n_ref``: the target rows equal the same rows computed without the reference
    rows in the sequence; the reference rows get the text attention alone (by hand)."""
    torch.manual_seed(0)
    model = _randomize(HarmonyModel(get_config("tiny")))
    block, am, vm = model.audio_model.blocks[0], model.audio_model, model.video_model
    g = torch.Generator().manual_seed(5)
    n_ref, L, F, hw = 4, 11, 3, 4
    x = torch.randn(2, n_ref + L, model.cfg.audio.dim, generator=g)
    partner = torch.randn(2, F * hw, model.cfg.video.dim, generator=g)
    context = am.embed_text(torch.randn(2, 9, model.cfg.audio.text_dim, generator=g))
    d = model.cfg.audio.head_dim
    q_rope = audio_rope(torch.arange(L, dtype=torch.float64) * F / L, d)
    k_rope = video_rope((F, 2, 2), d)
    mask = None
    if with_mask:
        mask = local_window_mask(F, L, 0.6).t().repeat_interleave(hw, dim=1)  # [L, F*hw]
    with torch.no_grad():
        out = cross_attention_with_partner(block, x, context, partner, q_rope, k_rope, mask, q_start=n_ref)
        alone = cross_attention_with_partner(block, x[:, n_ref:], context, partner, q_rope, k_rope, mask)
        ca = block.cross_attn
        text_only = x + ca.out(ca.text_attention(ca.queries(block.norm3(x)), context))
    assert out.shape == x.shape
    _close(out[:, n_ref:], alone)
    _close(out[:, :n_ref], text_only[:, :n_ref])
    assert (out[:, n_ref:] - text_only[:, n_ref:]).abs().max() > 1e-3  # the target rows do see the partner


@pytest.mark.parametrize("config", ["tiny", "tiny-global"])
@pytest.mark.parametrize("mode", ["aligned", "ovi"])
def test_layer_cross_attention_of_the_target_is_the_same_with_and_without_a_voice(config, mode):
    """Layer 0's cross-attention steps through the model's own plan (RoPE tables, window masks):
    with a reference voice, the target audio rows equal the result without one (the partner
    keys are video; the target RoPE positions do not move), and in GLDI the video rows too
    (the reference voice takes no part in the local path)."""
    model = _randomize(HarmonyModel(get_config(config).replace(audio_rope=mode)))
    n_ref, La = 6, 25
    video, audio, cond = _inputs(model.cfg, La=La, Lr=n_ref)
    v, a, grid = _tokens(model, video, audio)
    ref_tokens = torch.randn(1, n_ref, model.cfg.audio.dim, generator=torch.Generator().manual_seed(9))
    a_ref = torch.cat([ref_tokens, a], dim=1)
    vm, am = model.video_model, model.audio_model
    ctx_v, ctx_a = vm.embed_text(cond.video_context), am.embed_text(cond.audio_context)
    vb, ab = vm.blocks[0], am.blocks[0]
    it = model.interaction
    with torch.no_grad():
        plan0, plan_r = model.plan(grid, La, 0, "cpu"), model.plan(grid, La, n_ref, "cpu")
        a_without = it.audio_cross(ab, a, v, ctx_a, plan0)
        a_with = it.audio_cross(ab, a_ref, v, ctx_a, plan_r)
        v_without = it.video_cross(vb, v, a, ctx_v, plan0)
        v_with = it.video_cross(vb, v, a_ref, ctx_v, plan_r)
        # the style path (GLDI) changes the reference rows only
        styled = it.style(ab, a_with, v, plan_r)
    _close(a_with[:, n_ref:], a_without)
    assert torch.equal(styled[:, n_ref:], a_with[:, n_ref:])
    if model.cfg.interaction == "gldi":
        _close(v_with, v_without)
    else:  # Ovi's global fusion: the video attends to every audio token, the voice included
        assert (v_with - v_without).abs().max() > 1e-3


# --- the model's output rows ------------------------------------------------------------

@pytest.mark.parametrize("config", ["tiny", "tiny-global"])
@pytest.mark.parametrize("n_ref", [5, 30])  # shorter and longer than 2r (the prepared-tokens path)
def test_model_returns_the_target_rows(config, n_ref):
    """With every layer skipped the audio output is the head of the patch embedding: beyond the
    receptive radius r of the patch embedding, target token j with a reference voice equals
    target token j without one. Returning the reference rows (dropping the last n_ref target
    rows) breaks that."""
    torch.manual_seed(0)
    model = _randomize(HarmonyModel(get_config(config)))
    r = model.audio_model.patch_embedding.receptive_radius
    La = 25
    video, audio, cond = _inputs(model.cfg, B=2, La=La, Lr=n_ref)
    no_ref = type(cond)(cond.video_context, cond.audio_context, None)
    tv, ta = torch.tensor([400.0, 700.0]), torch.tensor([300.0, 800.0])
    skip = range(model.num_layers)
    with torch.no_grad():
        _, a_with = model(video, audio, tv, ta, cond, slg_layers=skip)
        _, a_without = model(video, audio, tv, ta, no_ref, slg_layers=skip)
        _, a_prepared = model(video, audio, tv, ta, model.prepare(cond), slg_layers=skip)
    assert a_with.shape == audio.shape
    _close(a_with[:, r:], a_without[:, r:])
    _close(a_prepared, a_with)
    # and the rows are in place: the first r rows do see the voice through the convolution
    assert (a_with[:, :r] - a_without[:, :r]).abs().max() > 1e-4


# --- the local window at small windows ------------------------------------------------------

def test_window_under_half_a_frame_keeps_each_audio_tokens_nearest_frame():
    """3 latent frames, 7 audio tokens (odd ratio): token j at 3j/7 = 0, .43, .86, 1.29, 1.71,
    2.14, 2.57. Window 0.2: inside it only tokens 0 (frame 0), 2 (frame 1) and 5 (frame 2);
    each frame's nearest token is the same; each token keeps its nearest frame:
    j1 -> 0, j3 -> 1, j4 -> 2, j6 -> 2."""
    m = local_window_mask(3, 7, 0.2)
    want = torch.tensor([[1, 1, 0, 0, 0, 0, 0],
                         [0, 0, 1, 1, 0, 0, 0],
                         [0, 0, 0, 0, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(m, want), m.int()


def test_window_under_half_a_frame_with_more_frames_than_tokens():
    """7 latent frames, 3 audio tokens at 0, 7/3, 14/3. Window 0.3: only frame 0 / token 0
    inside; each frame keeps its nearest token (frame 1 -> token 0 at distance 1, frames 2-3 ->
    token 1, frames 4-6 -> token 2); each token its nearest frame (token 1 -> 2, token 2 -> 5)."""
    m = local_window_mask(7, 3, 0.3)
    want = torch.tensor([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [0, 0, 1]],
                        dtype=torch.bool)
    assert torch.equal(m, want), m.int()


def test_window_mask_of_the_gldi_plan_with_a_voice_is_the_window_of_the_target():
    """GLDI's plan: the masks cover the target tokens only, frame by frame (hand-written window)."""
    model = HarmonyModel(get_config("tiny").replace(local_window=0.2))
    grid, n_ref = (3, 2, 2), 4
    plan = model.plan(grid, 7, n_ref, "cpu")
    window = torch.tensor([[1, 1, 0, 0, 0, 0, 0],
                           [0, 0, 1, 1, 0, 0, 0],
                           [0, 0, 0, 0, 1, 1, 1]], dtype=torch.bool)
    assert plan.audio_start == n_ref
    assert torch.equal(plan.mask_video, window.repeat_interleave(4, dim=0))
    assert torch.equal(plan.mask_audio, window.t().repeat_interleave(4, dim=1))
