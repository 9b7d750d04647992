"""Media I/O and resampling: mp4 (H.264 + AAC), audio files, pure numpy/torch resampling.

- ``write_mp4(path, frames, fps, wave=None, sample_rate=16000)``: H.264 + AAC
  through moviepy, written to a temporary file and renamed (no half-written
  file is ever left at ``path``).
- ``read_video(path) -> (frames float32 [F,H,W,3] 0..1, fps, wave [C,T] | None, sr | None)``
- ``read_audio(path) -> (wave float32 [C,T], sr)`` for wav / mp3 / flac / mp4 / ...
  (wav through the stdlib ``wave`` module, the rest through the ffmpeg binary
  shipped with imageio-ffmpeg).
- ``resample_audio(wave, sr_in, sr_out)``: windowed-sinc, any rational ratio.
- ``resample_video(frames, fps_in, fps_out)``: nearest frame in time (keeps events sharp).
- ``resize_frames(frames, H, W)``: antialiased bilinear.
No torchaudio needed. Array arguments may be numpy arrays or torch tensors;
results have the same kind.
"""
from __future__ import annotations

import os
import re
import contextlib
import subprocess
import tempfile
import wave as wave_module
from math import gcd
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


class MediaError(ValueError):
    """A media file is unreadable, has no stream of the asked kind, or an array is malformed."""


# ----------------------------------------------------------------------------- helpers

def _ffmpeg() -> str:
    import imageio_ffmpeg
    return imageio_ffmpeg.get_ffmpeg_exe()


def _to_numpy(x, name: str) -> tuple[np.ndarray, bool]:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().float().numpy(), True
    if isinstance(x, np.ndarray):
        return x, False
    raise MediaError(f"{name}: expected a numpy array or torch tensor, got {type(x).__name__}")


def _like(x: np.ndarray, as_torch: bool):
    return torch.from_numpy(np.ascontiguousarray(x)) if as_torch else x


def _check_file(path) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"media file {str(p)!r} does not exist")
    if not p.is_file():
        raise MediaError(f"media path {str(p)!r} is not a file")
    return p


def _default_mode(path):
    """Give a mkstemp file the usual permissions (0666 minus umask) instead of 0600."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


@contextlib.contextmanager
def _atomic_output(path: Path, suffix: str):
    """Yield a temporary file beside ``path``; it becomes ``path`` on success and is
    deleted on any error, so no half-written file is ever left behind."""
    fd, tmp = tempfile.mkstemp(suffix=suffix, prefix=".tmp-" + path.stem + "-", dir=str(path.parent or "."))
    os.close(fd)
    _default_mode(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _frames_uint8(frames, name="frames") -> np.ndarray:
    arr, _ = _to_numpy(frames, name)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise MediaError(f"{name}: expected [F, H, W, 3] RGB frames, got shape {tuple(arr.shape)}")
    if arr.shape[0] == 0:
        raise MediaError(f"{name}: no frames to write")
    if arr.dtype == np.uint8:
        return arr
    if not np.isfinite(arr).all():
        raise MediaError(f"{name}: contains NaN or inf values")
    return (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _wave_2d(wave, name="wave") -> np.ndarray:
    """[T] or [C, T] -> float32 [C, T]."""
    arr, _ = _to_numpy(wave, name)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[0] > 8:
        raise MediaError(f"{name}: expected a waveform [T] or [C, T] with C <= 8, got shape {tuple(arr.shape)}")
    if not np.isfinite(arr).all():
        raise MediaError(f"{name}: contains NaN or inf values")
    return arr.astype(np.float32)


def probe(path) -> dict:
    """Stream facts from ffmpeg's header dump: ``{"video": {fps, width, height} | None,
    "audio": {sample_rate, channels} | None, "duration": s | None}``."""
    p = _check_file(path)
    res = subprocess.run([_ffmpeg(), "-hide_banner", "-i", str(p)], capture_output=True, text=True)
    text = res.stderr
    if "Invalid data found" in text or "Stream #" not in text:
        tail = text.strip().splitlines()[-1] if text.strip() else "no output"
        raise MediaError(f"media file {str(p)!r} could not be read by ffmpeg ({tail})")
    info: dict = {"video": None, "audio": None, "duration": None}
    m = re.search(r"Duration: (\d+):(\d+):([\d.]+)", text)
    if m:
        info["duration"] = int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])
    for line in text.splitlines():
        if "Stream #" in line and "Video:" in line and info["video"] is None and "attached pic" not in line:
            size = re.search(r", (\d{2,5})x(\d{2,5})", line)
            fps = re.search(r"([\d.]+) fps", line) or re.search(r"([\d.]+) tbr", line)
            info["video"] = {"width": int(size[1]) if size else None, "height": int(size[2]) if size else None,
                             "fps": float(fps[1]) if fps else None}
        if "Stream #" in line and "Audio:" in line and info["audio"] is None:
            sr = re.search(r"(\d+) Hz", line)
            ch = 1 if re.search(r"Hz, mono", line) else (2 if re.search(r"Hz, stereo", line) else None)
            chm = re.search(r"Hz, (\d+) channels", line)
            info["audio"] = {"sample_rate": int(sr[1]) if sr else None,
                             "channels": ch or (int(chm[1]) if chm else 2)}
    return info


# ----------------------------------------------------------------------------- writing

def write_mp4(path, frames, fps: float, wave=None, sample_rate: int = 16000) -> Path:
    """Write an H.264 (+ AAC when ``wave`` is given) mp4; atomic (temp file + rename)."""
    from moviepy import ImageSequenceClip

    if not fps or fps <= 0:
        raise MediaError(f"write_mp4: fps must be positive, got {fps!r}")
    video = _frames_uint8(frames)
    if video.shape[1] % 2 or video.shape[2] % 2:  # yuv420p needs even sizes: pad one pixel
        video = np.pad(video, ((0, 0), (0, video.shape[1] % 2), (0, video.shape[2] % 2), (0, 0)), mode="edge")
    audio = _wave_2d(wave) if wave is not None else None
    if audio is not None and (not sample_rate or sample_rate <= 0):
        raise MediaError(f"write_mp4: sample_rate must be positive, got {sample_rate!r}")
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise FileNotFoundError(f"write_mp4: folder {str(path.parent)!r} does not exist")

    with _atomic_output(path, ".mp4") as tmp:
        with tempfile.TemporaryDirectory() as tmpdir:
            # moviepy encodes the picture; its mono audio path is broken (moviepy 2.1 hands
            # ffmpeg 2-channel data for a 1-channel clip), so the AAC track is muxed in
            # with the same ffmpeg binary, from raw float samples.
            silent = tmp if audio is None else os.path.join(tmpdir, "video.mp4")
            clip = ImageSequenceClip(list(video), fps=float(fps))
            clip.write_videofile(silent, fps=float(fps), codec="libx264", audio=False, preset="medium",
                                 ffmpeg_params=["-crf", "18"], pixel_format="yuv420p", logger=None)
            clip.close()
            if audio is not None:
                raw = os.path.join(tmpdir, "audio.f32")
                np.clip(audio.T, -1.0, 1.0).astype("<f4").tofile(raw)
                cmd = [_ffmpeg(), "-y", "-v", "error", "-i", silent, "-f", "f32le", "-ar", str(int(sample_rate)),
                       "-ac", str(audio.shape[0]), "-i", raw, "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy",
                       "-c:a", "aac", "-b:a", "96k", "-movflags", "+faststart", tmp]
                res = subprocess.run(cmd, capture_output=True)
                if res.returncode != 0:
                    raise MediaError(f"write_mp4 {str(path)!r}: ffmpeg could not add the audio track "
                                     f"({res.stderr.decode(errors='replace').strip()[-300:]})")
    return path


def write_wav(path, wave, sample_rate: int) -> Path:
    """16-bit PCM wav (atomic)."""
    audio = _wave_2d(wave)
    path = Path(path)
    pcm = (np.clip(audio.T, -1, 1) * 32767.0).round().astype("<i2")
    with _atomic_output(path, ".wav") as tmp:
        with wave_module.open(tmp, "wb") as w:
            w.setnchannels(audio.shape[0])
            w.setsampwidth(2)
            w.setframerate(int(sample_rate))
            w.writeframes(pcm.tobytes())
    return path


# ----------------------------------------------------------------------------- reading

def _ffmpeg_audio(p: Path, sample_rate: int, channels: int) -> np.ndarray:
    cmd = [_ffmpeg(), "-v", "error", "-i", str(p), "-vn", "-map", "0:a:0", "-f", "f32le",
           "-acodec", "pcm_f32le", "-ac", str(channels), "-ar", str(sample_rate), "-"]
    res = subprocess.run(cmd, capture_output=True)
    if res.returncode != 0:
        raise MediaError(f"media file {str(p)!r}: ffmpeg could not decode its audio "
                         f"({res.stderr.decode(errors='replace').strip()[-300:]})")
    return np.frombuffer(res.stdout, np.float32).reshape(-1, channels).T.copy()


def _read_wav(p: Path) -> tuple[np.ndarray, int] | None:
    """PCM wav through the stdlib; None if the wav is in a format it cannot read (e.g. float)."""
    try:
        with wave_module.open(str(p), "rb") as w:
            ch, width, sr, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(n)
    except (wave_module.Error, EOFError):
        return None
    if width == 1:
        data = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        data = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        data = (np.where(v >= 1 << 23, v - (1 << 24), v)).astype(np.float32) / float(1 << 23)
    elif width == 4:
        data = np.frombuffer(raw, "<i4").astype(np.float32) / float(1 << 31)
    else:
        return None
    return data.reshape(-1, ch).T.copy(), sr


def read_audio(path) -> tuple[np.ndarray, int]:
    """Audio of a wav / mp3 / flac / ogg / mp4 / ... file: (float32 [C, T] in -1..1, sample rate)."""
    p = _check_file(path)
    if p.suffix.lower() == ".wav":
        got = _read_wav(p)
        if got is not None:
            return got
    info = probe(p)
    if info["audio"] is None:
        raise MediaError(f"media file {str(p)!r} has no audio stream; give a file with sound "
                         "(wav, mp3, flac, or a video with an audio track)")
    sr = info["audio"]["sample_rate"] or 16000
    return _ffmpeg_audio(p, sr, info["audio"]["channels"]), sr


def read_video(path) -> tuple[np.ndarray, float, np.ndarray | None, int | None]:
    """(frames float32 [F, H, W, 3] in 0..1, fps, wave float32 [C, T] or None, sample rate or None)."""
    p = _check_file(path)
    info = probe(p)
    if info["video"] is None:
        raise MediaError(f"media file {str(p)!r} has no video stream; give a video file (mp4, webm, mov, ...)")
    w, h = info["video"]["width"], info["video"]["height"]
    fps = info["video"]["fps"]
    cmd = [_ffmpeg(), "-v", "error", "-i", str(p), "-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    res = subprocess.run(cmd, capture_output=True)
    if res.returncode != 0 or not w or not h:
        raise MediaError(f"media file {str(p)!r}: ffmpeg could not decode its video "
                         f"({res.stderr.decode(errors='replace').strip()[-300:]})")
    frames = np.frombuffer(res.stdout, np.uint8)
    frames = frames[: frames.size // (h * w * 3) * (h * w * 3)].reshape(-1, h, w, 3)
    if frames.shape[0] == 0:
        raise MediaError(f"media file {str(p)!r}: its video stream has no frames")
    wave, sr = None, None
    if info["audio"] is not None:
        sr = info["audio"]["sample_rate"] or 16000
        wave = _ffmpeg_audio(p, sr, info["audio"]["channels"])
    return frames.astype(np.float32) / 255.0, float(fps), wave, sr


# ----------------------------------------------------------------------------- resampling

def _sinc_weights(up: int, down: int, half_width: int, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """Per output phase (``up`` of them): tap offsets [K] and Hann-windowed sinc weights [up, K]."""
    offsets = np.arange(-half_width + 1, half_width + 1)          # relative to floor(t)
    phase = (np.arange(up) * down % up) / up                       # fractional input position per phase
    dist = offsets[None, :] - phase[:, None]                       # tap position - exact position
    w = cutoff * np.sinc(cutoff * dist) * (0.5 + 0.5 * np.cos(np.pi * np.clip(dist / half_width, -1, 1)))
    w /= w.sum(1, keepdims=True)
    return offsets, w


def resample_audio(wave, sr_in: int, sr_out: int, zero_crossings: int = 16):
    """Band-limited resampling of ``wave`` [T] or [C, T] from ``sr_in`` to ``sr_out`` Hz."""
    if int(sr_in) <= 0 or int(sr_out) <= 0:
        raise MediaError(f"resample_audio: sample rates must be positive, got {sr_in} -> {sr_out}")
    arr, as_torch = _to_numpy(wave, "resample_audio wave")
    if sr_in == sr_out:
        return wave
    one_d = arr.ndim == 1
    x = _wave_2d(arr, "resample_audio wave").astype(np.float64)
    g = gcd(int(sr_in), int(sr_out))
    up, down = int(sr_out) // g, int(sr_in) // g
    cutoff = min(1.0, up / down)                                   # in input-sample units
    half = int(np.ceil(zero_crossings / cutoff))
    offsets, weights = _sinc_weights(up, down, half, cutoff)
    n_out = int(np.ceil(x.shape[1] * up / down))
    xp = np.pad(x, ((0, 0), (half, half + 1)))
    out = np.empty((x.shape[0], n_out))
    for start in range(0, n_out, 32768):                           # chunks bound the memory
        m = np.arange(start, min(n_out, start + 32768))
        base = (m * down) // up
        idx = base[:, None] + offsets[None, :] + half               # [M, K] into the padded signal
        out[:, m] = np.einsum("cmk,mk->cm", xp[:, idx], weights[(m % up)])
    out = out.astype(np.float32)
    return _like(out[0] if one_d else out, as_torch)


def resample_video(frames, fps_in: float, fps_out: float):
    """Frames at ``fps_out`` picked as the nearest source frame in time (no blending)."""
    if fps_in <= 0 or fps_out <= 0:
        raise MediaError(f"resample_video: fps must be positive, got {fps_in} -> {fps_out}")
    if not isinstance(frames, (np.ndarray, torch.Tensor)):
        raise MediaError(f"resample_video: expected frames as a numpy array or torch tensor, got {type(frames).__name__}")
    n_in = frames.shape[0]
    n_out = max(1, int(round(n_in * fps_out / fps_in)))
    idx = np.clip(np.floor(np.arange(n_out) * fps_in / fps_out + 0.5).astype(np.int64), 0, n_in - 1)
    if isinstance(frames, torch.Tensor):
        return frames[torch.from_numpy(idx).to(frames.device)]
    return frames[idx]


def resize_frames(frames, height: int, width: int):
    """Antialiased bilinear resize of ``frames`` [F, H, W, C] to [F, height, width, C]."""
    if isinstance(frames, torch.Tensor):
        x, as_torch = frames, True
    else:
        arr, _ = _to_numpy(frames, "resize_frames frames")
        x, as_torch = torch.from_numpy(np.ascontiguousarray(arr)), False
    if x.ndim != 4:
        raise MediaError(f"resize_frames: expected frames [F, H, W, C], got shape {tuple(x.shape)}")
    if tuple(x.shape[1:3]) == (height, width):
        return frames
    dtype = x.dtype
    y = x.float().permute(0, 3, 1, 2)
    y = F.interpolate(y, size=(int(height), int(width)), mode="bilinear", align_corners=False, antialias=True)
    y = y.permute(0, 2, 3, 1)
    if dtype == torch.uint8:
        y = y.round().clamp(0, 255).to(torch.uint8)
    else:
        y = y.to(dtype)
    return y if as_torch else y.numpy()


def read_image(path) -> np.ndarray:
    """Image file (png, jpg, webp, ...) -> float32 ``[H, W, 3]`` in 0..1 (alpha dropped)."""
    p = _check_file(path)
    try:
        from PIL import Image

        with Image.open(p) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except Exception as e:  # noqa: BLE001 - PIL raises many types for bad files
        raise MediaError(f"{p}: cannot read it as an image ({e}); use a png or jpg file") from e
    return rgb
