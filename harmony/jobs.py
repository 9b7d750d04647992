"""What a generation job is: its name, what it holds clean, and how long a clip may be.

The one home of the job names (T2AV / I2AV / A2V / V2A) and of the clip-length
limits; the pipeline, the CLI, the evaluation and the nodes import them.

Jobs are expressed by which latents are clean (held at ``sigma = 0``): A2V
holds the audio, V2A the video, I2AV the first latent frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

JOBS = ("T2AV", "I2AV", "A2V", "V2A")

MIN_SECONDS = 1.0
"""Shortest clip (and shortest driving media) any model generates."""
DEFAULT_SECONDS = 3.0
"""Clip length when none is asked for and no driving media sets it."""
DEFAULT_MAX_SECONDS = 6.0
"""Longest clip of a model whose file does not record ``meta["max_seconds"]``."""


def job_name(driving_audio: bool, driving_video: bool, first_frame: bool) -> str:
    """The job's name from what is given; both driving media give ``"A2V+V2A"`` (not a job)."""
    if driving_audio and driving_video:
        return "A2V+V2A"
    if driving_audio:
        return "A2V"
    if driving_video:
        return "V2A"
    return "I2AV" if first_frame else "T2AV"


TUNED_KEYS = ("sv", "sa", "shift", "st", "resync")
"""The sampling settings a model file may record as tuned for it (guidance scales, schedule shift,
the timing anchor's scale, the resync pass's share of the schedule)."""


def tuned_settings(cfg_or_meta, job: Optional[str] = None) -> dict:
    """What a model file records as tuned for sampling it: its config's ``meta["sampling"]``,
    ``{"sv": .., "shift": .., "jobs": {"A2V": {"shift": ..}}}`` (a config or its ``meta`` dict may
    be given), ``job``'s own entries over the file-wide ones. Only the recorded keys: each
    setting's reader (guidance.default_scales / default_timing, sampling.default_shift) fills in the
    paper's value.
    Each job balances following its input against moving on its own differently, so the tiny
    model's settings are tuned per job (scripts/tune_guidance.py, on tuning seeds)."""
    meta = cfg_or_meta if isinstance(cfg_or_meta, dict) else (getattr(cfg_or_meta, "meta", None) or {})
    recorded = meta.get("sampling") or {}
    out = {k: float(recorded[k]) for k in TUNED_KEYS if k in recorded}
    own = (recorded.get("jobs") or {}).get(job) or {} if job else {}
    out.update({k: float(v) for k, v in own.items() if k in TUNED_KEYS})
    return out


def max_seconds(cfg_or_meta) -> float:
    """Longest clip a model supports: its config's ``meta["max_seconds"]`` (a config or its
    ``meta`` dict may be given), else ``DEFAULT_MAX_SECONDS``."""
    meta = cfg_or_meta if isinstance(cfg_or_meta, dict) else getattr(cfg_or_meta, "meta", None)
    return float((meta or {}).get("max_seconds", DEFAULT_MAX_SECONDS))


def largest_max_seconds() -> float:
    """The largest clip-length limit of any named config (a widget's upper bound before a
    model is loaded; the loaded model's own limit is checked at run time)."""
    from .config import CONFIGS, get_config

    return max(max_seconds(get_config(name)) for name in CONFIGS)


@dataclass
class Job:
    """What is given. ``clean_audio``/``clean_video``: full latents held fixed
    (A2V / V2A); ``first_frame``: a clean first latent frame ``[B, Cv, 1, h, w]`` (I2AV)."""

    clean_audio: Optional[torch.Tensor] = None
    clean_video: Optional[torch.Tensor] = None
    first_frame: Optional[torch.Tensor] = None

    @property
    def name(self) -> str:
        if self.clean_audio is not None and self.clean_video is not None:
            return "reconstruct"
        return job_name(self.clean_audio is not None, self.clean_video is not None,
                        self.first_frame is not None)


@dataclass(frozen=True)
class ClipGeometry:
    """The latent shapes of one clip, from its length and the codecs: the one rule that the
    pipeline, the evaluation, the controls and the ablation share.

    ``n_frames``: video frames decoded (a codec with a temporal stride s > 1 codes one frame for
    the first latent frame and s for each further one, so ``n_frames = s * k + 1``: the Wan2.2 VAE
    at 24 fps gives 121 frames and 31 latent frames for 5 s); ``n_audio``: audio latents covering
    every sample (``ceil(seconds * latent_rate)``: 157 for 5 s at 31.25 / s).
    """

    seconds: float
    n_frames: int
    video: tuple  # (channels, latent frames, latent height, latent width)
    n_audio: int
    audio_channels: int

    def noise(self, seed: int):
        """``(noise_v [1, C, F, h, w], noise_a [1, L, C])`` drawn from ``seed``, video first: the
        initial state of a sampling run (a batch of clips draws once per seed)."""
        gen = torch.Generator().manual_seed(int(seed))
        noise_v = torch.randn(1, *self.video, generator=gen)
        noise_a = torch.randn(1, self.n_audio, self.audio_channels, generator=gen)
        return noise_v, noise_a


def clip_geometry(seconds: float, fps: float, frame_size, video_codec, audio_codec) -> ClipGeometry:
    """`ClipGeometry` of a ``seconds`` clip at ``fps``, ``frame_size`` (H, W) pixels, for the
    given codecs: their contract's ``temporal_stride``, ``spatial_stride``, ``latent_channels``
    and the audio's ``latent_rate`` (`harmony.codecs.contract`, whose time rules these are)."""
    from .codecs.contract import clip_frames, latents_for_frames

    seconds = float(seconds)
    t_stride = int(video_codec.temporal_stride)
    n_frames = clip_frames(seconds, fps, t_stride)
    f_lat = latents_for_frames(n_frames, t_stride)
    h, w = (int(x) for x in frame_size)
    s = int(video_codec.spatial_stride)
    n_audio = math.ceil(seconds * audio_codec.latent_rate - 1e-6)
    return ClipGeometry(seconds, n_frames, (int(video_codec.latent_channels), f_lat, h // s, w // s), n_audio,
                        int(audio_codec.latent_channels))
