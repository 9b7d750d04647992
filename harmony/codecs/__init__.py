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

The toy codecs normalise latents per channel with stored statistics
(``latent_mean``, ``latent_std``) fitted on world clips. See docs/codecs.md.
"""
from __future__ import annotations

from .eval_toy import audio_metrics, evaluate_codecs, log_mel, sync_change, video_psnr
from .tiny import DEFAULT_CODECS_PATH, _load_state, load_codecs, save_codecs
from .toy_audio import SAMPLE_RATE, AudioCodec, band_filterbank
from .toy_video import FPS, ResBlock, VideoCodec
from .train_toy import _train_clips, fit_audio_stats, synthetic_clip, train_video_codec
from .wan_vae import WanVAE, load_wan_vae
from .mmaudio import MMAudioCodec

__all__ = [
    "DEFAULT_CODECS_PATH", "FPS", "SAMPLE_RATE", "AudioCodec", "ResBlock", "VideoCodec",
    "audio_metrics", "band_filterbank", "evaluate_codecs", "fit_audio_stats", "load_codecs",
    "log_mel", "save_codecs", "sync_change", "synthetic_clip", "train_video_codec", "video_psnr",
    "WanVAE", "load_wan_vae", "MMAudioCodec",
]
