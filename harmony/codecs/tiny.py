"""The bundled tiny codec pair file: ``harmony/assets/tiny_codecs.safetensors``.

One safetensors file holds both toy codecs (``video.*`` and ``audio.*`` state-dict
entries, plus the video codec's size in the ``video`` metadata field). Never unpickled.
"""
from __future__ import annotations

import json
import os

import numpy as np
import torch

from ..weightfile import read_safetensors, save_safetensors
from .toy_audio import AudioCodec
from .toy_video import VideoCodec

DEFAULT_CODECS_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "assets", "tiny_codecs.safetensors")


def save_codecs(video: VideoCodec, audio: AudioCodec, path: str, metadata: dict | None = None) -> None:
    """Write both codecs to one safetensors file (``video.*``, ``audio.*``), atomically."""

    state = {f"video.{k}": v.detach().float().contiguous().cpu() for k, v in video.state_dict().items()}
    state.update({f"audio.{k}": v.detach().float().contiguous().cpu() for k, v in audio.state_dict().items()})
    meta = {"format": "harmony-tiny-codecs/1",
            "video": json.dumps({"latent_channels": video.latent_channels, "width": video.width})}
    meta.update({k: str(v) for k, v in (metadata or {}).items()})
    save_safetensors(state, path, meta)


def load_codecs(path: str | None = None, device="cpu") -> tuple[VideoCodec, AudioCodec]:
    """Load ``(VideoCodec, AudioCodec)`` from a safetensors file (default: the bundled one)."""
    path = DEFAULT_CODECS_PATH if path is None else path
    tensors, meta = read_safetensors(path, "codec weights")
    cfg = json.loads(meta.get("video", "{}"))
    video = VideoCodec(**cfg)
    audio = AudioCodec()
    for name, module in (("video", video), ("audio", audio)):
        sub = {k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(name + ".")}
        missing, unexpected = module.load_state_dict(sub, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"codec weights {path!r}: {name} codec keys do not match "
                f"(missing {sorted(missing)[:10]}, unexpected {sorted(unexpected)[:10]}); "
                "the file was not written by harmony.codecs.save_codecs."
            )
    return video.to(device).eval(), audio.to(device).eval()


COMPATIBLE_LATENT_SHIFT = 0.1
"""A video codec may stand in for the one a latent model was trained with only if it encodes the
world's held-out frames to the same normalised latents within this RMS distance (in latent standard
deviations; the DiT's own sampling error is larger), with the same audio codec. Such a codec can
still code images from outside the world differently: ``scripts/decoder_finetune.py
--encoder-anchor`` trains one (lab notebook N1)."""


def latent_shift(reference: str, candidate: str, scenes: int = 4) -> float:
    """RMS distance, in latent standard deviations, between the video latents of two codec files
    for held-out world frames (``scenes`` scenes per split, 2 s each). Raises ``ValueError`` if
    the audio codecs or the latent normalisation differ: those are not a stand-in."""
    from ..world import render, sample_scene
    from ..world.scene import SPLITS, heldout_seeds

    (v0, a0), (v1, a1) = load_codecs(reference), load_codecs(candidate)
    fixed = {"audio codec": (a0.state_dict(), a1.state_dict()),
             "video latent statistics": ({"mean": v0.latent_mean, "std": v0.latent_std},
                                         {"mean": v1.latent_mean, "std": v1.latent_std})}
    for what, (s0, s1) in fixed.items():
        if s0.keys() != s1.keys() or any(not torch.equal(v, s1[k]) for k, v in s0.items()):
            raise ValueError(f"codec file {candidate!r}: its {what} differs from {reference!r}'s, so a model "
                             "trained with one cannot use the other; only the video encoder and decoder may change")
    frames = [render(sample_scene(s, split, 2.0)).frames for split in SPLITS for s in heldout_seeds(split, scenes)]
    x = torch.from_numpy(np.stack(frames)).float()
    with torch.no_grad():
        z0, z1 = v0.encode(x), v1.encode(x)
    return float(((z1 - z0) ** 2).mean().sqrt())
