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


@pytest.mark.parametrize("n, fps", [(25, 24), (121, 24), (7, 16), (48, 16)])
def test_mp4_keeps_every_frame(tmp_path, n, fps):
    # each frame a different grey level, so a dropped or repeated frame shows in the decoded sequence
    levels = np.linspace(0.05, 0.95, n, dtype=np.float32)
    frames = np.broadcast_to(levels[:, None, None, None], (n, 16, 16, 3)).copy()
    path = write_mp4(tmp_path / "n.mp4", frames, fps, np.zeros(int(16000 * n / fps), np.float32), 16000)
    got, got_fps, _, _ = read_video(path)
    assert got.shape[0] == n and got_fps == fps
    assert np.abs(got.mean(axis=(1, 2, 3)) - levels).max() < 0.02


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
    assert up.shape[0] == 32 and all(abs(float(up[k, 0, 0, 0]) - k / 2) <= 0.5 for k in range(32)) and set(up[:, 0, 0, 0].tolist()) == set(range(16))
    small = resize_frames(np.random.default_rng(0).random((2, 64, 64, 3)).astype(np.float32), 32, 48)
    assert small.shape == (2, 32, 48, 3)
    t = resize_frames(torch.zeros(2, 16, 16, 3, dtype=torch.uint8), 8, 8)
    assert t.dtype == torch.uint8 and t.shape == (2, 8, 8, 3)


# ----------------------------------------------------------------------------- resampling backends

def _sine_error(resample, sr_in, sr_out, f=440.0):
    x = np.sin(2 * np.pi * f * np.arange(sr_in) / sr_in).astype(np.float32)[None]
    y = resample(x, sr_in, sr_out)
    assert y.shape == (1, sr_out)  # one second in, one second out
    return float(np.abs(y[0] - np.sin(2 * np.pi * f * np.arange(sr_out) / sr_out))[200:-200].max())


def test_scipy_resampler_keeps_a_sine():
    from harmony.media import _resample_scipy

    for sr_in, sr_out in ((44100, 16000), (16000, 22050), (8000, 16000)):
        assert _sine_error(_resample_scipy, sr_in, sr_out) < 2e-3


def test_torchaudio_resampler_keeps_a_sine():
    from harmony.media import _resample_torchaudio, _torchaudio_functional

    if _torchaudio_functional() is None:
        pytest.skip("torchaudio is not importable here (the scipy path is used)")
    for sr_in, sr_out in ((44100, 16000), (16000, 22050), (8000, 16000)):
        assert _sine_error(_resample_torchaudio, sr_in, sr_out) < 2e-3


def test_resample_backend_choice(monkeypatch):
    from harmony import media

    monkeypatch.setattr(media, "_torchaudio_functional", lambda: None)
    assert media.resample_backend(44100, 16000) == "scipy"
    monkeypatch.setattr(media, "_torchaudio_functional", lambda: object())
    assert media.resample_backend(44100, 16000) == "torchaudio"  # 441 / 160 phases
    assert media.resample_backend(44056, 16000) == "scipy"  # 5507 / 2000: too many phases


@pytest.mark.slow
def test_media_imports_and_resamples_without_torchaudio():
    code = ("import sys; sys.modules['torchaudio'] = None\n"
            "import numpy as np\n"
            "from harmony import media\n"
            "assert media.resample_backend(48000, 16000) == 'scipy'\n"
            "print(media.resample_audio(np.zeros(4800, np.float32), 48000, 16000).shape)\n")
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "(1600,)"


def test_to_mono_averages_the_channels():
    from harmony.media import to_mono

    wave = np.array([[1.0, 0.0, -1.0], [0.0, 0.5, -1.0]], np.float32)
    assert np.allclose(to_mono(wave), [[0.5, 0.25, -1.0]])
    got = to_mono(torch.from_numpy(wave))
    assert isinstance(got, torch.Tensor) and got.shape == (1, 3)


# ----------------------------------------------------------------------------- fitting to the frame

def _columns(height, width, frames=2):
    """Frames whose pixel value is its column index (so a crop shows which columns it kept)."""
    return np.broadcast_to(np.arange(width, dtype=np.float32)[None, None, :, None],
                           (frames, height, width, 3)).copy()


def test_fit_crop_keeps_the_centre():
    from harmony.media import fit_frames

    lines = []
    out = fit_frames(_columns(4, 8), 4, 4, "crop", name="driving video", log=lines.append)
    assert out.shape == (2, 4, 4, 3)
    assert np.array_equal(out[0, 0, :, 0], [2, 3, 4, 5])  # the middle four columns
    assert len(lines) == 1 and "driving video: 8x4 centre-cropped to 4x4" in lines[0]
    tall = np.swapaxes(_columns(4, 8), 1, 2)  # 8 high, 4 wide: rows 2..5 kept
    assert np.array_equal(fit_frames(tall, 4, 4)[0, :, 0, 0], [2, 3, 4, 5])
    assert fit_frames(_columns(5, 8), 4, 4).shape == (2, 4, 4, 3)


def test_fit_letterbox_keeps_the_whole_picture_with_black_bars():
    from harmony.media import fit_frames

    frames = _columns(4, 8) + 1.0  # no black pixel inside the picture
    for x in (frames, torch.from_numpy(frames)):
        lines = []
        out = fit_frames(x, 8, 8, "letterbox", log=lines.append)
        out = np.asarray(out)
        assert out.shape == (2, 8, 8, 3)
        assert (out[:, :2] == 0).all() and (out[:, 6:] == 0).all()  # bars above and below
        assert np.array_equal(out[:, 2:6], frames)  # the picture itself, untouched
        assert len(lines) == 1 and "letterboxed" in lines[0]


def test_fit_stretch_same_shape_and_errors():
    from harmony.media import fit_frames

    frames = np.random.default_rng(0).random((2, 4, 8, 3)).astype(np.float32)
    assert np.array_equal(fit_frames(frames, 4, 4, "stretch"), resize_frames(frames, 4, 4))
    lines = []
    assert fit_frames(frames, 4, 8, log=lines.append) is frames and lines == []  # nothing to do
    with pytest.raises(MediaError, match="fit 'zoom' is unknown"):
        fit_frames(frames, 4, 4, "zoom")
