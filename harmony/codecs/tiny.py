"""The bundled tiny codec pair file: ``harmony/assets/tiny_codecs.safetensors``.

One safetensors file holds both toy codecs (``video.*`` and ``audio.*`` state-dict
entries, plus the video codec's size in the ``video`` metadata field). Never unpickled.
"""
from __future__ import annotations

import json
import os

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
