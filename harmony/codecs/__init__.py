"""Video and audio codecs: the pixel/sample <-> latent maps the towers diffuse in.

One file per codec:

``toy_video.VideoCodec``  the tiny learned per-frame video autoencoder:
                frames ``[B, F, H, W, 3]`` (0..1) <-> latent ``[B, 16, F, H/16, W/16]``
                (spatial stride 16, temporal stride 1).
``toy_audio.AudioCodec``  the tiny analytic audio codec: wave ``[B, T]`` (16 kHz) <->
                latent ``[B, ceil(T/512), 20]`` (31.25 latents/s).
``wan_vae.WanVAE``  the Wan2.2 VAE (48 channels, 4x temporal, 16x16 spatial) with the
                same interface; ``load_wan_vae`` reads ``Wan2.2_VAE.pth`` /
                ``wan2.2_vae.safetensors`` by key.
``mmaudio.MMAudioCodec``  MMAudio's 16 kHz audio codec (``mel`` front end, ``mmaudio_vae``
                mel VAE, ``bigvgan`` vocoder): wave ``[B, T]`` <-> latent ``[B, ceil(T/512), 20]``.

``tiny`` reads / writes the bundled toy pair file
(``harmony/assets/tiny_codecs.safetensors``); ``train_toy`` / ``eval_toy`` train and
evaluate the toy codecs::

    python -m harmony.codecs train --out harmony/assets/tiny_codecs.safetensors
    python -m harmony.codecs eval  --weights harmony/assets/tiny_codecs.safetensors

``contract`` declares what every codec carries (``VideoCodecContract`` / ``AudioCodecContract``)
and the real-scale geometry (``WAN22_VAE``, ``MMAUDIO_16K``).

The toy codecs normalise latents per channel with stored statistics
(``latent_mean``, ``latent_std``) fitted on world clips. See docs/codecs.md.
"""
from __future__ import annotations

import importlib

from .contract import AudioCodec as AudioCodecContract  # noqa: F401 (the contract; imports nothing)
from .contract import VideoCodec as VideoCodecContract  # noqa: F401

# Each name is imported from its module on first use, so that ``import harmony.codecs`` (or one
# codec module, or the contract) does not pull in the toy training and evaluation tooling. The toy
# world's rates stay in its modules (``toy_video.FPS``, ``toy_audio.SAMPLE_RATE``): a codec's rates
# are read from the codec.
_HOME = {
    "audio_metrics": "eval_toy", "evaluate_codecs": "eval_toy", "log_mel": "eval_toy",
    "sync_change": "eval_toy", "video_psnr": "eval_toy",
    "DEFAULT_CODECS_PATH": "tiny", "load_codecs": "tiny", "save_codecs": "tiny",
    "AudioCodec": "toy_audio", "band_filterbank": "toy_audio",
    "ResBlock": "toy_video", "VideoCodec": "toy_video",
    "_train_clips": "train_toy", "fit_audio_stats": "train_toy", "synthetic_clip": "train_toy",
    "train_video_codec": "train_toy",
    "WanVAE": "wan_vae", "load_wan_vae": "wan_vae",
    "MMAudioCodec": "mmaudio",
}


def __getattr__(name: str):
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_CODECS_PATH", "AudioCodec", "ResBlock", "VideoCodec",
    "audio_metrics", "band_filterbank", "evaluate_codecs", "fit_audio_stats", "load_codecs",
    "log_mel", "save_codecs", "sync_change", "synthetic_clip", "train_video_codec", "video_psnr",
    "WanVAE", "load_wan_vae", "MMAudioCodec", "AudioCodecContract", "VideoCodecContract",
]
