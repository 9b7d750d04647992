"""Media I/O and conversions: mp4 (H.264 + AAC), audio files, resampling, fitting to the frame.

- ``write_mp4(path, frames, fps, wave=None, sample_rate=None)``: H.264 + AAC
  through the ffmpeg binary shipped with imageio-ffmpeg (every frame and sample
  kept), written to a temporary file and renamed (no half-written file is ever
  left at ``path``).
- ``read_video(path) -> (frames float32 [F,H,W,3] 0..1, fps, wave [C,T] | None, sr | None)``;
  a container whose frame rate is missing or outside 1-240 fps (``MIN_FPS``..``MAX_FPS``) is
  refused before decoding, unless the real rate is given (``fps=``).
- ``read_audio(path) -> (wave float32 [C,T], sr)`` for wav / mp3 / flac / mp4 / ...
  (wav through the stdlib ``wave`` module, the rest through the ffmpeg binary
  shipped with imageio-ffmpeg).
- ``resample_audio(wave, sr_in, sr_out)``: ``torchaudio.functional.resample`` where
  torchaudio imports, else ``scipy.signal.resample_poly``; ``to_mono(wave)``.
- ``resample_video(frames, fps_in, fps_out, max_frames=None)``: nearest frame in time (keeps
  events sharp); ``max_frames`` bounds the output (what the run uses), whatever the rates.
- ``resize_frames(frames, H, W)``: antialiased bilinear; ``fit_frames(frames, H, W, fit)``:
  to the model's frame by centre-crop (default), letterbox or stretch.
torchaudio is optional. Array arguments may be numpy arrays or torch tensors;
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
from einops import rearrange, reduce


class MediaError(ValueError):
    """A media file is unreadable, has no stream of the asked kind, or an array is malformed."""


from .validate import MAX_FPS, MIN_FPS  # noqa: E402 - plausible frame rates: a container claiming
# 0.0002 or 1,000,000 fps is lying or damaged (resampled to the model's rate: millions of frames)


def _parse_rate(text: str):
    """``"23.98"`` / ``"1000k"`` (ffmpeg's spelling of 1,000,000) -> float, or None."""
    m = re.fullmatch(r"([\d.]+)(k?)", text)
    if not m:
        return None
    try:
        return float(m[1]) * (1000.0 if m[2] else 1.0)
    except ValueError:
        return None


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


@contextlib.contextmanager
def _atomic_output(path, suffix: str):
    """:func:`harmony.files.atomic_path` (a temporary file beside ``path`` that becomes
    ``path`` on success; only an absent target or a regular file is replaced) with the
    errors as :class:`MediaError` naming ``path``, not the temporary file."""
    from .files import atomic_path
    from .validate import InputError

    try:
        with atomic_path(path, suffix) as tmp:
            try:
                yield tmp
            except Exception as e:
                if isinstance(e, MediaError) or tmp not in str(e):
                    raise
                raise MediaError(f"output {str(path)!r}: writing failed ({str(e).replace(tmp, str(path))})") from e
    except InputError as e:
        raise MediaError(str(e)) from None


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
            fps = re.search(r"([\d.]+k?) fps", line) or re.search(r"([\d.]+k?) tbr", line)
            info["video"] = {"width": int(size[1]) if size else None, "height": int(size[2]) if size else None,
                             "fps": _parse_rate(fps[1]) if fps else None}
        if "Stream #" in line and "Audio:" in line and info["audio"] is None:
            sr = re.search(r"(\d+) Hz", line)
            ch = 1 if re.search(r"Hz, mono", line) else (2 if re.search(r"Hz, stereo", line) else None)
            chm = re.search(r"Hz, (\d+) channels", line)
            info["audio"] = {"sample_rate": int(sr[1]) if sr else None,
                             "channels": ch or (int(chm[1]) if chm else 2)}
    return info


UNKNOWN_RATE_DECODE = 16000
"""Sample rate audio is decoded at when the container gives none (ffmpeg resamples to it); the
pipeline resamples any rate to its audio codec's."""


# ----------------------------------------------------------------------------- writing

def write_mp4(path, frames, fps: float, wave=None, sample_rate: int | None = None) -> Path:
    """Write an H.264 (+ AAC when ``wave`` is given, at its ``sample_rate``) mp4; atomic (temp file
    + rename)."""
    if not fps or fps <= 0:
        raise MediaError(f"write_mp4: fps must be positive, got {fps!r}")
    video = _frames_uint8(frames)
    if video.shape[1] % 2 or video.shape[2] % 2:  # yuv420p needs even sizes: pad one pixel
        video = np.pad(video, ((0, 0), (0, video.shape[1] % 2), (0, video.shape[2] % 2), (0, 0)), mode="edge")
    audio = _wave_2d(wave) if wave is not None else None
    if audio is not None and (not sample_rate or sample_rate <= 0):
        raise MediaError(f"write_mp4: sample_rate must be the wave's rate in Hz (positive), got {sample_rate!r}")
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise FileNotFoundError(f"write_mp4: folder {str(path.parent)!r} does not exist")

    with _atomic_output(path, ".mp4") as tmp:
        with tempfile.TemporaryDirectory() as tmpdir:
            # Raw RGB frames straight into ffmpeg (moviepy's bundled binary). moviepy 2.1's
            # ImageSequenceClip drops the last frame when n / fps lands just below a whole
            # frame count (int(duration * fps)), and its mono audio path hands ffmpeg 2-channel
            # data; piping frames and float samples keeps every frame and sample.
            n, h, w = video.shape[:3]
            raw_video = os.path.join(tmpdir, "video.rgb")
            np.ascontiguousarray(video).tofile(raw_video)
            cmd = [_ffmpeg(), "-y", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
                   "-r", repr(float(fps)), "-i", raw_video]
            if audio is not None:
                raw = os.path.join(tmpdir, "audio.f32")
                np.clip(audio.T, -1.0, 1.0).astype("<f4").tofile(raw)
                cmd += ["-f", "f32le", "-ar", str(int(sample_rate)), "-ac", str(audio.shape[0]), "-i", raw,
                        "-map", "0:v:0", "-map", "1:a:0", "-c:a", "aac", "-b:a", "96k"]
            cmd += ["-frames:v", str(n), "-c:v", "libx264", "-preset", "medium", "-crf", "18",
                    "-pix_fmt", "yuv420p", "-movflags", "+faststart", "-f", "mp4", tmp]
            res = subprocess.run(cmd, capture_output=True)
            if res.returncode != 0:
                raise MediaError(f"write_mp4 {str(path)!r}: ffmpeg could not encode the clip "
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

def _limit_args(max_seconds) -> list:
    """ffmpeg input options that stop decoding after ``max_seconds`` (none when None)."""
    if max_seconds is None:
        return []
    max_seconds = float(max_seconds)
    if not np.isfinite(max_seconds) or max_seconds <= 0:
        raise MediaError(f"max_seconds must be a positive number, got {max_seconds!r}")
    return ["-t", f"{max_seconds:.6f}"]


def _ffmpeg_audio(p: Path, sample_rate: int, channels: int, max_seconds=None) -> np.ndarray:
    cmd = [_ffmpeg(), "-v", "error", *_limit_args(max_seconds), "-i", str(p), "-vn", "-map", "0:a:0",
           "-f", "f32le", "-acodec", "pcm_f32le", "-ac", str(channels), "-ar", str(sample_rate), "-"]
    res = subprocess.run(cmd, capture_output=True)
    if res.returncode != 0:
        raise MediaError(f"media file {str(p)!r}: ffmpeg could not decode its audio "
                         f"({res.stderr.decode(errors='replace').strip()[-300:]})")
    return rearrange(np.frombuffer(res.stdout, np.float32), "(t c) -> c t", c=channels).copy()


def _read_wav(p: Path, max_seconds=None) -> tuple[np.ndarray, int] | None:
    """PCM wav through the stdlib; None if the wav is in a format it cannot read (e.g. float).
    Only the first ``max_seconds`` are read from the file when given."""
    _limit_args(max_seconds)  # checks the value
    try:
        with wave_module.open(str(p), "rb") as w:
            ch, width, sr, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            if max_seconds is not None and sr > 0:
                n = min(n, int(np.ceil(float(max_seconds) * sr)))
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
    return rearrange(data, "(t c) -> c t", c=ch).copy(), sr


def read_audio(path, max_seconds=None) -> tuple[np.ndarray, int]:
    """Audio of a wav / mp3 / flac / ogg / mp4 / ... file: (float32 [C, T] in -1..1, sample rate).

    ``max_seconds``: read (decode) only the first ``max_seconds`` of the file: a long file is
    never decoded in full when only its start is used."""
    p = _check_file(path)
    if p.suffix.lower() == ".wav":
        got = _read_wav(p, max_seconds)
        if got is not None:
            return got
    info = probe(p)
    if info["audio"] is None:
        raise MediaError(f"media file {str(p)!r} has no audio stream; give a file with sound "
                         "(wav, mp3, flac, or a video with an audio track)")
    sr = info["audio"]["sample_rate"] or UNKNOWN_RATE_DECODE
    return _ffmpeg_audio(p, sr, info["audio"]["channels"], max_seconds), sr


def check_frame_rate(fps, name: str, todo: str) -> float:
    """``fps`` if it is a plausible frame rate (``MIN_FPS``..``MAX_FPS``), else a ``MediaError``
    naming ``name`` (the file or input), the rate, the range and ``todo`` (what to do):
    `harmony.validate.frame_rate`'s rule and words, as the media layer's error type."""
    from .validate import InputError, frame_rate

    try:
        return frame_rate(fps, name, todo=todo, missing="the container gives none")
    except InputError as e:
        raise MediaError(str(e)) from None


def read_video(path, max_seconds=None, fps=None) -> tuple[np.ndarray, float, np.ndarray | None, int | None]:
    """(frames float32 [F, H, W, 3] in 0..1, fps, wave float32 [C, T] or None, sample rate or None).

    ``max_seconds``: decode only the first ``max_seconds`` of the file (picture and sound); at most
    ``ceil(max_seconds * fps) + 1`` frames are decoded, whatever the timestamps say.
    ``fps``: the clip's real frame rate, for a container whose own is missing or wrong (its
    timestamps are then ignored). Without it, a container rate outside ``MIN_FPS``..``MAX_FPS``
    is refused before anything is decoded."""
    p = _check_file(path)
    limit = _limit_args(max_seconds)
    info = probe(p)
    if info["video"] is None:
        raise MediaError(f"media file {str(p)!r} has no video stream; give a video file (mp4, webm, mov, ...)")
    w, h = info["video"]["width"], info["video"]["height"]
    if fps is None:
        fps = check_frame_rate(info["video"]["fps"], f"media file {str(p)!r}",
                               f"re-encode the file at its real rate (e.g. ffmpeg -i {p.name} -r 24 fixed.mp4) "
                               "or give that rate (fps=24)")
        inputs = limit
    else:
        fps = check_frame_rate(fps, f"media file {str(p)!r}: the given fps", "give the clip's real rate, e.g. 24")
        inputs = ["-r", repr(fps)]  # the container's timestamps are ignored: frames at the given rate
    most = [] if max_seconds is None else ["-frames:v", str(int(np.ceil(float(max_seconds) * fps)) + 1)]
    cmd = [_ffmpeg(), "-v", "error", *inputs, "-i", str(p), "-map", "0:v:0", *most, "-f", "rawvideo",
           "-pix_fmt", "rgb24", "-"]
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
        sr = info["audio"]["sample_rate"] or UNKNOWN_RATE_DECODE
        wave = _ffmpeg_audio(p, sr, info["audio"]["channels"], max_seconds)
    return frames.astype(np.float32) / 255.0, float(fps), wave, sr


# ----------------------------------------------------------------------------- resampling

_TORCHAUDIO_MAX_RATIO_TERM = 1000
"""torchaudio builds one filter per output phase: above this many phases (rates with a small
common divisor, e.g. 44056 -> 16000 Hz) scipy's polyphase filter is used instead."""


def _torchaudio_functional():
    """``torchaudio.functional`` when torchaudio imports (as in ComfyUI installs), else None."""
    try:
        import torchaudio.functional as taf
    except Exception:  # noqa: BLE001 - ImportError, or a torchaudio built for another torch
        return None
    return taf


def _resample_torchaudio(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    taf = _torchaudio_functional()
    if taf is None:
        raise MediaError("resample_audio: torchaudio is not importable here")
    return taf.resample(torch.from_numpy(np.ascontiguousarray(x)), int(sr_in), int(sr_out)).numpy()


def _resample_scipy(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    from scipy.signal import resample_poly

    g = gcd(int(sr_in), int(sr_out))
    return resample_poly(x, int(sr_out) // g, int(sr_in) // g, axis=-1).astype(np.float32)


def resample_backend(sr_in: int, sr_out: int) -> str:
    """Which library ``resample_audio`` uses for this pair of rates: "torchaudio" or "scipy"."""
    g = gcd(int(sr_in), int(sr_out))
    if max(int(sr_in), int(sr_out)) // g <= _TORCHAUDIO_MAX_RATIO_TERM and _torchaudio_functional():
        return "torchaudio"
    return "scipy"


def resample_audio(wave, sr_in: int, sr_out: int):
    """Band-limited resampling of ``wave`` [T] or [C, T] from ``sr_in`` to ``sr_out`` Hz.

    ``torchaudio.functional.resample`` where torchaudio imports, else
    ``scipy.signal.resample_poly``; ``ceil(T * sr_out / sr_in)`` samples out, float32.
    """
    if int(sr_in) <= 0 or int(sr_out) <= 0:
        raise MediaError(f"resample_audio: sample rates must be positive, got {sr_in} -> {sr_out}")
    arr, as_torch = _to_numpy(wave, "resample_audio wave")
    if sr_in == sr_out:
        return wave
    x = _wave_2d(arr, "resample_audio wave")
    if resample_backend(sr_in, sr_out) == "torchaudio":
        out = _resample_torchaudio(x, sr_in, sr_out)
    else:
        out = _resample_scipy(x, sr_in, sr_out)
    out = out.astype(np.float32)
    return _like(out[0] if arr.ndim == 1 else out, as_torch)


def to_mono(wave):
    """[C, T] (or [T]) -> [1, T]: the channels averaged (numpy in, numpy out; torch likewise)."""
    arr, as_torch = _to_numpy(wave, "to_mono wave")
    x = _wave_2d(arr, "to_mono wave")
    return _like(reduce(x, "c t -> 1 t", "mean"), as_torch)


def resample_video(frames, fps_in: float, fps_out: float, max_frames: int | None = None):
    """Frames at ``fps_out`` picked as the nearest source frame in time (no blending).

    ``max_frames``: at most this many frames out (the first ones): the work and memory are bounded
    by what is used, not by the rates (1 frame at 0.0002 fps would otherwise be 120,000 at 24 fps)."""
    if not (fps_in > 0 and fps_out > 0 and np.isfinite(fps_in) and np.isfinite(fps_out)):
        raise MediaError(f"resample_video: fps must be positive, got {fps_in} -> {fps_out}")
    if not isinstance(frames, (np.ndarray, torch.Tensor)):
        raise MediaError(f"resample_video: expected frames as a numpy array or torch tensor, got {type(frames).__name__}")
    if max_frames is not None and int(max_frames) < 1:
        raise MediaError(f"resample_video: max_frames must be at least 1, got {max_frames}")
    n_in = frames.shape[0]
    n_out = n_in * fps_out / fps_in
    if max_frames is not None:
        n_out = min(n_out, int(max_frames))
    n_out = max(1, int(round(n_out)))
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
    y = rearrange(x.float(), "f h w c -> f c h w")
    y = F.interpolate(y, size=(int(height), int(width)), mode="bilinear", align_corners=False, antialias=True)
    y = rearrange(y, "f c h w -> f h w c")
    if dtype == torch.uint8:
        y = y.round().clamp(0, 255).to(torch.uint8)
    else:
        y = y.to(dtype)
    return y if as_torch else y.numpy()


FIT_MODES = ("crop", "letterbox", "stretch")
"""How a picture of another shape is fitted to the model's frame: ``crop`` (default) keeps the
centre at the frame's aspect ratio, ``letterbox`` keeps the whole picture with black bars,
``stretch`` keeps the whole picture, distorted."""


def _centre_box(height: int, width: int, aspect: float) -> tuple[int, int, int, int]:
    """(top, left, h, w) of the largest centred box of ``aspect`` (= w / h) inside height x width."""
    if width / height > aspect:  # too wide: keep the full height
        w = max(1, min(width, round(height * aspect)))
        return 0, (width - w) // 2, height, w
    h = max(1, min(height, round(width / aspect)))
    return (height - h) // 2, 0, h, width


def fit_frames(frames, height: int, width: int, fit: str = "crop", name: str = "frames", log=None):
    """``frames`` [F, H, W, 3] -> [F, height, width, 3], keeping the aspect ratio as ``fit`` says
    (see :data:`FIT_MODES`). ``log``, if given, gets one line describing any change."""
    if fit not in FIT_MODES:
        raise MediaError(f"{name}: fit {fit!r} is unknown; use one of {', '.join(FIT_MODES)}")
    if frames.ndim != 4:
        raise MediaError(f"{name}: expected frames [F, H, W, 3], got shape {tuple(frames.shape)}")
    src_h, src_w = int(frames.shape[1]), int(frames.shape[2])
    height, width = int(height), int(width)
    if (src_h, src_w) == (height, width):
        return frames
    same_aspect = src_h * width == src_w * height
    note = f"{name}: {src_w}x{src_h} resized to {width}x{height}"
    if fit == "stretch" or same_aspect:
        out = resize_frames(frames, height, width)
        if not same_aspect:
            note += " (fit=stretch: aspect ratio not kept)"
    elif fit == "crop":
        top, left, h, w = _centre_box(src_h, src_w, width / height)
        out = resize_frames(frames[:, top:top + h, left:left + w], height, width)
        note = (f"{name}: {src_w}x{src_h} centre-cropped to {w}x{h} and resized to {width}x{height}, "
                "the model's frame (fit=letterbox keeps the whole picture)")
    else:  # letterbox
        _, _, h, w = _centre_box(height, width, src_w / src_h)
        inner = resize_frames(frames, h, w)
        top, left = (height - h) // 2, (width - w) // 2
        pad = ((0, 0), (top, height - h - top), (left, width - w - left), (0, 0))
        if isinstance(inner, torch.Tensor):
            out = F.pad(inner, (0, 0, *pad[2], *pad[1]))
        else:
            out = np.pad(inner, pad)
        note = (f"{name}: {src_w}x{src_h} resized to {w}x{h} and letterboxed (black bars) to "
                f"{width}x{height}, the model's frame")
    if log is not None:
        log(note)
    return out


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
