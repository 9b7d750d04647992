"""MMAudio 16 kHz audio codec: mel front end, mel VAE, BigVGAN vocoder, loaders, codec interface.

Parity fixtures are random-weight fp32 runs of the unmodified upstream modules (Ovi's MMAudio copy,
see tests/fixtures/reference/README.md): ``mmaudio_mel16k``, ``mmaudio_vae16k_small`` (hidden_dim 32)
and ``bigvgan16k_small`` (upsample_initial_channel 128). Weights load by upstream names.
"""
import json
import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from harmony.weightfile import CheckpointError, read_state_dict
from harmony.codecs.bigvgan import (BigVGANVocoder, fold_weight_norm, kaiser_sinc_filter, load_bigvgan,
                                    weight_norm_form)
from harmony.codecs.mel import MelSpectrogram16k, hz_to_mel_slaney, mel_to_hz_slaney, slaney_mel_filterbank
from harmony.codecs.mmaudio import MMAudioCodec
from harmony.codecs.mmaudio_vae import MMAudioVAE, load_mmaudio_vae, normalize_conv_weight, pixel_norm

REF = Path(__file__).parent / "fixtures" / "reference"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The many tiny convolutions here slow down ~50x when OpenMP threads compete on a busy CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _fixture(name):
    tensors = load_file(str(REF / f"{name}.safetensors"))
    meta = json.loads((REF / f"{name}.safetensors.json").read_text())

    def take(prefix):
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    return take, meta


def _close(out, ref, tol, what):
    err = (out - ref).abs().max().item()
    print(f"{what}: max abs error {err:.3g} (max |ref| {ref.abs().max().item():.3g})")
    torch.testing.assert_close(out, ref, atol=tol["atol"], rtol=tol["rtol"])
    return err


def _listing(name):
    rows = [line.rstrip("\n").split("\t") for line in (REF / name).read_text().splitlines()[1:]]
    return {n: (tuple(json.loads(shape)), dtype) for n, shape, dtype in rows}


def _ours(state_dict):
    return {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in state_dict.items()}


# ------------------------------------------------------------------ mel


def test_slaney_mel_scale_closed_form():
    # linear below 1 kHz at 200/3 Hz per mel: 1 kHz is mel 15; then 27 mels per factor 6.4
    assert hz_to_mel_slaney(1000.0) == pytest.approx(15.0)
    assert hz_to_mel_slaney(500.0) == pytest.approx(7.5)
    assert hz_to_mel_slaney(6400.0) == pytest.approx(42.0)
    f = np.array([0.0, 100.0, 999.0, 1000.0, 3000.0, 8000.0])
    np.testing.assert_allclose(mel_to_hz_slaney(hz_to_mel_slaney(f)), f, rtol=1e-12, atol=1e-9)


def test_slaney_filterbank_equals_the_fixture_filterbank():
    take, _ = _fixture("mmaudio_mel16k")
    ref = take("weights.")["mel_basis"]
    fb = slaney_mel_filterbank(16000, 1024, 80, 0.0, 8000.0)
    assert fb.shape == ref.shape == (80, 513)
    err = (fb - ref).abs().max().item()
    print(f"filterbank: max abs error {err:.3g} (max {ref.abs().max().item():.3g})")
    torch.testing.assert_close(fb, ref, atol=1e-8, rtol=1e-6)
    # area normalisation: each triangle integrates to 1 over Hz (up to the 15.625 Hz bin sampling)
    areas = fb.double().sum(1) * (16000 / 1024)
    torch.testing.assert_close(areas, torch.ones(80, dtype=torch.float64), atol=0.05, rtol=0)


def test_mel_parity_and_silence_floor():
    take, meta = _fixture("mmaudio_mel16k")
    mel = MelSpectrogram16k()
    torch.testing.assert_close(mel.hann_window, take("weights.")["hann_window"], atol=0, rtol=0)
    out = mel(take("inputs.")["waveform"])
    assert out.shape == (2, 80, 62)
    _close(out, take("outputs.")["mel"], meta["recommended_tolerance"]["float32"], "mel")
    # row 1 frames 33..44 only see exact zeros: log10(1e-5) = -5 in every bin
    assert torch.equal(out[1, :, 33:45], torch.full((80, 12), -5.0))
    # unbatched call gives the same rows
    torch.testing.assert_close(mel(take("inputs.")["waveform"][0]), out[0], atol=0, rtol=0)


def test_mel_frame_count_rule():
    mel = MelSpectrogram16k()
    for n in (512, 1000, 16000, 16384, 80000):
        assert mel.num_frames(n) == n // 256
        assert mel(torch.zeros(n)).shape == (80, n // 256)
    with pytest.raises(ValueError, match="reflect padding"):
        mel(torch.zeros(100))
    with pytest.raises(ValueError, match=r"\[N\] or \[B, N\]"):
        mel(torch.zeros(1, 2, 1000))


# ------------------------------------------------------------------ VAE


def test_vae_weight_normalisation_closed_form_and_fixture():
    w = torch.tensor([[[3.0, 4.0]], [[0.0, 2.0]]])  # fan_in 2, row norms 5 and 2
    out = normalize_conv_weight(w)
    s = math.sqrt(2)
    expected = torch.stack([w[0] / (1e-4 + 5 / s) / s, w[1] / (1e-4 + 2 / s) / s])
    torch.testing.assert_close(out, expected, atol=1e-7, rtol=0)
    take, _ = _fixture("mmaudio_vae16k_small")
    vae = load_mmaudio_vae(take("weights."))
    assert vae.load_info == {"layout": "upstream", "normalized": False}
    sd = vae.state_dict()
    for name, ref in take("intermediates.normalized_weight.").items():
        torch.testing.assert_close(sd[name], ref, atol=1e-7, rtol=1e-6)


def test_pixel_norm_adds_eps_to_the_rms():
    x = torch.tensor([[[3.0], [4.0]]])  # C = 2, rms = 5 / sqrt(2)
    torch.testing.assert_close(pixel_norm(x), x / (5 / math.sqrt(2) + 1e-4))


def test_vae_encode_decode_parity():
    take, meta = _fixture("mmaudio_vae16k_small")
    tol = meta["recommended_tolerance"]["float32"]
    vae = load_mmaudio_vae(take("weights."))
    assert vae.hidden_dim == 32
    inputs, outputs = take("inputs."), take("outputs.")
    with torch.no_grad():
        _close(vae.normalize(inputs["mel"]), take("intermediates.")["encoder_input_normalized"], tol, "VAE input norm")
        _close(vae.encode_moments(inputs["mel"]), outputs["encode_moments"], tol, "VAE encode moments")
        mean = vae.encode(inputs["mel"])
        _close(mean, outputs["encode_mean"], tol, "VAE encode mean")
        _close(vae.decode(inputs["z"]), outputs["decode"], tol, "VAE decode")
        # sampling: mean + std * N(0, 1) with the caller's generator; std = exp(logvar / 2), logvar clamped
        s1 = vae.encode(inputs["mel"], sample=True, generator=torch.Generator().manual_seed(3))
        noise = torch.randn(mean.shape, generator=torch.Generator().manual_seed(3))
        logvar = outputs["encode_moments"][:, 20:].clamp(-30, 20)
        torch.testing.assert_close(s1, outputs["encode_mean"] + torch.exp(0.5 * logvar) * noise, atol=2e-4, rtol=1e-4)


def test_vae_rejects_bad_shapes():
    with torch.device("meta"):
        vae = MMAudioVAE(hidden_dim=8)
    with pytest.raises(ValueError, match="even number of frames"):
        vae.encode(torch.zeros(1, 80, 63, device="meta"))
    with pytest.raises(ValueError, match=r"\[B, 80, T\]"):
        vae.encode(torch.zeros(80, 64, device="meta"))
    with pytest.raises(ValueError, match=r"\[B, 20, T\]"):
        vae.decode(torch.zeros(1, 16, 8, device="meta"))


def test_full_size_vae_listing():
    with torch.device("meta"):
        vae = MMAudioVAE()
    ref = _listing("mmaudio_vae_16k.params.tsv")
    assert len(ref) == 57
    assert _ours(vae.state_dict()) == ref
    n_params = sum(math.prod(s) for s, _ in ref.values())
    assert n_params == sum(p.numel() for p in vae.parameters()) + 160 == 171_657_378


# ------------------------------------------------------------------ vocoder


def test_kaiser_sinc_filter_equals_the_stored_buffers():
    take, _ = _fixture("bigvgan16k_small")
    filters = {k: v for k, v in take("weights.").items() if k.endswith(".filter")}
    assert len(filters) == 2 * (6 * 3 * 6 + 1)
    ours = kaiser_sinc_filter(0.25, 0.3, 12)
    assert float(ours.sum()) == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(ours, ours.flip(-1), atol=1e-8, rtol=0)  # linear phase
    for v in filters.values():
        torch.testing.assert_close(v, ours, atol=1e-7, rtol=0)


def test_vocoder_parity_plain_weights():
    take, meta = _fixture("bigvgan16k_small")
    voc = load_bigvgan(take("weights."))
    assert voc.load_info == {"layout": "upstream", "weight_norm": False}
    with torch.no_grad():
        inter = take("intermediates.")
        tol = meta["recommended_tolerance"]["float32"]
        _close(voc.resblocks[0].activations[0](inter["ups.0.0"]), inter["resblocks.0.activations.0"], tol,
               "anti-aliased SnakeBeta")
        wav = voc(take("inputs.")["mel"])
    assert wav.shape == (1, 1, 32 * 256)
    _close(wav, take("outputs.")["wav"], tol, "vocoder (plain weights)")


def _weight_norm_checkpoint(take, modern: bool):
    plain, gv = take("weights."), take("checkpoint.")
    convs = {k[: -len(".weight_g")] for k in gv if k.endswith(".weight_g")}
    sd = {k: v for k, v in plain.items() if k[: -len(".weight")] not in convs or not k.endswith(".weight")}
    if modern:
        gv = {k.replace(".weight_g", ".parametrizations.weight.original0")
               .replace(".weight_v", ".parametrizations.weight.original1"): v for k, v in gv.items()}
    sd.update(gv)
    return sd, convs


@pytest.mark.parametrize("modern", [False, True], ids=["weight_g_v", "parametrizations"])
def test_vocoder_parity_weight_norm_checkpoint(modern):
    take, meta = _fixture("bigvgan16k_small")
    sd, convs = _weight_norm_checkpoint(take, modern)
    assert len(convs) == 116 and len(sd) == 784
    voc = load_bigvgan({"generator": sd})  # best_netG.pt wraps the state dict in "generator"
    assert voc.load_info["weight_norm"] is True
    with torch.no_grad():
        wav = voc(take("inputs.")["mel"])
    _close(wav, take("outputs.")["wav"], meta["recommended_tolerance"]["float32"],
           f"vocoder (weight-norm form, {'parametrizations' if modern else 'weight_g/weight_v'})")


def test_weight_norm_fold_transposed_conv_is_per_input_channel():
    take, _ = _fixture("bigvgan16k_small")
    gv = take("checkpoint.")
    g, v = gv["ups.0.0.weight_g"], gv["ups.0.0.weight_v"]          # ConvTranspose1d(128 -> 64)
    assert g.shape == (128, 1, 1) and v.shape == (128, 64, 8)
    w = fold_weight_norm({"ups.0.0.weight_g": g, "ups.0.0.weight_v": v})["ups.0.0.weight"]
    i = 5  # row i of the folded weight has norm g[i]
    assert torch.linalg.vector_norm(w[i]).item() == pytest.approx(abs(g[i].item()), rel=1e-5)
    torch.testing.assert_close(w, take("weights.")["ups.0.0.weight"], atol=1e-6, rtol=1e-5)
    # splitting and folding again gives the plain weights back
    plain = take("weights.")
    again = fold_weight_norm(weight_norm_form(plain))
    assert set(again) == set(plain)
    for k in plain:
        torch.testing.assert_close(again[k], plain[k], atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="no partner"):
        fold_weight_norm({"conv_pre.weight_g": g})


def test_full_size_vocoder_listings():
    with torch.device("meta"):
        voc = BigVGANVocoder()
    plain = _listing("bigvgan_16k.params.tsv")
    assert len(plain) == 668
    assert _ours(voc.state_dict()) == plain
    wn = _listing("bigvgan_16k.weightnorm_params.tsv")
    assert len(wn) == 784
    assert _ours(weight_norm_form(voc.state_dict(), legacy=False)) == wn
    assert sum(p.numel() for p in voc.parameters()) == 112_199_473
    assert voc.hop_length == 256


# ------------------------------------------------------------------ files and layouts


def _small_parts():
    return _fixture("mmaudio_vae16k_small")[0], _fixture("bigvgan16k_small")[0]


def test_pth_files_load_with_weights_only(tmp_path):
    vae_take, voc_take = _small_parts()
    torch.save(vae_take("weights."), tmp_path / "v1-16.pth")
    torch.save({"generator": _weight_norm_checkpoint(voc_take, modern=False)[0]}, tmp_path / "best_netG.pt")
    codec = MMAudioCodec.from_files(tmp_path / "v1-16.pth", tmp_path / "best_netG.pt")
    with torch.no_grad():
        z = vae_take("inputs.")["z"]
        torch.testing.assert_close(codec.decode_mel(z.transpose(1, 2)), vae_take("outputs.")["decode"],
                                   atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(codec.vocoder(voc_take("inputs.")["mel"]), voc_take("outputs.")["wav"],
                                   atol=2e-5, rtol=2e-5)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize("fmt", ["torch_zip", "raw_pickle"])
def test_crafted_pickle_fails_safely(tmp_path, fmt):
    marker = str(tmp_path / "pwned")
    path = tmp_path / "best_netG.pt"
    payload = {"generator": {"conv_pre.weight": torch.zeros(2, 80, 7), "x": _Payload(marker)}}
    if fmt == "torch_zip":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(CheckpointError, match="weights_only=True"):
        read_state_dict(path, "BigVGAN vocoder")
    with pytest.raises(CheckpointError):
        load_bigvgan(path)
    assert not os.path.exists(marker)


def test_comfyui_single_file_layout(tmp_path):
    """ComfyUI 0.3.64's MMAudio VAE file: vae.* (normalised weights), vocoder.* (plain), mel_converter.*."""
    vae_take, voc_take = _small_parts()
    normalised = load_mmaudio_vae(vae_take("weights.")).state_dict()
    sd = {f"vae.{k}": v for k, v in normalised.items()}
    sd.update({f"vocoder.{k}": v for k, v in voc_take("weights.").items()})
    sd["mel_converter.mel_basis"] = slaney_mel_filterbank()
    sd["mel_converter.hann_window"] = torch.hann_window(1024)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "mmaudio_vae_16k.safetensors"))
    codec = MMAudioCodec.from_files(tmp_path / "mmaudio_vae_16k.safetensors")  # vocoder from the same file
    assert codec.vae.load_info == {"layout": "comfyui", "normalized": True}
    assert codec.vocoder.load_info == {"layout": "comfyui", "weight_norm": False}
    with torch.no_grad():
        torch.testing.assert_close(codec.vae.encode(vae_take("inputs.")["mel"]), vae_take("outputs.")["encode_mean"],
                                   atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(codec.vocoder(voc_take("inputs.")["mel"]), voc_take("outputs.")["wav"],
                                   atol=2e-5, rtol=2e-5)
    # an upstream-layout file without a vocoder needs vocoder=
    torch.save(vae_take("weights."), tmp_path / "v1-16.pth")
    with pytest.raises(ValueError, match="best_netG.pt"):
        MMAudioCodec.from_files(tmp_path / "v1-16.pth")


def test_loader_errors_name_the_problem(tmp_path):
    vae_take, _ = _small_parts()
    w = dict(vae_take("weights."))
    w.pop("decoder.conv_out.weight")
    with pytest.raises(ValueError, match="1 missing"):
        load_mmaudio_vae(w)
    with pytest.raises(ValueError, match="no MMAudio VAE tensors"):
        load_mmaudio_vae({"foo.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="no BigVGAN vocoder tensors"):
        load_bigvgan({"foo.weight": torch.zeros(1)})
    with pytest.raises(FileNotFoundError):
        read_state_dict(tmp_path / "missing.safetensors", "MMAudio VAE")


# ------------------------------------------------------------------ the codec


@pytest.fixture(scope="module")
def small_codec():
    vae_take, voc_take = _small_parts()
    return MMAudioCodec(load_mmaudio_vae(vae_take("weights.")), load_bigvgan(voc_take("weights.")))


def test_codec_interface_and_latent_count(small_codec):
    codec = small_codec
    assert (codec.latent_channels, codec.sample_rate, codec.hop_length, codec.latent_rate) == (20, 16000, 512, 31.25)
    assert codec.num_latents(80000) == 157 and codec.num_latents(80384) == 157 and codec.num_latents(80385) == 158
    assert codec.num_latents(1) == 1
    take, _ = _fixture("mmaudio_mel16k")
    wave = take("inputs.")["waveform"]                      # [2, 16000]: 31.25 hops -> 32 latents
    with torch.no_grad():
        z = codec.encode(wave)
        assert z.shape == (2, 32, 20)
        # the partial hop is padded with silence
        padded = torch.nn.functional.pad(wave, (0, 16384 - 16000))
        torch.testing.assert_close(z, codec.encode(padded), atol=0, rtol=0)
        # whole hops: exactly mel -> VAE posterior mean, sequence-major
        ref = codec.vae.encode(codec.mel(padded)).transpose(1, 2)
        torch.testing.assert_close(z, ref, atol=0, rtol=0)
        z1 = codec.encode(wave[1])
        assert z1.shape == (32, 20)
        torch.testing.assert_close(z1, z[1], atol=1e-5, rtol=1e-5)
        out = codec.decode(z)
        assert out.shape == (2, 32 * 512) and out.abs().max() < 1
        assert codec.decode(z, length=16000).shape == (2, 16000)
        assert codec.decode(z[0], length=17000).shape == (17000,)
        torch.testing.assert_close(codec.decode(z[0]), out[0], atol=1e-5, rtol=1e-5)
        assert codec.silent_latent(3).shape == (3, 20)


def test_codec_rejects_bad_inputs(small_codec):
    with pytest.raises(ValueError, match="mono 16 kHz"):
        small_codec.encode(torch.zeros(1, 2, 1000))
    with pytest.raises(ValueError, match="mono 16 kHz"):
        small_codec.encode(torch.zeros(1, 0))
    with pytest.raises(ValueError, match="sequence-major"):
        small_codec.decode(torch.zeros(1, 20, 8))


def test_full_size_codec_shapes_on_meta():
    """Real widths (VAE 384, vocoder 1536), no weights: Ovi's 5 s clip is 157 latents, 80,384 samples."""
    with torch.device("meta"):
        codec = MMAudioCodec(MMAudioVAE(), BigVGANVocoder())
        z = codec.encode(torch.zeros(5 * 16000))
        assert z.shape == (157, 20)
        assert codec.decode(z).shape == (157 * 512,)
        assert codec.decode(z[None], length=80000).shape == (1, 80000)


def test_bf16_weights_stay_within_the_reference_bf16_drift():
    """Ovi runs the codec in bf16: our bf16 run may drift from fp32 by at most 2x the upstream bf16 drift."""
    def rel(a, b):
        return ((a.float() - b).norm() / b.norm()).item()
    take, meta = _fixture("mmaudio_vae16k_small")
    vae = load_mmaudio_vae(take("weights."), dtype=torch.bfloat16)
    obs = meta["observed_differences"]
    with torch.no_grad():
        enc = vae.encode(take("inputs.")["mel"].bfloat16())
        dec = vae.decode(take("inputs.")["z"].bfloat16())
    assert enc.dtype == dec.dtype == torch.bfloat16
    r_enc, r_dec = rel(enc, take("outputs.")["encode_mean"]), rel(dec, take("outputs.")["decode"])
    take_v, meta_v = _fixture("bigvgan16k_small")
    voc = load_bigvgan(take_v("weights."), dtype=torch.bfloat16)
    with torch.no_grad():
        wav = voc(take_v("inputs.")["mel"].bfloat16())
    r_voc = rel(wav, take_v("outputs.")["wav"])
    print(f"bf16 rel-L2: encode {r_enc:.4f}, decode {r_dec:.4f}, vocoder {r_voc:.4f}")
    assert r_enc < 2 * obs["encode_mean"]["bf16_vs_fp32_reference"]["rel_l2"]
    assert r_dec < 2 * obs["decode"]["bf16_vs_fp32_reference"]["rel_l2"]
    assert r_voc < 2 * meta_v["observed_differences"]["bf16_vs_fp32_reference"]["rel_l2"]
