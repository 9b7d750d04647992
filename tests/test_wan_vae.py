"""Wan2.2 VAE (harmony/codecs/wan_vae.py) against the upstream fixture and the full-size listing.

Fixture: tests/fixtures/reference/wan22_vae_small.safetensors, made by running the
unmodified upstream ``WanVAE_`` (Wan2.2 @ 42bf4cf) at widths 6 (encoder) / 8
(decoder) with random weights: a 13-frame 48x48 encode and a 4-latent-frame decode
(see the sidecar .json). Tolerance: atol 2e-5 as for the DiT fixtures (the
fixture's own recommendation is 1e-4; an fp64 run differs from it by 2.8e-6).
"""
import os
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from harmony.codecs.tiling import tiled_decode
from harmony.codecs.wan_vae import (LATENT_MEAN, LATENT_STD, WanVAE, config_from_state_dict, load_wan_vae,
                                    patchify, unpatchify)

REF = os.path.join(os.path.dirname(__file__), "fixtures", "reference")
FIXTURE = os.path.join(REF, "wan22_vae_small.safetensors")
ATOL = 2e-5


@pytest.fixture(scope="module")
def fx():
    return load_file(FIXTURE)


@pytest.fixture(scope="module")
def weights(fx):
    return {k[len("weights."):]: v for k, v in fx.items() if k.startswith("weights.")}


@pytest.fixture(scope="module")
def vae(weights):
    model = WanVAE(dim=6, dec_dim=8, z_dim=48)
    model.load_state_dict(weights, strict=True)
    return model.eval()


def _err(a, b):
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def test_latent_statistics_are_the_fixture_scale(fx):
    assert torch.equal(torch.tensor(LATENT_MEAN), fx["inputs.scale_mean"])
    assert torch.equal(1.0 / torch.tensor(LATENT_STD), fx["inputs.scale_inv_std"])


def test_patchify_order(fx):
    x = fx["inputs.video"]
    assert torch.equal(patchify(x), fx["intermediates.patchified_input"])
    assert torch.equal(unpatchify(patchify(x)), x)
    # hand-made: channel c*4 + 2*dw + dh holds pixel (2i+dh, 2j+dw)
    y = torch.arange(16.0).view(1, 1, 1, 4, 4)
    p = patchify(y)[0, :, 0]
    assert p[:, 0, 0].tolist() == [0.0, 4.0, 1.0, 5.0]  # (0,0), (1,0), (0,1), (1,1)


def test_encode_matches_upstream(vae, fx):
    z = vae.encode_video(fx["inputs.video"])
    err = _err(z, fx["outputs.encode"])
    assert err < ATOL, err
    # the intermediates pin where a mismatch would come from
    mean, inv_std = torch.tensor(LATENT_MEAN).view(1, -1, 1, 1, 1), 1 / torch.tensor(LATENT_STD).view(1, -1, 1, 1, 1)
    mu = fx["intermediates.conv1_out_mu_logvar"][:, :48]
    assert _err((mu - mean) * inv_std, fx["outputs.encode"]) < 1e-6


def test_decode_matches_upstream(vae, fx):
    x = vae.decode_latent(fx["inputs.z"])
    err = _err(x, fx["outputs.decode"])
    assert err < ATOL, err
    assert x.shape[2] == 13 == WanVAE.frames_for_latents(4)


def test_codec_interface_matches_upstream(vae, fx):
    # causal: the first 5 frames give the first 2 latent frames, and 2 latent frames the first 5 frames
    frames = (fx["inputs.video"][:, :, :5].permute(0, 2, 3, 4, 1) + 1) / 2   # [B, T, H, W, 3] in 0..1
    z = vae.encode(frames)
    assert z.shape == (1, 48, 2, 3, 3)
    assert _err(z, fx["outputs.encode"][:, :, :2]) < ATOL
    out = vae.decode(fx["inputs.z"][:, :, :2], tile=0)
    ref = ((fx["outputs.decode"][:, :, :5] + 1) / 2).clamp(0, 1).permute(0, 2, 3, 4, 1)
    assert out.shape == (1, 5, 48, 48, 3)
    assert _err(out, ref) < ATOL
    assert (vae.spatial_stride, vae.temporal_stride, vae.latent_channels) == (16, 4, 48)
    assert WanVAE.latents_for_frames(121) == 31 and WanVAE.frames_for_latents(31) == 121


def test_first_frame_is_encoded_alone(vae, fx):
    """Causality: later frames do not change the first latent frame; 1 frame -> 1 latent."""
    x = fx["inputs.video"]
    one = vae.encode_video(x[:, :, :1])
    assert one.shape[2] == 1
    assert _err(one, fx["outputs.encode"][:, :, :1]) < ATOL


def test_bad_inputs_are_named(vae):
    with pytest.raises(ValueError, match="4k\\+1"):
        vae.encode(torch.zeros(1, 4, 16, 16, 3))
    with pytest.raises(ValueError, match="multiple of 16"):
        vae.encode(torch.zeros(1, 1, 20, 16, 3))
    with pytest.raises(ValueError, match=r"\[B, T, H, W, 3\]"):
        vae.encode(torch.zeros(1, 16, 16, 3))
    with pytest.raises(ValueError, match="48"):
        vae.decode(torch.zeros(1, 16, 1, 2, 2))


def _listing(name):
    rows = {}
    with open(os.path.join(REF, name)) as f:
        next(f)
        for line in f:
            key, shape, _ = line.rstrip("\n").split("\t")
            rows[key] = tuple(int(s) for s in shape.strip("[]").split(",") if s.strip())
    return rows


def test_full_size_layout_equals_upstream_listing():
    with torch.device("meta"):
        vae = WanVAE()
    ours = {k: tuple(v.shape) for k, v in vae.state_dict().items()}
    ref = _listing("wan22_vae.params.tsv")
    assert ours == ref, f"differs: {sorted(set(ours) ^ set(ref))[:10]}"
    assert len(ours) == 196
    assert sum(p.numel() for p in vae.parameters()) == 704_688_668
    assert config_from_state_dict(vae.state_dict()) == dict(dim=160, dec_dim=256, z_dim=48)


@pytest.mark.parametrize("fmt", ["pth", "safetensors", "prefixed"])
def test_loads_upstream_files(tmp_path, weights, fx, fmt):
    if fmt == "pth":
        path = tmp_path / "Wan2.2_VAE.pth"
        torch.save(weights, path)
    else:
        path = tmp_path / "wan2.2_vae.safetensors"
        prefix = "first_stage_model." if fmt == "prefixed" else ""
        save_file({prefix + k: v.contiguous() for k, v in weights.items()}, str(path))
    vae = load_wan_vae(str(path))
    assert vae.config["dim"] == 6 and vae.config["dec_dim"] == 8
    assert _err(vae.encode_video(fx["inputs.video"][:, :, :1]), fx["outputs.encode"][:, :, :1]) < ATOL


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch " + os.environ["HARMONY_PWNED"],))


def test_crafted_pickle_is_refused(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("HARMONY_PWNED", str(marker))
    for name, write in (("legacy.pth", lambda f: pickle.dump({"conv1.weight": _Payload()}, f, protocol=2)),
                        ("zip.pth", lambda f: torch.save({"conv1.weight": _Payload()}, f))):
        path = tmp_path / name
        with open(path, "wb") as f:
            write(f)
        with pytest.raises(ValueError, match="refused"):
            load_wan_vae(str(path))
        assert not marker.exists()


def test_wrong_files_are_named(tmp_path, weights):
    with pytest.raises(FileNotFoundError, match="Wan2.2_VAE.pth"):
        load_wan_vae(str(tmp_path / "missing.pth"))
    wan21 = {k: v for k, v in weights.items() if not k.startswith("decoder.upsamples.0.upsamples.0.")}
    path = tmp_path / "wan_2.1_vae.safetensors"
    save_file({k: v.contiguous() for k, v in wan21.items()}, str(path))
    with pytest.raises(ValueError, match="Wan2.1"):
        load_wan_vae(str(path))
    torch.save({"x": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a Wan2.2 VAE"):
        load_wan_vae(str(tmp_path / "other.pt"))


def _pointwise(z):
    """A decoder stand-in without spatial context: each latent -> a 4x4 block of 3 values."""
    rgb = torch.stack([z.sum(1), z[:, 0] * 2, z[:, 1] - z[:, 2]], dim=1)
    return rgb.repeat_interleave(4, -2).repeat_interleave(4, -1)


@pytest.mark.parametrize("h,w,tile,overlap", [(9, 13, 4, 2), (8, 8, 3, 1), (5, 17, 6, 3), (4, 4, 8, 2)])
def test_tiled_blend_is_exact_without_context(h, w, tile, overlap):
    """Blend weights form a partition of unity: a context-free decoder tiles seamlessly."""
    z = torch.randn(1, 4, 2, h, w, generator=torch.Generator().manual_seed(h * w))
    got = tiled_decode(_pointwise, z, 4, tile, overlap)
    assert torch.allclose(got, _pointwise(z), atol=1e-5, rtol=1e-6)


def test_tiled_decode_cross_fades(vae):
    """Tiles are decoded separately and blended: shape as untiled, and inside the first tile's
    own (non-shared) region the result is that tile's decode."""
    z = torch.randn(1, 48, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    full = vae.decode(z, tile=0)
    tiled = vae.decode(z, tile=4, tile_overlap=2)
    assert tiled.shape == full.shape == (1, 1, 96, 96, 3)
    first = vae.decode(z[..., :4, :4], tile=0)
    assert _err(tiled[:, :, :32, :32], first[:, :, :32, :32]) < 1e-6
    assert not torch.equal(tiled, full)  # the tiles really were decoded separately
