"""A stand-in video codec: a model file may pin another codec file only if its encoder gives the
world's frames the latents the model was trained on (``job-weights --codecs``)."""
import os

import pytest
import torch

from harmony.__main__ import main as harmony_main
from harmony.checkpoint import read_config
from harmony.codecs.tiny import COMPATIBLE_LATENT_SHIFT, DEFAULT_CODECS_PATH, latent_shift, load_codecs, save_codecs
from harmony.files import sha256_file
from harmony.pipeline import DEFAULT_MODEL, HarmonyPipeline
from harmony.weightfile import read_safetensors


def _codec_file(path, *, encoder_noise=0.0, decoder_noise=0.0, audio_stat=0.0):
    """The bundled codecs with noise on the video encoder's / decoder's weights or an audio statistic."""
    video, audio = load_codecs()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module, scale in ((video.encoder, encoder_noise), (video.decoder, decoder_noise)):
            for p in module.parameters():
                p.add_(scale * p.abs().mean() * torch.randn(p.shape, generator=g))
        audio.latent_mean.add_(audio_stat)
    save_codecs(video, audio, str(path))
    return str(path)


def test_latent_shift_is_zero_for_the_same_encoder_and_grows_with_a_changed_one(tmp_path):
    assert latent_shift(DEFAULT_CODECS_PATH, DEFAULT_CODECS_PATH) == 0.0
    # a new decoder alone moves no latent
    assert latent_shift(DEFAULT_CODECS_PATH, _codec_file(tmp_path / "dec.safetensors", decoder_noise=0.5)) == 0.0
    small = latent_shift(DEFAULT_CODECS_PATH, _codec_file(tmp_path / "e1.safetensors", encoder_noise=0.002))
    large = latent_shift(DEFAULT_CODECS_PATH, _codec_file(tmp_path / "e2.safetensors", encoder_noise=0.2))
    assert 0 < small < COMPATIBLE_LATENT_SHIFT < large


def test_a_changed_audio_codec_is_not_a_stand_in(tmp_path):
    with pytest.raises(ValueError, match="audio codec differs"):
        latent_shift(DEFAULT_CODECS_PATH, _codec_file(tmp_path / "a.safetensors", audio_stat=0.1))


def test_job_weights_pins_a_stand_in_and_refuses_another_encoder(tmp_path, capsys):
    stand_in = _codec_file(tmp_path / "stand_in.safetensors", decoder_noise=0.1)
    out = str(tmp_path / "pinned.safetensors")
    harmony_main(["job-weights", DEFAULT_MODEL, out, "--codecs", stand_in])
    meta = read_config(out).meta
    # the bundled file's job tensors and tuned settings stay as they are; only the pin changes
    (theirs, _), (ours, _) = read_safetensors(DEFAULT_MODEL, "m"), read_safetensors(out, "m")
    assert theirs.keys() == ours.keys() and all(torch.equal(v, ours[k]) for k, v in theirs.items())
    assert meta["sampling"] == read_config(DEFAULT_MODEL).meta["sampling"]
    assert meta["codecs_sha256"] == sha256_file(stand_in) != sha256_file(DEFAULT_CODECS_PATH)
    assert meta["codecs_stand_in"]["from"] == sha256_file(DEFAULT_CODECS_PATH)
    assert os.path.isfile(out.replace(".safetensors", ".text.safetensors"))
    HarmonyPipeline.from_pretrained(out, codecs=stand_in, log=lambda m: None)  # the pin matches
    with pytest.raises(ValueError, match="not the ones this model was trained with"):
        HarmonyPipeline.from_pretrained(out, log=lambda m: None)                # the old file no longer does
    other = _codec_file(tmp_path / "other.safetensors", encoder_noise=0.2)
    with pytest.raises(SystemExit, match="latent std from the model's codec"):
        harmony_main(["job-weights", DEFAULT_MODEL, str(tmp_path / "no.safetensors"), "--codecs", other])
    assert not os.path.exists(tmp_path / "no.safetensors")
