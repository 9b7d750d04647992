"""Media I/O: mp4 round trip, audio files, resampling, errors."""
import os

import numpy as np
import pytest
import torch

from harmony.media import (MediaError, read_audio, read_video, resample_audio, resample_video, resize_frames,
                           write_mp4, write_wav)
from harmony.world import render, sample_scene


def test_mp4_round_trip_has_video_and_audio(tmp_path):
    clip = render(sample_scene(3, "ambient"))
    path = write_mp4(tmp_path / "clip.mp4", clip.frames, clip.fps, clip.wave, clip.sample_rate)
    assert sorted(os.listdir(tmp_path)) == ["clip.mp4"]  # no temp files left behind
    frames, fps, wave, sr = read_video(path)
    assert frames.shape == clip.frames.shape and fps == 16.0
    assert np.abs(frames - clip.frames).mean() < 0.03
    assert sr == 16000 and wave.shape[0] == 1 and abs(wave.shape[1] - 48000) < 1100
    n = min(wave.shape[1], 48000)
    a, b = clip.wave[:n], wave[0, :n]
    lags = range(-400, 401, 4)  # AAC must not shift the sound against the picture
    best = max(lags, key=lambda d: np.dot(a[1000:n - 1000], b[1000 + d:n - 1000 + d]))
    assert abs(best) <= 8
    w2, sr2 = read_audio(path)
    assert sr2 == 16000 and w2.shape == wave.shape


def test_mp4_uint8_torch_and_no_audio(tmp_path):
    frames = torch.from_numpy((np.random.default_rng(0).random((8, 32, 32, 3)) * 255).astype(np.uint8))
    path = write_mp4(tmp_path / "silent.mp4", frames, 8)
    got, fps, wave, sr = read_video(path)
    assert got.shape == (8, 32, 32, 3) and wave is None and sr is None
    with pytest.raises(MediaError, match="no audio stream"):
        read_audio(path)


def test_write_failure_leaves_nothing(tmp_path):
    with pytest.raises(MediaError, match="NaN"):
        write_mp4(tmp_path / "bad.mp4", np.full((4, 16, 16, 3), np.nan, np.float32), 16)
    with pytest.raises(MediaError, match=r"\[F, H, W, 3\]"):
        write_mp4(tmp_path / "bad.mp4", np.zeros((4, 16, 16)), 16)
    assert os.listdir(tmp_path) == []


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.mp4"):
        read_video(tmp_path / "nothing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 10)
    with pytest.raises(MediaError, match="junk.mp4"):
        read_video(junk)


def test_wav_round_trip(tmp_path):
    wave = (0.5 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)).astype(np.float32)
    write_wav(tmp_path / "a.wav", np.stack([wave, -wave]), 8000)
    got, sr = read_audio(tmp_path / "a.wav")
    assert sr == 8000 and got.shape == (2, 8000)
    assert np.abs(got[0] - wave).max() < 1e-3 and np.abs(got[1] + wave).max() < 1e-3


@pytest.mark.parametrize("sr_in,sr_out", [(16000, 44100), (44100, 16000), (48000, 16000), (16000, 22050)])
def test_resample_audio_sine(sr_in, sr_out):
    f = 440.0
    x = np.sin(2 * np.pi * f * np.arange(sr_in) / sr_in).astype(np.float32)
    y = resample_audio(x, sr_in, sr_out)
    assert y.shape == (int(np.ceil(sr_in * sr_out / sr_in)),)
    ref = np.sin(2 * np.pi * f * np.arange(len(y)) / sr_out)
    assert np.abs(y - ref)[200:-200].max() < 2e-3
    yt = resample_audio(torch.from_numpy(np.stack([x, x])), sr_in, sr_out)  # torch in, torch out, [C, T]
    assert isinstance(yt, torch.Tensor) and yt.shape == (2, len(y))


def test_resample_audio_removes_aliases():
    x = np.sin(2 * np.pi * 7000 * np.arange(16000) / 16000).astype(np.float32)  # above 8 kHz / 2 after resampling
    y = resample_audio(x, 16000, 8000)
    assert np.abs(y[100:-100]).max() < 0.05


def test_resample_video_and_resize():
    frames = np.arange(16, dtype=np.float32)[:, None, None, None] * np.ones((1, 8, 8, 3), np.float32)
    out = resample_video(frames, 16, 8)
    assert out.shape[0] == 8 and list(out[:, 0, 0, 0]) == list(range(0, 16, 2))
    up = resample_video(frames, 16, 32)
    assert up.shape[0] == 32 and up[1, 0, 0, 0] == 1.0 or up[1, 0, 0, 0] == 0.0
    small = resize_frames(np.random.default_rng(0).random((2, 64, 64, 3)).astype(np.float32), 32, 48)
    assert small.shape == (2, 32, 48, 3)
    t = resize_frames(torch.zeros(2, 16, 16, 3, dtype=torch.uint8), 8, 8)
    assert t.dtype == torch.uint8 and t.shape == (2, 8, 8, 3)
