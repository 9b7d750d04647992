"""What a generation job is: its name, what it holds clean, and how long a clip may be.

The one home of the job names (T2AV / I2AV / A2V / V2A) and of the clip-length
limits; the pipeline, the CLI, the evaluation and the nodes import them.

Jobs are expressed by which latents are clean (held at ``sigma = 0``): A2V
holds the audio, V2A the video, I2AV the first latent frame.
"""
from __future__ import annotations

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
