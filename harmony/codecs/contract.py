"""The codec contract: what the pipeline may ask of a video or an audio codec, and the geometry of
the real-scale codecs.

A video codec maps frames ``[B, T, H, W, 3]`` in 0..1 <-> a latent ``[B, C, F, H/s, W/s]``; an audio
codec maps a mono wave ``[B, T]`` <-> a latent ``[B, L, C]``. The pipeline, the clip geometry
(:func:`harmony.jobs.clip_geometry`), the evaluation, the stack and the nodes read a codec's
geometry from the properties below, never from literals; a codec is anything with them (a module,
a lazy loader, a core-VAE adapter, a geometry without weights): ``isinstance(c, VideoCodec)``.

**Time.** A video codec with temporal stride ``s`` codes the first frame alone and every further
``s`` frames as one latent frame: ``F`` latent frames <-> ``1 + s (F - 1)`` frames (the Wan2.2 VAE:
``s = 4``, clips of ``4k + 1`` frames; the toy codec: ``s = 1``, one latent frame per frame). An
audio codec has ``hop_length`` samples per latent, ``latent_rate = sample_rate / hop_length``
latents per second.

This module imports nothing from the rest of the package, so ``harmony.config`` can build the
5B model's meta from the same facts (``geometry_meta``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol, runtime_checkable


@runtime_checkable
class VideoCodec(Protocol):
    """Frames <-> video latents. ``frame_size`` (H, W): the size the clip is generated at."""

    @property
    def fps(self) -> float: ...

    @property
    def temporal_stride(self) -> int: ...

    @property
    def spatial_stride(self) -> int: ...

    @property
    def latent_channels(self) -> int: ...

    @property
    def frame_size(self) -> tuple: ...

    def latents_for_frames(self, num_frames: int) -> int: ...

    def frames_for_latents(self, num_latents: int) -> int: ...

    def encode(self, frames):
        """``frames [B, T, H, W, 3]`` in 0..1 -> latent ``[B, C, latents_for_frames(T), H/s, W/s]``."""

    def decode(self, latent):
        """latent ``[B, C, F, h, w]`` -> ``frames [B, frames_for_latents(F), h*s, w*s, 3]`` in 0..1."""


@runtime_checkable
class AudioCodec(Protocol):
    """Mono wave <-> audio latents (sequence-major)."""

    @property
    def sample_rate(self) -> int: ...

    @property
    def hop_length(self) -> int: ...

    @property
    def latent_rate(self) -> float: ...

    @property
    def latent_channels(self) -> int: ...

    def num_latents(self, num_samples: int) -> int: ...

    def encode(self, wave):
        """``wave [B, T]`` at ``sample_rate`` -> latent ``[B, num_latents(T), C]``."""

    def decode(self, latent, length: Optional[int] = None):
        """latent ``[B, L, C]`` -> ``wave [B, L * hop_length]`` (cut or padded to ``length``)."""


# --------------------------------------------------------------------------- the time rules

def latents_for_frames(num_frames: int, temporal_stride: int) -> int:
    """Latent frames coding ``num_frames`` frames: ``1 + (T - 1) // s``."""
    return 1 + (int(num_frames) - 1) // int(temporal_stride)


def frames_for_latents(num_latents: int, temporal_stride: int) -> int:
    """Frames decoded from ``num_latents`` latent frames: ``1 + s (F - 1)``."""
    return 1 + int(temporal_stride) * (int(num_latents) - 1)


def clip_frames(seconds: float, fps: float, temporal_stride: int) -> int:
    """Frames of a ``seconds`` clip: ``round(seconds * fps)``, and for a codec that codes the first
    frame alone (``s > 1``) ``s * (n // s) + 1`` (the Wan2.2 VAE at 24 fps: 121 frames for 5 s)."""
    n = int(round(float(seconds) * float(fps)))
    s = int(temporal_stride)
    return s * (n // s) + 1 if s > 1 else n


def num_latents(num_samples: int, hop_length: int) -> int:
    """Audio latents covering ``num_samples`` samples: ``ceil(T / hop)``, at least 1."""
    return max(1, -(-int(num_samples) // int(hop_length)))


class FrameRule:
    """``latents_for_frames`` / ``frames_for_latents`` of a video codec, from its ``temporal_stride``."""

    def latents_for_frames(self, num_frames: int) -> int:
        return latents_for_frames(num_frames, self.temporal_stride)

    def frames_for_latents(self, num_latents: int) -> int:
        return frames_for_latents(num_latents, self.temporal_stride)


class HopRule:
    """``num_latents`` of an audio codec, from its ``hop_length``."""

    def num_latents(self, num_samples: int) -> int:
        return num_latents(num_samples, self.hop_length)


# --------------------------------------------------------------------------- real-scale geometry

@dataclass(frozen=True)
class VideoGeometry:
    fps: float
    temporal_stride: int
    spatial_stride: int
    latent_channels: int
    frame_size: tuple  # (H, W) generated when none is asked for


@dataclass(frozen=True)
class AudioGeometry:
    sample_rate: int
    hop_length: int
    latent_channels: int

    @property
    def latent_rate(self) -> float:
        return self.sample_rate / self.hop_length


WAN22_VAE = VideoGeometry(fps=24, temporal_stride=4, spatial_stride=16, latent_channels=48, frame_size=(704, 704))
"""The Wan2.2 VAE as Wan2.2-TI2V-5B and Ovi use it: 24 fps, 4x time, 16x16 space, 48 channels. The
default frame, 704x704, is the multiple of 32 (stride 16 x the DiT's 2x2 patch) nearest Ovi's 720x720
area; any multiple of ``size_multiple`` works (e.g. Wan2.2's 704x1280)."""

MMAUDIO_16K = AudioGeometry(sample_rate=16000, hop_length=512, latent_channels=20)
"""MMAudio's 16 kHz codec: 512 samples per latent (two 256-sample mel hops), 31.25 latents/s."""


def size_multiple(video_codec, patch_size) -> int:
    """Frame sizes a model can generate are multiples of this: the codec's spatial stride times the
    DiT's spatial patch (``patch_size`` of the video tower, e.g. ``(1, 2, 2)``)."""
    return int(video_codec.spatial_stride) * int(patch_size[-1])


# --------------------------------------------------------------------------- model-file meta

META_KEYS = ("video_fps", "video_temporal_stride", "video_spatial_stride", "audio_sample_rate",
             "audio_latent_rate")
"""The codec geometry a model file records in its config's ``meta``."""

OLD_META_KEYS = {"video_fps": "fps", "audio_sample_rate": "sample_rate"}
"""Names files written before the vocabulary was one (tiny models trained then) used instead."""


def geometry_meta(video, audio) -> dict:
    """The ``meta`` entries recording ``video`` / ``audio`` codecs' geometry (codecs or geometries)."""
    return {"video_fps": video.fps, "video_temporal_stride": int(video.temporal_stride),
            "video_spatial_stride": int(video.spatial_stride), "audio_sample_rate": int(audio.sample_rate),
            "audio_latent_rate": float(audio.latent_rate)}


def meta_value(meta: Optional[dict], key: str, default=None):
    """``meta[key]`` for a key of :data:`META_KEYS`, read under its old name in older files."""
    meta = meta or {}
    if key in meta:
        return meta[key]
    old = OLD_META_KEYS.get(key)
    return meta.get(old, default) if old else default
