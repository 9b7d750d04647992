"""Socket types of the pack and conversions between ComfyUI values and harmony's.

ComfyUI types (see ComfyUI's ``comfy_types``):
- IMAGE: float tensor ``[frames, H, W, 3]`` in 0..1;
- AUDIO: ``{"waveform": [batch, channels, samples], "sample_rate": int}``;
- VIDEO: an object with ``get_components()`` -> ``.images``, ``.audio``, ``.frame_rate``.

Our own types carry harmony objects between our nodes only.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from typing import Optional

import torch

from .harmony_lib import jobs, pipeline, validate

HARMONY_MODEL = "HARMONY_MODEL"
"""A loaded ``harmony.pipeline.HarmonyPipeline``."""
HARMONY_CONDITIONING = "HARMONY_CONDITIONING"
"""A :class:`AVConditioning`."""
HARMONY_AV_LATENT = "HARMONY_AV_LATENT"
"""A ``harmony.pipeline.AVLatent``: the joint audio-video latent."""


class HarmonyInputError(ValueError):
    """A node input that cannot be used, with what was expected and what to do."""


@dataclass
class AVConditioning:
    """Everything the sampler is conditioned on; which fields are set picks the job.

    text: harmony ``Conditioning`` from the text node; first_frame ``[H, W, 3]``
    (I2AV); driving_audio ``(wave [C, T], sr)`` (A2V); driving_video
    ``(frames [F, H, W, 3], fps)`` (V2A); ref_voice ``(wave [C, T], sr)``;
    fit: how those frames meet the model's frame (crop, letterbox, stretch).
    """

    text: object
    prompt: str = ""
    first_frame: Optional[torch.Tensor] = None
    driving_audio: Optional[tuple] = None
    driving_video: Optional[tuple] = None
    ref_voice: Optional[tuple] = None
    fit: str = "crop"
    notes: list = field(default_factory=list)
    clip: object = None  # core CLIP the text was encoded with (the sampler's unconditional text)
    video_vae: object = None  # core VAE wired to the video node (Wan2.2)
    audio_vae: object = None  # core VAE wired to the audio node (MMAudio)

    def with_(self, **changes) -> "AVConditioning":
        """A copy with some fields replaced (node outputs are never mutated)."""
        return replace(self, notes=list(self.notes), **changes)

    @property
    def job(self) -> str:
        return jobs.job_name(self.driving_audio is not None, self.driving_video is not None,
                             self.first_frame is not None)


def check_type(value, expected_type: str, input_name: str, node: str):
    """Raise a clear error when a socket got something else than ``expected_type``."""
    ok = {
        HARMONY_MODEL: lambda v: hasattr(v, "sample") and hasattr(v, "decode"),
        HARMONY_CONDITIONING: lambda v: isinstance(v, AVConditioning),
        HARMONY_AV_LATENT: lambda v: isinstance(v, pipeline.AVLatent),
    }[expected_type]
    if not ok(value):
        raise HarmonyInputError(
            f"{node}: input '{input_name}' expects {expected_type}, got {type(value).__name__}. "
            f"Connect the matching output of a Harmony node.")
    return value


@contextlib.contextmanager
def node_checks(prefix: str = ""):
    """harmony.validate's InputError -> HarmonyInputError (``prefix``: e.g. the node's name)."""
    try:
        yield validate
    except validate.InputError as e:
        raise HarmonyInputError(f"{prefix}: {e}" if prefix else str(e)) from None


# ---------------------------------------------------------------- AUDIO

AUDIO_BATCH_HINT = ("connect one clip (e.g. one LoadAudio per file), or split the batch with an "
                    "audio-batch node and run one clip at a time")


def audio_to_wave(audio, input_name: str) -> tuple[torch.Tensor, int]:
    """ComfyUI AUDIO -> ``(wave [channels, samples] float32, sample_rate)``.

    A batch of more than one clip is refused (never silently cut to its first item), as are
    0 channels, no samples, a sample rate that is not positive, and NaN / inf samples."""
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise HarmonyInputError(
            f"input '{input_name}' expects AUDIO ({{'waveform': [batch, channels, samples], "
            f"'sample_rate': int}}), got {type(audio).__name__}. Connect e.g. LoadAudio.")
    wave = torch.as_tensor(audio["waveform"]).float()
    if wave.dim() == 2:
        wave = wave[None]
    if wave.dim() != 3 or wave.shape[-1] == 0:
        raise HarmonyInputError(
            f"input '{input_name}': AUDIO waveform must be [batch, channels, samples], "
            f"got shape {tuple(wave.shape)}.")
    with node_checks() as validate:
        wave, sample_rate = validate.wave(wave, audio["sample_rate"], f"input '{input_name}'", via="node",
                                          batch_hint=AUDIO_BATCH_HINT)
    return wave.cpu(), sample_rate


def wave_to_audio(wave: torch.Tensor, sample_rate: int) -> dict:
    """``wave [channels, samples]`` -> ComfyUI AUDIO (batch of one)."""
    wave = torch.as_tensor(wave).float().cpu()
    if wave.dim() == 1:
        wave = wave[None]
    return {"waveform": wave[None].contiguous(), "sample_rate": int(sample_rate)}


def audio_seconds(wave: torch.Tensor, sample_rate: int) -> float:
    return wave.shape[-1] / float(sample_rate)


# ---------------------------------------------------------------- IMAGE / VIDEO


def image_frames(images, input_name: str) -> torch.Tensor:
    """ComfyUI IMAGE -> frames ``[F, H, W, 3]`` float32 in 0..1 (alpha dropped)."""
    if not isinstance(images, torch.Tensor):
        raise HarmonyInputError(
            f"input '{input_name}' expects IMAGE (a tensor [frames, height, width, 3]), "
            f"got {type(images).__name__}.")
    frames = images.float()
    if frames.dim() == 3:
        frames = frames[None]
    if frames.dim() != 4 or frames.shape[-1] not in (3, 4) or frames.shape[0] == 0:
        raise HarmonyInputError(
            f"input '{input_name}': IMAGE must be [frames, height, width, 3], got shape "
            f"{tuple(images.shape)}.")
    with node_checks() as validate:
        frames, _ = validate.frames(frames, None, f"input '{input_name}'", via="node")
    return frames.clamp(0, 1).cpu()


def video_components(video, input_name: str):
    """Core VIDEO -> ``(frames [F, H, W, 3], fps, audio or None)``."""
    if not hasattr(video, "get_components"):
        raise HarmonyInputError(
            f"input '{input_name}' expects VIDEO (e.g. from LoadVideo or CreateVideo), "
            f"got {type(video).__name__}.")
    parts = video.get_components()
    frames = image_frames(parts.images, input_name)
    rate = parts.frame_rate
    try:
        fps = float(rate)
    except (TypeError, ValueError):
        fps = float("nan")
    if not fps > 0 or fps == float("inf"):
        raise HarmonyInputError(
            f"input '{input_name}': the VIDEO's frame_rate is {rate!r}; it must be a positive number of "
            "frames per second. Rebuild the VIDEO with a frame rate (e.g. CreateVideo with fps 24).")
    with node_checks() as validate:  # 1e-9 or 1e6 fps: the container lies; refused before any compute
        fps = validate.frame_rate(fps, f"input '{input_name}': the VIDEO's frame_rate", via="node",
                                  todo="re-encode the file at its real rate (e.g. ffmpeg -i in.mp4 -r 24 "
                                       "out.mp4), or rebuild the VIDEO with CreateVideo at its real fps "
                                       "(e.g. 24)")
    return frames, fps, getattr(parts, "audio", None)
