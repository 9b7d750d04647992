"""Numerical parity with the public reference code (Wan2.2 WanModel, Ovi FusionModel).

Fixtures are random-weight fp32 runs of the unmodified upstream modules; see
tests/fixtures/reference/README.md. Weights load strictly by upstream names.
"""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from harmony import keymap
from harmony.config import HarmonyConfig, TowerConfig
from harmony.model import Conditioning, HarmonyModel
from harmony.tower import WanTower

REF = Path(__file__).parent / "fixtures" / "reference"
TOWER_KEYS = ("dim", "ffn_dim", "num_heads", "num_layers", "in_dim", "out_dim", "text_dim", "text_len",
              "freq_dim", "eps", "patch_size", "qk_norm", "cross_attn_norm")


def _fixture(name):
    tensors = load_file(str(REF / f"{name}.safetensors"))
    meta = json.loads((REF / f"{name}.safetensors.json").read_text())
    take = lambda p: {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}  # noqa: E731
    return take, meta


def _tower_config(upstream: dict, modality: str) -> TowerConfig:
    kw = {k: upstream[k] for k in TOWER_KEYS}
    if "temporal_rope_scaling_factor" in upstream:
        kw["audio_rope_scale"] = upstream["temporal_rope_scaling_factor"]
    return TowerConfig(modality=modality, **kw)


def _assert_close(name, got, want, atol, rtol):
    err = (got - want).abs().max().item()
    print(f"{name}: max abs error {err:.3e} (atol {atol}, rtol {rtol})")
    torch.testing.assert_close(got, want, atol=atol, rtol=rtol,
                               msg=lambda m: f"{name}: max abs error {err:.3e}\n{m}")


@pytest.fixture(scope="module")
def wan():
    take, meta = _fixture("wan22_small")
    model = WanTower(_tower_config(meta["reduced_config"], "video")).eval()
    model.load_state_dict(take("weights."), strict=True)
    return model, take("inputs."), take("outputs."), meta["recommended_tolerance"]["float32"]


@pytest.mark.parametrize("form", ["scalar", "per_token", "per_frame"])
def test_video_tower_matches_wan22(wan, form):
    model, inp, out, tol = wan
    x, ctx = inp["x"][None], inp["context"][None]
    if form == "scalar":
        t, want = inp["t"], out["out"]
    elif form == "per_token":
        t, want = inp["t_per_token"], out["out_per_token_t"]
    else:  # the same TI2V timesteps given once per latent frame: [B, F]
        t, want = inp["t_per_token"].view(1, 3, 16)[:, :, 0], out["out_per_token_t"]
    with torch.no_grad():
        got = model(x, t, ctx)[0]
    _assert_close(f"wan22 {form}", got, want, tol["atol"], tol["rtol"])


@pytest.fixture(scope="module")
def ovi():
    take, meta = _fixture("ovi_fusion_small")
    rc = meta["reduced_config"]
    cfg = HarmonyConfig(video=_tower_config(rc["video"], "video"), audio=_tower_config(rc["audio"], "audio"),
                        interaction="global", audio_rope="ovi")
    model = HarmonyModel(cfg).eval()
    model.load_state_dict(keymap.from_upstream(take("weights."), "ovi"), strict=True)
    return model, take("inputs."), take("outputs.fp32."), meta["recommended_tolerance"]["fp32_vs_outputs.fp32"]


@pytest.mark.parametrize("case", ["t2v", "i2v", "slg1"])
def test_global_model_matches_ovi_fusion(ovi, case):
    model, inp, out, tol = ovi
    t = inp["t"]
    t_video = torch.tensor([[0.0, t.item(), t.item()]]) if case == "i2v" else t  # i2v: first latent frame clean
    cond = Conditioning(inp["vid_context"][None], inp["audio_context"][None])
    with torch.no_grad():
        v, a = model(inp["vid"][None], inp["audio"][None], t_video, t, cond,
                     slg_layers=[1] if case == "slg1" else ())
    _assert_close(f"ovi {case} video", v[0], out[f"{case}.vid"], tol["atol"], tol["rtol"])
    _assert_close(f"ovi {case} audio", a[0], out[f"{case}.audio"], tol["atol"], tol["rtol"])


def test_ovi_fixture_detects_wrong_audio_rope(ovi):
    """The fixture is sensitive to the audio RoPE: the "aligned" positions must not reproduce Ovi."""
    model, inp, out, _ = ovi
    aligned = HarmonyModel(model.cfg.replace(audio_rope="aligned")).eval()
    aligned.load_state_dict(model.state_dict())
    cond = Conditioning(inp["vid_context"][None], inp["audio_context"][None])
    with torch.no_grad():
        _, a = aligned(inp["vid"][None], inp["audio"][None], inp["t"], inp["t"], cond)
    assert (a[0] - out["t2v.audio"]).abs().max() > 1e-3
