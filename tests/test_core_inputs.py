"""Core CLIP / VAE inputs: the checks that run before compute, the loader's umT5 path, the
real-scale templates' files. Nothing of ComfyUI is faked here: the checks read plain
descriptions (what ``nodes.host.describe_clip`` / ``describe_vae`` return in the host), and
the real core objects run in tests/e2e/test_real_templates.py."""
import json
import os
import sys
import types

import pytest
import torch

import realfiles
from nodes import core_inputs
from nodes.conditioning import HarmonyTextConditioning
from nodes.decoder import HarmonyDecode
from nodes.model_loader import HarmonyModelLoader, umt5_conditioned
from nodes.sampler import HarmonySyncCFGSampler
from nodes.types import AVConditioning, HarmonyInputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NODE = "Test Node"
WAN22 = {"kind": "wan2.2", "latent_channels": 48, "latent_dim": 3, "spatial": 16, "temporal": 4,
         "model": "comfy.ldm.wan.vae2_2.WanVAE"}
MMAUDIO = {"kind": "mmaudio16k", "latent_channels": 20, "latent_dim": 1, "spatial": 1411.2, "temporal": None,
           "model": "comfy.ldm.mmaudio.vae.autoencoder.AudioAutoencoder"}
SD15 = {"kind": "other", "latent_channels": 4, "latent_dim": 2, "spatial": 8, "temporal": None,
        "model": "comfy.ldm.models.autoencoder.AutoencoderKL"}
WAN21 = {"kind": "other", "latent_channels": 16, "latent_dim": 3, "spatial": 8, "temporal": 4,
         "model": "comfy.ldm.wan.vae.WanVAE"}


# ------------------------------------------------------------------ pure checks


def test_umt5_clip_passes():
    core_inputs.check_clip({"family": "umt5xxl", "width": 4096}, NODE)


@pytest.mark.parametrize("family", ["t5xxl", "l", "g", "t5base"])
def test_clip_of_another_family_names_both_sides(family):
    with pytest.raises(HarmonyInputError) as e:
        core_inputs.check_clip({"family": family, "width": 4096}, NODE)
    msg = str(e.value)
    assert f"{family!r} text encoder" in msg and "umT5-XXL" in msg and "type wan" in msg


def test_clip_width_mismatch_names_both_widths():
    """The node's clip is paired with the model by harmony's one pairing check, under the node's names."""
    from harmony import assemble
    from harmony.config import get_config

    cfg = get_config("tiny")  # 64-wide text in both towers
    clip = assemble.Parts(core_inputs.CoreClipEncoder(object(), 4096), None, None)
    with pytest.raises(assemble.PairingError) as e:
        assemble.check_pairing(cfg, clip, assemble.Names(text=f"{NODE}: clip"))
    assert str(e.value).startswith(f"{NODE}: clip gives 4096-wide embeddings but the model's video tower reads 64")
    assemble.check_pairing(cfg, assemble.Parts(core_inputs.CoreClipEncoder(object(), 64), None, None))


def test_wan22_vae_passes_video_and_mmaudio_passes_audio():
    core_inputs.check_video_vae(WAN22, 48, NODE)
    core_inputs.check_audio_vae(MMAUDIO, 20, NODE)


@pytest.mark.parametrize("desc,words", [(SD15, ["4 latent channels", "SD1/SDXL"]),
                                        (WAN21, ["16 latent channels", "Wan2.1"])])
def test_image_or_wan21_vae_as_video_vae_names_both_sides(desc, words):
    with pytest.raises(HarmonyInputError) as e:
        core_inputs.check_video_vae(desc, 48, NODE)
    msg = str(e.value)
    assert all(w in msg for w in words) and "48-channel" in msg and "wan2.2_vae.safetensors" in msg


def test_wan22_vae_against_a_model_of_other_latent_channels():
    with pytest.raises(HarmonyInputError, match="48 latent channels.*reads 16-channel"):
        core_inputs.check_video_vae(WAN22, 16, NODE)


def test_vaes_swapped_are_refused():
    with pytest.raises(HarmonyInputError, match="MMAudio audio VAE"):
        core_inputs.check_video_vae(MMAUDIO, 48, NODE)
    with pytest.raises(HarmonyInputError, match="not ComfyUI's MMAudio VAE .48 latent channels"):
        core_inputs.check_audio_vae(WAN22, 20, NODE)


def test_mmaudio_against_a_model_of_other_audio_channels():
    with pytest.raises(HarmonyInputError, match="20-channel audio latents.*reads 40"):
        core_inputs.check_audio_vae(MMAUDIO, 40, NODE)


@pytest.mark.parametrize("h,w", [(720, 720), (704, 700), (0, 704)])
def test_frame_sizes_off_the_32_grid_are_refused(h, w):
    wan = core_inputs.UnboundVideoCodec(48)
    with pytest.raises(HarmonyInputError, match=r"multiples of 32 \(16 px per latent .* 2x2 patch\)"):
        core_inputs.check_frame_size(h, w, NODE, wan, (1, 2, 2))
    core_inputs.check_frame_size(704, 1280, NODE, wan, (1, 2, 2))


def test_frame_size_rule_comes_from_the_codec_and_the_patch():
    """A codec of another spatial stride (or a model of another patch) moves the grid."""
    eight = types.SimpleNamespace(spatial_stride=8)
    core_inputs.check_frame_size(72, 40, NODE, eight, (1, 1, 1))
    with pytest.raises(HarmonyInputError, match="multiples of 16 .*got 40x72; e.g. 48x80"):
        core_inputs.check_frame_size(72, 40, NODE, eight, (1, 2, 2))


def test_fit_text_pads_with_zero_rows_and_cuts_with_a_note():
    from harmony.umt5_conditioner import fit_text

    emb = torch.arange(1 * 3 * 2, dtype=torch.float32).reshape(1, 3, 2) + 1
    out = fit_text(emb, 5)  # core's [1, L, D]
    assert out.shape == (5, 2)
    assert torch.equal(out[:3], emb[0]) and torch.equal(out[3:], torch.zeros(2, 2))
    said = []
    cut = fit_text(emb[0], 2, log=said.append)
    assert torch.equal(cut, emb[0, :2]) and said == ["the prompt is cut at 2 tokens (umT5's limit)"]
    silent = fit_text(torch.nn.functional.pad(emb[0], (0, 0, 0, 4)), 3, log=said.append)
    assert torch.equal(silent, emb[0]) and len(said) == 1  # only zero (padding) rows were dropped


def test_two_different_vaes_for_one_role_are_refused():
    a, b = object(), object()
    assert core_inputs.pick(NODE, "video VAE", ("x", None), ("y", a)) is a
    assert core_inputs.pick(NODE, "video VAE", ("x", a), ("y", a)) is a
    with pytest.raises(HarmonyInputError, match="two different video VAEs are connected .x and y."):
        core_inputs.pick(NODE, "video VAE", ("x", a), ("y", b))


# ------------------------------------------------------------------ the loader's umT5 path


@pytest.fixture(scope="module")
def ovi_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    cfg = realfiles.stack_config()
    realfiles.write_ovi(str(d / "ovi_tiny.safetensors"), realfiles.random_model(cfg, seed=1))
    realfiles.write_ovi_configs(str(d), cfg)
    return d


@pytest.fixture(scope="module")
def ovi_pipe(ovi_dir):
    os.environ["HARMONY_MODELS_DIR"] = str(ovi_dir)
    try:
        pipe, info = HarmonyModelLoader().load("ovi_tiny.safetensors", "auto", "none", 4, "sdpa")
    finally:
        del os.environ["HARMONY_MODELS_DIR"]
    return pipe, info


def test_an_ovi_file_without_a_text_file_loads_with_unbound_parts(ovi_dir, ovi_pipe):
    assert umt5_conditioned(str(ovi_dir / "ovi_tiny.safetensors"))
    pipe, info = ovi_pipe
    assert "Ovi fusion model" in info
    assert core_inputs.is_unbound(pipe)
    assert (pipe.codecs.video.latent_channels, pipe.codecs.audio.latent_channels) == (48, 20)
    assert pipe.frame_size == (704, 704) and pipe.fps == 24 and pipe.sample_rate == 16000


def test_the_loader_parses_the_model_files_header_once(ovi_dir, monkeypatch):
    """The node checks the file, detects its family and loads it from one parsed header."""
    from harmony import weightfile

    parsed = []

    class CountingJson:
        @staticmethod
        def loads(raw, *a, **k):
            parsed.append(len(raw))
            return json.loads(raw, *a, **k)

    monkeypatch.setattr(weightfile, "json", CountingJson)
    monkeypatch.setenv("HARMONY_MODELS_DIR", str(ovi_dir))
    pipe, info = HarmonyModelLoader().load("ovi_tiny.safetensors", "auto", "none", 4, "sdpa")
    assert "Ovi fusion model" in info and core_inputs.is_unbound(pipe)
    assert len(parsed) == 1, f"the header was parsed {len(parsed)} times"


def test_a_harmony_file_without_a_text_file_is_still_refused(tmp_path):
    path = realfiles.write_harmony(str(tmp_path / "toy.safetensors"))
    assert not umt5_conditioned(path)
    os.environ["HARMONY_MODELS_DIR"] = str(tmp_path)
    try:
        with pytest.raises(HarmonyInputError, match="needs its text-encoder file"):
            HarmonyModelLoader().load("toy.safetensors", "auto", "none", 4, "sdpa")
    finally:
        del os.environ["HARMONY_MODELS_DIR"]


def test_text_node_without_clip_on_an_ovi_model_says_what_to_connect(ovi_pipe):
    with pytest.raises(HarmonyInputError, match="connect CLIPLoader with umt5_xxl.*type wan.*clip input"):
        HarmonyTextConditioning().encode(ovi_pipe[0], "a ball", "", "")


def test_sampler_without_vaes_on_an_ovi_model_says_what_to_connect(ovi_pipe):
    cond = AVConditioning(text=harmony_conditioning(), prompt="a ball")
    args = dict(seed=0, steps=1, seconds=1.0, width=32, height=32, shift=5.0, guidance="synccfg", sv=3.0,
                sa=2.0, text_cfg=1.0, solver="euler")
    with pytest.raises(HarmonyInputError, match="connect VAELoader with"):
        HarmonySyncCFGSampler().sample(ovi_pipe[0], cond, **args)
    with pytest.raises(HarmonyInputError, match="multiples of 32"):
        HarmonySyncCFGSampler().sample(ovi_pipe[0], cond, **{**args, "width": 48})


def test_decode_without_vaes_on_an_ovi_model_says_what_to_connect(ovi_pipe):
    from harmony.pipeline import AVLatent

    latent = AVLatent(torch.zeros(1, 48, 1, 2, 2), torch.zeros(1, 32, 20), 24.0, 16000, 1.0)
    with pytest.raises(HarmonyInputError, match="video_vae on Harmony SyncCFG Sampler, Video Conditioning and Decode"):
        HarmonyDecode().decode(ovi_pipe[0], latent)


def harmony_conditioning():
    from harmony.model import Conditioning

    emb = torch.zeros(1, 512, realfiles.UMT5_SIZE["dim"])
    return Conditioning(emb, emb.clone(), None)


# ------------------------------------------------------------------ the real-scale templates


def templates():
    sys.path.insert(0, os.path.join(ROOT, "workflows"))
    try:
        import harmony_ovi_templates
    finally:
        sys.path.remove(os.path.join(ROOT, "workflows"))
    return harmony_ovi_templates


@pytest.mark.parametrize("name", ["harmony_ovi_t2av", "harmony_ovi_i2av", "harmony_ovi_a2v", "harmony_ovi_v2a"])
def test_real_scale_template_is_current_valid_and_uses_the_files_people_have(name):
    t = templates()
    with open(os.path.join(ROOT, "workflows", name + ".json"), encoding="utf-8") as f:
        wf = json.load(f)
    assert wf == json.loads(json.dumps(t.build()[name])), "run: python workflows/harmony_ovi_templates.py"
    assert t.validate(wf) == []
    assert os.path.getsize(os.path.join(ROOT, "workflows", name + ".jpg")) > 1000
    by_type = {}
    for n in wf["nodes"]:
        by_type.setdefault(n["type"], []).append(n)
    assert by_type["CLIPLoader"][0]["widgets_values"][:2] == ["umt5_xxl_fp8_e4m3fn_scaled.safetensors", "wan"]
    assert sorted(n["widgets_values"][0] for n in by_type["VAELoader"]) == [
        "mmaudio_vae_16k.safetensors", "wan2.2_vae.safetensors"]
    assert by_type["HarmonyModelLoader"][0]["widgets_values"][0] == "Ovi/model.safetensors"
    # every core part is wired where it is used
    links = {lk[0]: lk for lk in wf["links"]}
    wired = {(n["type"], i["name"]) for n in wf["nodes"] for i in n["inputs"] if i.get("link") in links}
    assert {("HarmonyTextConditioning", "clip"), ("HarmonySyncCFGSampler", "video_vae"),
            ("HarmonySyncCFGSampler", "audio_vae"), ("HarmonyDecode", "video_vae"),
            ("HarmonyDecode", "audio_vae")} <= wired
    media = {"harmony_ovi_i2av": ("HarmonyVideoConditioning", "video_vae"),
             "harmony_ovi_v2a": ("HarmonyVideoConditioning", "video_vae"),
             "harmony_ovi_a2v": ("HarmonyAudioConditioning", "audio_vae")}.get(name)
    assert media is None or media in wired


# ------------------------------------------------------------------ MMAudio in ComfyUI's layout


@pytest.mark.slow
def test_mmaudio_converted_to_comfy_layout_decodes_exactly_as_the_upstream_files(tmp_path):
    from harmony.codecs.mmaudio import MMAudioCodec

    paths = realfiles.write_ovi_ckpts(tmp_path / "ckpts")
    out = core_inputs.write_comfy_mmaudio_vae(paths["audio_vae"], paths["vocoder"], str(tmp_path / "mm.safetensors"))
    from safetensors.torch import load_file

    sd = load_file(out)
    assert "vocoder.activation_post.downsample.lowpass.filter" in sd  # the key core's VAELoader detects
    assert sd["mel_converter.mel_basis"].shape == (80, 513) and sd["mel_converter.hann_window"].shape == (1024,)
    upstream = MMAudioCodec.from_files(paths["audio_vae"], paths["vocoder"])
    comfy = MMAudioCodec.from_files(out)  # ComfyUI's one-file layout, weights used as stored
    z = torch.randn(1, 6, 20, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(comfy.decode(z), upstream.decode(z), rtol=0, atol=1e-6)
    wave = torch.sin(torch.arange(3 * 512) / 7.0)[None] * 0.3
    torch.testing.assert_close(comfy.encode(wave), upstream.encode(wave), rtol=0, atol=1e-6)
