"""Tiny video / audio codecs (harmony/codecs/toy_video.py, toy_audio.py): shapes, round trips, onsets, pitch, weights."""
import math
import os

import numpy as np
import pytest
import torch

from harmony import world
from harmony.codecs import DEFAULT_CODECS_PATH, AudioCodec, VideoCodec, load_codecs, save_codecs
from harmony.codecs.eval_toy import audio_metrics, video_psnr
from harmony.codecs.train_toy import synthetic_clip

SR = 16000


@pytest.fixture(scope="module")
def bundled():
    torch.set_num_threads(1)
    return load_codecs()


def _heldout_clips(n, seconds=2.0):
    seeds = [(s, sp) for sp in ("speech", "ambient", "complex") for s in world.heldout_seeds(sp, n)]
    return [world.render(world.sample_scene(s, sp, seconds)) for s, sp in seeds]


def _onsets(wave, hop=64, rel=0.1):
    """Sample index of every rise of the 4 ms energy above ``rel`` x peak (after >= 40 ms below)."""
    e = wave[: len(wave) // hop * hop].reshape(-1, hop).pow(2).mean(-1)
    above = (e > rel * e.max()).numpy()
    out, quiet = [], 10
    for i, a in enumerate(above):
        if a and quiet >= 10:
            out.append(i * hop)
        quiet = 0 if a else quiet + 1
    return out


# ----------------------------------------------------------------------------- video

def test_video_codec_interface_and_shapes():
    codec = VideoCodec()
    assert (codec.latent_channels, codec.spatial_stride, codec.temporal_stride, codec.fps) == (16, 16, 1, 16)
    assert sum(p.numel() for p in codec.parameters()) < 700_000
    frames = torch.rand(2, 5, 64, 64, 3)
    z = codec.encode(frames)
    assert z.shape == (2, 16, 5, 4, 4)
    out = codec.decode(z)
    assert out.shape == (2, 5, 64, 64, 3) and out.min() >= 0 and out.max() <= 1
    assert codec.encode(torch.rand(1, 2, 32, 48, 3)).shape == (1, 16, 2, 2, 3)   # fully convolutional


def test_video_codec_frames_are_independent():
    """Temporal stride 1: changing frame 3 changes latent frame 3 only (sync precision = 1 frame)."""
    codec = VideoCodec().eval()
    frames = torch.rand(1, 6, 64, 64, 3)
    z = codec.encode(frames)
    frames2 = frames.clone()
    frames2[:, 3] = torch.rand(64, 64, 3)
    diff = (codec.encode(frames2) - z).abs().amax((0, 1, 3, 4))
    assert diff[3] > 1e-3 and torch.all(diff[[0, 1, 2, 4, 5]] == 0)


def test_video_codec_rejects_bad_input():
    codec = VideoCodec()
    with pytest.raises(ValueError, match=r"frames must be .*\[B, F, H, W, 3\]"):
        codec.encode(torch.rand(5, 64, 64, 3))
    with pytest.raises(ValueError, match="multiple of 16"):
        codec.encode(torch.rand(1, 2, 60, 64, 3))
    with pytest.raises(ValueError, match=r"latent must be \[B, 16, F, h, w\]"):
        codec.decode(torch.rand(1, 8, 2, 4, 4))


def test_bundled_video_codec_reconstructs_heldout_world_frames(bundled):
    video, _ = bundled
    clips = _heldout_clips(2)
    frames = torch.stack([torch.from_numpy(c.frames) for c in clips])
    with torch.no_grad():
        z = video.encode(frames)
        rec = video.decode(z)
    assert video_psnr(frames, rec) > 21.0  # bundled codec: ~22 dB on held-out frames (docs/codecs.md)
    # latents normalised to ~zero mean / unit variance per channel
    assert z.mean().abs() < 0.5 and 0.5 < z.std() < 1.6
    # the picture moves where the world moves: frame-to-frame change survives the round trip
    d_true = (frames[:, 1:] - frames[:, :-1]).abs().mean((2, 3, 4))
    d_rec = (rec[:, 1:] - rec[:, :-1]).abs().mean((2, 3, 4))
    corr = np.corrcoef(d_true.flatten().numpy(), d_rec.flatten().numpy())[0, 1]
    assert corr > 0.8


# ----------------------------------------------------------------------------- audio

def test_audio_codec_interface_and_shapes():
    codec = AudioCodec()
    assert codec.latent_channels == 20 and codec.sample_rate == 16000 and codec.latent_rate == 31.25
    for T in (512, 16000, 48000, 48001):
        z = codec.encode(torch.zeros(2, T))
        assert z.shape == (2, math.ceil(T / 512), 20) and z.shape[1] == codec.num_latents(T)
        assert codec.decode(z).shape == (2, z.shape[1] * 512)
        assert codec.decode(z, length=T).shape == (2, T)


def test_audio_codec_silence_stays_silent_and_decode_is_deterministic():
    codec = AudioCodec()
    z = codec.encode(torch.zeros(1, 8000))
    assert torch.isfinite(z).all()
    assert codec.decode(z).abs().max() < 1e-6
    _, wave, _ = synthetic_clip(3, 1.0)
    z = codec.encode(wave[None])
    assert torch.equal(codec.decode(z), codec.decode(z))


def test_audio_codec_keeps_onsets_sharp():
    """Clicks and tone bursts start within 8 ms of where they started (one video frame is 62.5 ms)."""
    codec = AudioCodec()
    for seed in range(4):
        _, wave, onsets = synthetic_clip(seed, 2.0)
        rec = codec.decode(codec.encode(wave[None]), length=wave.numel())[0]
        a, b = _onsets(wave), _onsets(rec)
        assert len(a) == len(b) >= 2, (a, b)
        assert max(abs(x - y) for x, y in zip(a, b)) <= 128, (a, b)
        assert audio_metrics(wave[None], rec[None])["envelope_corr"] > 0.9


def test_audio_codec_keeps_pitch_and_spectrum():
    codec = AudioCodec()
    t = torch.arange(SR) / SR
    for f0 in (90.0, 220.0, 1500.0):
        tone = 0.3 * sum(torch.sin(2 * math.pi * k * f0 * t) / k for k in range(1, 4) if k * f0 < 7000)
        feats = codec.features(tone[None])[0, 4:-4]
        assert torch.allclose(feats[:, 4].exp().median(), torch.tensor(f0), rtol=0.02)
        assert feats[:, 5].min() > 0.8                                  # voiced
        rec = codec.decode(codec.encode(tone[None]), length=SR)
        spec = torch.fft.rfft(rec[0, 4000:12000]).abs()
        peak_hz = spec.argmax().item() * SR / 8000
        assert abs(peak_hz - f0) < 0.03 * f0
    noise = torch.randn(1, SR, generator=torch.Generator().manual_seed(0)) * 0.1
    assert codec.features(noise)[0, :, 5].mean() < 0.45                 # unvoiced


def test_audio_codec_world_voice_pitch():
    """The world's voices: codec pitch within a semitone of the voice's f0 in most vowel frames."""
    codec = AudioCodec()
    errs = []
    for seed in world.heldout_seeds("speech", 6):
        scene = world.sample_scene(seed, "speech", 2.0)
        feats = codec.features(torch.from_numpy(world.render(scene).wave)[None])[0]
        for on, dur, inton in zip(scene.face.onsets, scene.face.durations, scene.face.intonation):
            lo, hi = int((on / 16 + 0.08) * 31.25) + 1, int(((on + dur) / 16 - 0.04) * 31.25)
            for f in feats[lo:hi, 4].exp().tolist():
                errs.append(abs(math.log2(f / (scene.face.voice.f0 * inton))))
    errs = np.array(errs)
    assert len(errs) > 20 and np.mean(errs < 1 / 12) > 0.85


def _pitch_case(hz, voicing=None, env=None):
    log_f0 = torch.tensor([hz], dtype=torch.float64).log()
    voicing = torch.ones_like(log_f0) if voicing is None else torch.tensor([voicing], dtype=torch.float64)
    env = torch.full((1, log_f0.shape[1], 4), -3.0, dtype=torch.float64) if env is None else env
    return log_f0, voicing, env


def test_decoder_holds_a_pitch_that_falls_to_a_subharmonic_inside_a_sound():
    """The comb reads a decaying chime at f0/2, f0/3, f0/4 in some latents: the decoder keeps f0."""
    codec = AudioCodec()
    hz = [867.0, 433.0, 867.0, 216.0, 289.0, 866.0]
    out = codec.steady_pitch(*_pitch_case(hz)).exp()[0]
    assert torch.allclose(out, torch.tensor([867.0, 867.0, 867.0, 867.0, 867.0, 866.0], dtype=out.dtype))
    # a glide (a third of an octave per latent) and any rise pass unchanged
    for passes in ([200.0, 160.0, 128.0, 102.0], [216.0, 433.0, 867.0]):
        assert torch.allclose(codec.steady_pitch(*_pitch_case(passes)).exp()[0], torch.tensor(passes, dtype=out.dtype))


def test_decoder_lets_a_new_sound_or_a_voiced_start_change_the_pitch():
    codec = AudioCodec()
    hz = [867.0, 433.0, 433.0]
    env = torch.full((1, 3, 4), -3.0, dtype=torch.float64)
    env[0, 1, 2:] = -1.0                                    # latent 1: a sub-frame rises by 2 nats, an onset
    assert torch.allclose(codec.steady_pitch(*_pitch_case(hz, env=env)).exp()[0], torch.tensor(hz, dtype=env.dtype))
    # after an unvoiced latent the pitch starts afresh (its 200 Hz placeholder means nothing)
    out = codec.steady_pitch(*_pitch_case([867.0, 200.0, 120.0], voicing=[1.0, 0.1, 1.0])).exp()[0]
    assert torch.allclose(out, torch.tensor([867.0, 200.0, 120.0], dtype=out.dtype))


def test_a_decaying_chime_keeps_one_onset_per_strike():
    """Without the hold, each chime of the flash control decoded with a second onset 3-4 frames
    later (at two of the three strikes or all), two frames from the other video's flashes: a knife edge
    for the v2a_flash control."""
    from harmony import controls, metrics

    codec = AudioCodec()
    for flashes in (controls.FLASH_A, controls.FLASH_B):
        wave = torch.from_numpy(world.render(controls.lamp_scene(flashes)).wave)[None]
        rec = codec.decode(codec.encode(wave), length=wave.shape[-1])[0].numpy()
        assert np.allclose(metrics.loud_onsets(rec, SR, 16.0) * 16, flashes)
        codec.pitch_hold = float("inf")                      # the old decoder: extra onsets
        rec = codec.decode(codec.encode(wave), length=wave.shape[-1])[0].numpy()
        assert len(metrics.loud_onsets(rec, SR, 16.0)) > len(flashes)
        codec.pitch_hold = AudioCodec.pitch_hold


def test_audio_codec_rejects_bad_input():
    codec = AudioCodec()
    with pytest.raises(ValueError, match=r"wave must be a tensor \[B, T\]"):
        codec.encode(torch.zeros(16000))
    with pytest.raises(ValueError, match=r"latent must be \[B, L, 20\]"):
        codec.decode(torch.zeros(1, 10, 16))


@pytest.mark.slow
def test_bundled_audio_codec_on_heldout_world_clips(bundled):
    _, audio = bundled
    clips = _heldout_clips(2)
    waves = torch.stack([torch.from_numpy(c.wave) for c in clips])
    z = audio.encode(waves)
    assert z.mean().abs() < 0.5 and 0.4 < z.std() < 1.6              # normalised with the stored stats
    rec = audio.decode(z, length=waves.shape[-1])
    m = audio_metrics(waves, rec)
    assert m["envelope_corr"] > 0.9 and m["lsd_db"] < 15
    # the world's event detector still finds the ground-truth events (+-1 video frame) after the round trip
    from harmony import metrics
    raw_f1, rec_recall = [], []
    for c, r in zip(clips, rec):
        gt = c.event_times
        raw_f1.append(metrics.event_f1(metrics.detect_audio_events(c.wave, SR, 16, len(c.frames)), gt, 1 / 16))
        prf = metrics.event_prf(metrics.detect_audio_events(r.numpy(), SR, 16, len(c.frames)), gt, 1 / 16)
        rec_recall.append(prf["recall"])
    assert np.mean(rec_recall) > 0.85 and np.mean(raw_f1) > 0.85


# ----------------------------------------------------------------------------- weights

def test_bundled_weights_small_and_safetensors():
    assert os.path.getsize(DEFAULT_CODECS_PATH) < 3_000_000
    with open(DEFAULT_CODECS_PATH, "rb") as f:
        head = f.read(8)
        assert head[:4] != b"PK\x03\x04"  # not a zip (torch.save) archive
        n = int.from_bytes(head, "little")  # safetensors: u64 header length, then a JSON header
        assert 0 < n < os.path.getsize(DEFAULT_CODECS_PATH) and f.read(1) == b"{"


def test_save_load_roundtrip(tmp_path):
    torch.manual_seed(0)
    video, audio = VideoCodec(), AudioCodec()
    video.latent_mean.normal_()
    audio.latent_std.uniform_(0.5, 2)
    path = str(tmp_path / "c.safetensors")
    save_codecs(video, audio, path)
    v2, a2 = load_codecs(path)
    frames = torch.rand(1, 2, 64, 64, 3)
    torch.testing.assert_close(v2.encode(frames), video.encode(frames))
    torch.testing.assert_close(a2.latent_std, audio.latent_std)
    assert not any(p.name.startswith("c.safetensors.tmp") for p in tmp_path.iterdir())


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_codecs(str(tmp_path / "nope.safetensors"))
    bad = tmp_path / "codecs.ckpt"
    bad.write_bytes(b"\x80\x02}q\x00(X\x05\x00\x00\x00video" + b"\x00" * 64)
    with pytest.raises(ValueError, match="not a safetensors file"):
        load_codecs(str(bad))
    from safetensors.torch import save_file
    other = str(tmp_path / "other.safetensors")
    save_file({"x": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match="keys do not match"):
        load_codecs(other)


def test_codec_training_cli_takes_the_clip_length_and_logs_the_tuning_curve(tmp_path, capsys):
    # python -m harmony.codecs train: --seconds sets the training clips' length (many short scenes
    # generalise better than few long ones: notebook T1), --watch-every logs the PSNR of tuning-seed
    # frames, and the run continues from --init and leaves a loadable pair file
    from harmony.codecs.__main__ import main as codecs_main

    out = str(tmp_path / "c.safetensors")
    assert codecs_main(["train", "--init", DEFAULT_CODECS_PATH, "--out", out, "--minutes", "0.02", "--clips", "3",
                        "--seconds", "1", "--watch-every", "1", "--lr", "1e-3"]) == 0
    log = capsys.readouterr().out
    watched = [float(line.split("psnr")[1].split("dB")[0]) for line in log.splitlines() if "tuning frames psnr" in line]
    assert watched and all(15 < p < 40 for p in watched)  # the bundled codec's own range on world frames
    stats = log.rsplit("saved", 1)[1]
    assert "'clips': 3" in stats
    video, _ = load_codecs(out)
    shipped, _ = load_codecs()
    assert not torch.equal(video.encoder[1][0].weight, shipped.encoder[1][0].weight)  # it trained from --init
    with pytest.raises(SystemExit) as e:  # a length the world cannot render: refused before any rendering
        codecs_main(["train", "--out", out, "--seconds", "0.5"])
    assert e.value.code == 2 and "--seconds 0.5" in capsys.readouterr().err
