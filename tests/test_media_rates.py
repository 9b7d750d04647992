"""Media at other rates than the tiny model's 16 kHz / 16 fps (issue 22): every mp4 writer the
nodes and the CLI use keeps the sample rate, the length and the sync of 8 / 44.1 / 48 kHz
audio and 24 / 25 / 30 fps video, read back with the repository's own reader."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from harmony import media

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECONDS, EVENT = 2.0, 1.0  # clip length; the flash and the tone burst start at 1 s


def _clip(sr, fps, channels=1, seconds=SECONDS, event=EVENT):
    """Black frames with one white frame at `event`, silence with a 1 kHz burst from `event` on (50 ms)."""
    n = int(round(seconds * fps))
    frames = np.zeros((n, 32, 32, 3), np.float32)
    frames[int(round(event * fps))] = 1.0
    t = np.arange(int(round(seconds * sr))) / sr
    burst = ((t >= event) & (t < event + 0.05)) * 0.5 * np.sin(2 * np.pi * 1000 * (t - event))
    wave = np.repeat(burst.astype(np.float32)[None], channels, axis=0)
    return frames, wave


def _onset(wave, sr, level=0.2):
    """First time (s) the sound reaches `level`."""
    hits = np.nonzero(np.abs(wave).max(axis=0) >= level)[0]
    assert hits.size, "the burst is gone"
    return hits[0] / sr


def _check_read_back(path, sr, fps, channels, seconds=SECONDS, event=EVENT):
    info = media.probe(path)
    assert info["audio"]["sample_rate"] == sr and info["audio"]["channels"] == channels
    frames, got_fps, wave, got_sr = media.read_video(path)
    assert got_sr == sr and got_fps == pytest.approx(fps, abs=1e-3)
    assert frames.shape[0] == int(round(seconds * fps))
    assert int(np.argmax(frames.mean(axis=(1, 2, 3)))) == int(round(event * fps))  # the flash stays in place
    assert wave.shape[0] == channels
    assert abs(wave.shape[1] / sr - seconds) < 0.01, wave.shape[1] / sr  # not 2.76x slow or fast
    assert abs(_onset(wave, sr) - event) < 0.005, _onset(wave, sr)  # the sound stays on the picture
    w2, sr2 = media.read_audio(path)
    assert sr2 == sr and w2.shape == wave.shape


@pytest.mark.parametrize("sr, fps, channels", [(8000, 24, 1), (44100, 25, 2), (48000, 30, 1), (44100, 24, 1)])
def test_write_mp4_keeps_rate_length_and_sync(tmp_path, sr, fps, channels):
    frames, wave = _clip(sr, fps, channels)
    path = media.write_mp4(tmp_path / "clip.mp4", frames, fps, wave, sr)
    _check_read_back(path, sr, fps, channels)


@pytest.fixture
def out_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HARMONY_OUTPUT_DIR", str(tmp_path / "output"))
    monkeypatch.setenv("HARMONY_TEMP_DIR", str(tmp_path / "temp"))
    return tmp_path


@pytest.mark.parametrize("sr, fps, channels", [(44100, 24, 2), (48000, 30, 1), (8000, 25, 1)])
def test_save_av_node_writes_the_audio_at_its_own_rate(out_dir, sr, fps, channels):
    """ComfyUI AUDIO from e.g. LoadAudio at 44.1 kHz: the mp4 holds it at 44.1 kHz, as long as
    the picture and in sync with it (not read as 16 kHz, 2.76x slow)."""
    import nodes
    from nodes.save_av import UI_KEY

    frames, wave = _clip(sr, fps, channels)
    audio = {"waveform": torch.from_numpy(wave)[None], "sample_rate": sr}
    result = nodes.NODE_CLASS_MAPPINGS["HarmonySaveAV"]().save(
        torch.from_numpy(frames), audio, float(fps), "rates/clip", True, False)
    clip = result["ui"][UI_KEY][0]
    assert clip["audio_seconds"] == pytest.approx(SECONDS) and clip["seconds"] == pytest.approx(SECONDS)
    _check_read_back(os.path.join(out_dir, "output", clip["subfolder"], clip["filename"]), sr, fps, channels)


@pytest.mark.slow
def test_cli_a2v_from_44k_audio_keeps_length_and_sync(tmp_path):
    """The CLI's writer: a 44.1 kHz driving file becomes the clip's soundtrack at the model's
    rate (16 kHz), with the burst still at 0.5 s and the clip as long as the file."""
    sr, seconds, event = 44100, 1.0, 0.5
    _, wave = _clip(sr, 16, seconds=seconds, event=event)
    wav = tmp_path / "drive.wav"
    media.write_wav(wav, wave, sr)
    out = tmp_path / "a2v.mp4"
    r = subprocess.run([sys.executable, "-m", "harmony", "generate", "a face says two syllables", "--audio",
                        str(wav), "--steps", "1", "--solver", "euler", "-o", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    frames, fps, got, got_sr = media.read_video(out)
    assert got_sr == 16000 and fps == pytest.approx(16.0)
    assert frames.shape[0] == 16 and abs(got.shape[1] / got_sr - seconds) < 0.03
    assert abs(_onset(got, got_sr) - event) < 0.01
