"""Input validation at the door: one set of checks for the CLI, the Python API and the nodes.

Every entrance (``python -m harmony generate``, ``HarmonyPipeline`` public
methods, the ComfyUI nodes) calls these functions before any compute. A bad
value raises :class:`InputError` whose message names the input, the value and
the fix, worded for the entrance that was used (``via``):

- ``"api"``: ``pass e.g. seconds=3``
- ``"cli"``: ``pass e.g. --seconds 3``
- ``"node"``: ``set 'seconds' to e.g. 3``

Pure torch / numpy: no ComfyUI, no model. Limits (e.g. the longest clip) are
passed in by the caller from the model's own config, never defined here.
"""
from __future__ import annotations

import math
import numbers
import os
import stat
from typing import Optional

import numpy as np
import torch


class InputError(ValueError):
    """An input that cannot be used: the message names it, its value and what to do."""


# ------------------------------------------------------------------ wording


def flag_of(name: str) -> str:
    """CLI spelling of an input name (``text_cfg`` -> ``--text-cfg``)."""
    return "--" + name.replace("_", "-")


def fix(name: str, example, via: str = "api", flag: Optional[str] = None) -> str:
    """How to pass a good value, in the entrance's own words."""
    if via == "cli":
        return f"pass e.g. {flag or flag_of(name)} {example}"
    if via == "node":
        return f"set '{name}' to e.g. {example}"
    return f"pass e.g. {name}={example}"


def _show(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return f"a {type(value).__name__} of shape {tuple(value.shape)}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _label(name: str, via: str, flag: Optional[str]) -> str:
    return (flag or flag_of(name)) if via == "cli" else name


# ------------------------------------------------------------------ numbers


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def number(value, name: str, example, *, via: str = "api", flag: Optional[str] = None,
           low: Optional[float] = None, high: Optional[float] = None, low_open: bool = False,
           why: str = "") -> float:
    """A finite real number, optionally within [low, high] (``low_open``: > low). Returns float."""
    label = _label(name, via, flag)
    bounds = ""
    if low is not None and high is not None:
        bounds = f" between {low:g} and {high:g}"
    elif low is not None:
        bounds = f" greater than {low:g}" if low_open else f" of at least {low:g}"
    elif high is not None:
        bounds = f" of at most {high:g}"
    what = f"must be a finite number{bounds}{(' ' + why) if why else ''}"
    if not _is_real(value):
        raise InputError(f"{label}={_show(value)}: {what}, not a {type(value).__name__}; "
                         f"{fix(name, example, via, flag)}")
    v = float(value)
    bad = (not math.isfinite(v) or (low is not None and (v <= low if low_open else v < low))
           or (high is not None and v > high))
    if bad:
        raise InputError(f"{label}={_show(v)}: {what}; {fix(name, example, via, flag)}")
    return v


def integer(value, name: str, example, *, via: str = "api", flag: Optional[str] = None,
            low: Optional[int] = None, high: Optional[int] = None) -> int:
    """A whole number (int or numpy integer; not bool, float or str) within [low, high]."""
    label = _label(name, via, flag)
    bounds = ""
    if low is not None and high is not None:
        bounds = f" from {low} to {'2**64-1' if high == 2**64 - 1 else high}"
    elif low is not None:
        bounds = f" >= {low}"
    what = f"must be a whole number{bounds}"
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        kind = type(value).__name__
        raise InputError(f"{label}={_show(value)}: {what}, not a {kind}; {fix(name, example, via, flag)}")
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        raise InputError(f"{label}={v}: {what}; {fix(name, example, via, flag)}")
    return v


def choice(value, name: str, options, *, via: str = "api", flag: Optional[str] = None, what: str = "") -> str:
    options = list(options)
    if value not in options:
        label = _label(name, via, flag)
        raise InputError(f"{label}={_show(value)}: unknown {what or name}; use one of {', '.join(options)}")
    return value


def seconds(value, *, min_seconds: float, max_seconds: float, via: str = "api",
            flag: Optional[str] = None) -> Optional[float]:
    """Clip length: None (follow the media / default) or a finite number >= ``min_seconds``.

    Values above ``max_seconds`` are accepted here (the pipeline caps them to the
    model's limit and says so); NaN, inf, zero, negative and too-short values are refused.
    """
    if value is None:
        return None
    label = _label("seconds", via, flag)
    why = f"(the model's limit; longer requests are capped to {max_seconds:g})"
    what = f"must be a finite number between {min_seconds:g} and {max_seconds:g} {why}"
    if not _is_real(value):
        raise InputError(f"{label}={_show(value)}: {what}, not a {type(value).__name__}; "
                         f"{fix('seconds', 3, via, flag)}")
    v = float(value)
    if not math.isfinite(v):
        raise InputError(f"{label}={_show(v)}: {what}; {fix('seconds', 3, via, flag)}")
    if v < min_seconds:
        raise InputError(f"{label}={_show(v)}: seconds must be at least {min_seconds:g} (the shortest clip) "
                         f"and at most {max_seconds:g} (the model's limit); {fix('seconds', 3, via, flag)}")
    return v


def sampling_args(*, seconds_value=None, seed=0, steps=20, shift=None, sv=None, sa=None, text_cfg=1.0,
                  st=None, resync=None, guidance="synccfg", solver="dpmpp_2m", min_seconds: float, max_seconds: float,
                  guidance_modes=None, solvers=None, via: str = "api", flags: Optional[dict] = None) -> dict:
    """Check every scalar setting of a sampling run; returns them normalised (floats / ints).

    ``flags``: CLI spellings for names whose flag is not ``--name`` (e.g. ``{"seconds_value": ...}``).
    """
    from .guidance import DEFAULT_SA, DEFAULT_ST, DEFAULT_SV
    from .sampling import DEFAULT_RESYNC, DEFAULT_SHIFT

    shift = DEFAULT_SHIFT if shift is None else shift
    sv = DEFAULT_SV if sv is None else sv
    sa = DEFAULT_SA if sa is None else sa
    st = DEFAULT_ST if st is None else st
    resync = DEFAULT_RESYNC if resync is None else resync
    flags = flags or {}
    out = {
        "seconds": seconds(seconds_value, min_seconds=min_seconds, max_seconds=max_seconds, via=via,
                           flag=flags.get("seconds")),
        "seed": integer(seed, "seed", 0, via=via, flag=flags.get("seed"), low=0, high=2**64 - 1),
        "steps": integer(steps, "steps", 20, via=via, flag=flags.get("steps"), low=1),
        "shift": number(shift, "shift", f"{DEFAULT_SHIFT:g}", via=via, flag=flags.get("shift"), low=0, low_open=True),
        "sv": number(sv, "sv", f"{DEFAULT_SV:g}", via=via, flag=flags.get("sv")),
        "sa": number(sa, "sa", f"{DEFAULT_SA:g}", via=via, flag=flags.get("sa")),
        "text_cfg": number(text_cfg, "text_cfg", 1, via=via, flag=flags.get("text_cfg")),
        "st": number(st, "st", f"{DEFAULT_ST:g}", via=via, flag=flags.get("st")),
        "resync": number(resync, "resync", "0.4", via=via, flag=flags.get("resync"), low=0, high=1,
                         why="(the resync pass's share of the schedule; 0 = off)"),
    }
    if guidance_modes is not None:
        out["guidance"] = choice(guidance, "guidance", guidance_modes, via=via, what="guidance mode")
    if solvers is not None:
        out["solver"] = choice(solver, "solver", solvers, via=via, what="solver")
    return out


# ------------------------------------------------------------------ tensors


def _as_tensor(value, name: str, expected: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray) and value.dtype != object:
        return torch.from_numpy(np.ascontiguousarray(value))
    raise InputError(f"{name}: expected {expected} (a torch tensor or numpy array), got {type(value).__name__}")


def finite(tensor, name: str, what: str = "") -> None:
    """Refuse a tensor holding NaN or inf, saying where and how many."""
    t = tensor if isinstance(tensor, torch.Tensor) else torch.as_tensor(tensor)
    if not t.is_floating_point() or t.numel() == 0:
        return
    ok = torch.isfinite(t)
    if bool(ok.all()):
        return
    bad = int((~ok).sum())
    first = tuple(int(i) for i in (~ok).nonzero()[0].tolist())
    kinds = []
    if bool(torch.isnan(t).any()):
        kinds.append("NaN")
    if bool(torch.isinf(t).any()):
        kinds.append("inf")
    raise InputError(f"{name} contains {' and '.join(kinds)} ({bad} of {t.numel()} values, first at index "
                     f"{list(first)}); {what or 'give finite values (check the step that produced it)'}")


def rate(value, name: str, unit: str, example, *, via: str = "api", flag: Optional[str] = None,
         owner: str = "") -> float:
    """A positive finite sample rate / frame rate (``owner``: the media it belongs to)."""
    label = _label(name, via, flag)
    if not _is_real(value) or not math.isfinite(float(value)) or float(value) <= 0:
        raise InputError(f"{owner + ': ' if owner else ''}{label}={_show(value)}: must be a positive number "
                         f"of {unit}; {fix(name, example, via, flag)}")
    return float(value)


MIN_FPS, MAX_FPS = 1.0, 240.0
"""Plausible frame rates of a video input (the same range as ``harmony.media``): outside it a clip's
rate is a container's lie or a typo, and resampling it to the model's rate would make millions of
frames (1 frame at 1e-9 fps is 2.4e10 frames at 24 fps)."""

FPS_TODO = {
    "api": "pass the clip's real frame rate, e.g. driving_video=(frames, 24)",
    "cli": "re-encode the file at its real rate (e.g. ffmpeg -i in.mp4 -r 24 out.mp4) or give that rate "
           "with --video-fps 24",
    "node": "set 'fps' to the clip's real rate (e.g. 24), or rebuild the VIDEO with a real frame rate "
            "(e.g. CreateVideo with fps 24)",
}


def frame_rate(value, name: str, *, via: str = "api", todo: Optional[str] = None,
               missing: str = "none given") -> float:
    """A plausible frame rate (``MIN_FPS``..``MAX_FPS``) of the video input ``name``; else an
    InputError: ``"driving video: frame rate 1e-09 fps is not plausible; expected 1-240 fps; ..."``.
    ``todo``: what to do (default: in the entrance's words); ``missing``: why ``None`` is unknown."""
    if value is None:
        problem = f"frame rate unknown ({missing})"
    elif not _is_real(value) or not math.isfinite(float(value)):
        problem = f"frame rate {_show(value)} is not a finite number"
    elif not MIN_FPS <= float(value) <= MAX_FPS:
        problem = f"frame rate {_show(float(value))} fps is not plausible"
    else:
        return float(value)
    raise InputError(f"{name}: {problem}; expected {MIN_FPS:g}-{MAX_FPS:g} fps; {todo or FPS_TODO.get(via, FPS_TODO['api'])}")


def wave(value, sample_rate, name: str, *, via: str = "api", scan: bool = True,
         batch_hint: str = "") -> tuple[torch.Tensor, int]:
    """A waveform ``[T]``, ``[C, T]`` or ComfyUI ``[B, C, T]`` (B must be 1) and its rate.

    Returns ``(wave [C, T] float32, sample_rate int)``. Refuses: batch 0 or > 1,
    0 channels, 0 samples, a rate that is not a positive whole number of Hz,
    NaN / inf samples (when ``scan``).
    """
    t = _as_tensor(value, name, "a waveform [channels, samples]")
    if t.dim() == 3:
        if t.shape[0] == 0:
            raise InputError(f"{name}: the AUDIO batch is empty (shape {tuple(t.shape)}); "
                             "connect an AUDIO that holds a clip")
        if t.shape[0] > 1:
            raise InputError(f"{name}: the AUDIO holds a batch of {t.shape[0]} clips, but Harmony uses one "
                             "clip per run and will not drop the others silently; pass a single clip "
                             f"(waveform [1, channels, samples]){(' - ' + batch_hint) if batch_hint else ''}")
        t = t[0]
    if t.dim() == 1:
        t = t[None]
    if t.dim() != 2:
        raise InputError(f"{name}: expected a waveform [channels, samples] (or [1, channels, samples]), "
                         f"got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise InputError(f"{name}: the waveform has 0 channels (shape {tuple(t.shape)}); give at least one "
                         "channel of audio")
    if t.shape[0] > 64:
        raise InputError(f"{name}: the waveform has {t.shape[0]} channels (shape {tuple(t.shape)}); "
                         "this looks like [samples, channels]: transpose it to [channels, samples]")
    if t.shape[1] == 0:
        raise InputError(f"{name}: the waveform has no samples (shape {tuple(t.shape)}); give a non-empty clip")
    if not t.is_floating_point():
        raise InputError(f"{name}: expected float samples in -1..1, got dtype {t.dtype}; convert it "
                         "(e.g. int16 / 32768)")
    sr_label = "sample_rate"
    if not _is_real(sample_rate) or not math.isfinite(float(sample_rate)) or float(sample_rate) <= 0 \
            or float(sample_rate) != int(float(sample_rate)):
        raise InputError(f"{name}: {sr_label}={_show(sample_rate)}: must be a positive whole number of Hz "
                         "(the rate the samples were recorded at, e.g. 16000)")
    if scan:
        finite(t, name, "give a clean clip (NaN / inf samples would turn the whole result into NaN)")
    return t.float(), int(float(sample_rate))


def frames(value, fps, name: str, *, via: str = "api", scan: bool = True, fps_required: bool = False,
           fps_name: str = "fps") -> tuple[torch.Tensor, Optional[float]]:
    """Video frames ``[F, H, W, 3]`` (or one image ``[H, W, 3]``) in 0..1 and their rate.

    Returns ``(frames [F, H, W, 3] float, fps or None)``. Refuses: 0 frames, an
    empty picture, a channel count other than 3 (4 = RGBA: alpha dropped), a
    frame rate that is not positive and finite or outside ``MIN_FPS``..``MAX_FPS``
    (:func:`frame_rate`), NaN / inf pixels (``scan``).
    """
    t = _as_tensor(value, name, "frames [F, H, W, 3]")
    if t.dim() == 3:
        t = t[None]
    if t.dim() != 4 or t.shape[-1] not in (3, 4):
        raise InputError(f"{name}: expected frames [F, H, W, 3] (RGB, 0..1), got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise InputError(f"{name}: no frames (shape {tuple(t.shape)}); give at least one frame")
    if t.shape[1] == 0 or t.shape[2] == 0:
        raise InputError(f"{name}: the frames are empty pictures (shape {tuple(t.shape)})")
    t = t[..., :3]
    if not t.is_floating_point():
        if t.dtype == torch.uint8:
            t = t.float() / 255.0
        else:
            raise InputError(f"{name}: expected float pixels in 0..1 (or uint8), got dtype {t.dtype}")
    if fps is not None or fps_required:
        fps = rate(fps, fps_name, "frames per second", 24, via=via, owner=name)
        fps = frame_rate(fps, name, via=via)
    if scan:
        finite(t, name, "give clean frames (a NaN / inf pixel would spread through the whole clip)")
    return t, fps


def latent(value, name: str = "av_latent") -> None:
    """An ``AVLatent``-like object: video [B, C, F, h, w], audio [B, L, C], finite values and timing."""
    for part, dims in (("video", 5), ("audio", 3)):
        t = getattr(value, part, None)
        if not isinstance(t, torch.Tensor) or t.dim() != dims or t.numel() == 0:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise InputError(f"{name}.{part}: expected a non-empty {dims}-D tensor, got {got}; pass the "
                             "latent returned by sample()")
        finite(t, f"{name}.{part}", "this latent cannot be decoded; sample it again (check the inputs "
                                    "and guidance scales that produced it)")
    for attr, unit in (("fps", "frames per second"), ("seconds", "seconds")):
        v = getattr(value, attr, None)
        if not _is_real(v) or not math.isfinite(float(v)) or float(v) <= 0:
            raise InputError(f"{name}.{attr}={_show(v)}: must be a positive number of {unit}; pass the "
                             "latent returned by sample()")
    sr = getattr(value, "sample_rate", None)
    if not _is_real(sr) or not math.isfinite(float(sr)) or float(sr) <= 0:
        raise InputError(f"{name}.sample_rate={_show(sr)}: must be a positive number of Hz; pass the "
                         "latent returned by sample()")


def conditioning(value, name: str = "cond") -> None:
    """Text conditioning from ``encode_text``: tensors present and finite."""
    for part in ("video_context", "audio_context", "ref_audio"):
        t = getattr(value, part, None)
        if t is None and part == "ref_audio":
            continue
        if not isinstance(t, torch.Tensor):
            raise InputError(f"{name}.{part}: expected a tensor, got {type(t).__name__}; pass what "
                             "encode_text() returned")
        finite(t, f"{name}.{part}", "encode the text again with encode_text()")


def text(value, name: str) -> str:
    if not isinstance(value, str):
        raise InputError(f"{name} must be a string, got {type(value).__name__}")
    return value


# ------------------------------------------------------------------ files


_SYSTEM_TREES = ("/proc", "/sys", "/dev")


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def is_system_path(path) -> bool:
    """Under /proc, /sys or /dev (not /dev/shm, an ordinary tmpfs folder), after resolving links."""
    real = os.path.realpath(os.fspath(path))
    return any(_under(real, root) for root in _SYSTEM_TREES) and not _under(real, "/dev/shm")


def output_path(path, name: str = "output") -> str:
    """A path a result may be written to; checked before any compute.

    The parent folder must exist and be writable; the target must be absent or
    a regular file (never a folder, device, FIFO, socket, or anything under
    /proc, /sys or /dev). A symlink is followed: its target must pass the same
    test. Returns the real path to write to.
    """
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise InputError(f"{name}: expected an output file path, got {_show(path)}")
    given = os.fspath(path)
    real = os.path.realpath(given)
    shown = given if real == os.path.abspath(given) else f"{given} (-> {real})"
    for root in _SYSTEM_TREES:
        if _under(real, root) and not _under(real, "/dev/shm"):  # /dev/shm: an ordinary tmpfs folder
            raise InputError(f"{name} {shown}: refusing to write under {root}; give a file path in a "
                             "normal folder, e.g. out/clip.mp4")
    try:
        st = os.stat(real)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise InputError(f"{name} {shown}: cannot be checked ({e.strerror}); give another path") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{name} {shown} is a folder; give a file path inside it, e.g. "
                             f"{os.path.join(given, 'clip.mp4')}")
        if not stat.S_ISREG(st.st_mode):
            kind = ("a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else
                    "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else
                    "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
            raise InputError(f"{name} {shown} is {kind}; only a regular file is ever replaced. Give a "
                             "normal file path, e.g. clip.mp4")
    parent = os.path.dirname(real) or "."
    if not os.path.isdir(parent):
        raise InputError(f"{name} {given}: folder {os.path.dirname(given) or '.'} does not exist; create it "
                         "first or give a path in an existing folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{name} {given}: folder {os.path.dirname(given) or '.'} is not writable; give a "
                         "path in a folder you can write to")
    if st is not None and not os.access(real, os.W_OK):
        raise InputError(f"{name} {given}: the existing file is read-only; remove it or give another path")
    return real
