"""Building a HarmonyPipeline. The real-scale stack: a dual-tower model file + umT5-XXL + Wan2.2 VAE + MMAudio VAE + BigVGAN.

``python -m harmony generate --model … --text-encoder … --video-vae … --audio-vae …
--vocoder …`` (or ``--weights DIR``, a folder holding them under their usual names,
e.g. Ovi's ``ckpts`` folder as its ``download_weights.py`` fills it) builds a
``HarmonyPipeline`` from these files; the rest of ``generate`` is unchanged.

Shapes follow the codecs: Wan2.2 VAE 16x16 pixels per latent, the first latent
frame one video frame and every further one four (``1 + 4 (F - 1)`` frames),
24 fps; MMAudio 16 kHz audio, 31.25 latents per second. The frame size is
``--size HxW`` (multiples of 32: the VAE's 16 times the DiT's 2x2 patch); the
default 704x704 is the multiple of 32 nearest Ovi's 720x720 area.

What is in memory, and when: every component file is checked from its header first (names,
shapes, pairing with the model), then only the DiT is loaded. umT5-XXL (about 11 GB) is read
for each prompt not encoded before and freed right after encoding; its embeddings are kept
(the empty prompt, CFG's unconditional side, is encoded with every read). The codecs' parts are
read on first use and kept: the Wan2.2 VAE encoder for a first frame, a driving video or
SyncCFG's blank frame (T2AV); the MMAudio VAE for driving audio, a reference voice or SyncCFG's
silence anchor; the Wan2.2 VAE decoder and BigVGAN at decode. With ``--offload`` they are kept
on the CPU and moved to the device only while they run.

SyncCFG anchors (``HarmonyPipeline.anchors``): silent audio = the middle token of MMAudio's
latent of 10 s of digital silence, repeated (the latent of silence without its edge tokens,
``MMAudioCodec.silence_token``); static video = one latent frame held over the clip: the given
first frame or the driving video's first frame, each encoded alone by the Wan2.2 VAE, else the
previous step's estimate, and before any estimate a mid-grey frame encoded alone (the blank
frame, made only for T2AV).

Text: both towers get the umT5 embedding of one string built as Ovi does
(:func:`harmony.umt5.ovi_prompt`): the scene, the transcript in ``<S>…<E>``,
the audio caption as ``Audio: …`` (``--caption-tags audcap`` for Ovi's
720x720_5s checkpoint, trained with ``<AUDCAP>…<ENDAUDCAP>``).
"""
from __future__ import annotations

import os
from typing import Callable, Optional

import torch

from .components import ComponentError, usual
from .framesize import check_size_fits, parse_size
from .lazy_codecs import LazyMMAudioCodec, LazyWanVAE
from .umt5_conditioner import UMT5Conditioner


def load_stack(paths: dict, dtype: str = "auto", offload: str = "none", resident_blocks: Optional[int] = None,
               device=None, size=None, caption_tags: str = "audio", log: Callable[[str], None] = print):
    """A ``HarmonyPipeline`` over the component files (see :func:`resolve`).

    Every component file is checked first from its header (names, shapes, pairing with the model:
    the text encoder's width against the DiT's text dim, the VAEs' channels against its ``in_dim``),
    and ``size`` against the device's memory (:func:`check_size_fits`, for the shortest clip); then
    only the model is loaded. The text encoder is read for each new prompt and freed after
    encoding (:class:`UMT5Conditioner`); the codecs' parts are read when first needed and kept
    (:class:`LazyWanVAE`, :class:`LazyMMAudioCodec`); with an offload mode they are kept on the CPU
    and moved to the device only while they run."""
    from .checkpoint import load_model, read_config
    from .jobs import MIN_SECONDS
    from .pipeline import Codecs, HarmonyPipeline, _max_seconds

    if offload not in ("none", "block_swap", "cpu"):
        raise ValueError(f"offload {offload!r} is unknown; use 'none', 'block_swap' or 'cpu'")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    compute = torch.float32 if device.type == "cpu" else torch.bfloat16
    size = parse_size(size, via="api")
    check_size_fits(size, MIN_SECONDS, device, via="api")
    store_device = torch.device("cpu") if offload in ("cpu", "block_swap") else device
    text = UMT5Conditioner(paths["text_encoder"], paths["tokenizer"], dtype=compute, caption_tags=caption_tags,
                           log=log)
    vae = LazyWanVAE(paths["video_vae"], device=device, dtype=compute, store=store_device, frame_size=size, log=log)
    audio = LazyMMAudioCodec(paths["audio_vae"], paths["vocoder"], device=device, store=store_device, log=log)
    cfg = read_config(paths["model"], what="--model")  # the model's header: pairing before any weight is read
    for tower in (cfg.video, cfg.audio):
        if tower.text_dim != text.dim:
            raise ComponentError(f"--text-encoder {paths['text_encoder']} gives {text.dim}-wide embeddings but the "
                                 f"--model {paths['model']} {tower.modality} tower reads {tower.text_dim}: they are "
                                 f"not a pair; use {usual('text_encoder')}")
    if vae.latent_channels != cfg.video.in_dim:
        raise ComponentError(f"--video-vae {paths['video_vae']} has {vae.latent_channels} latent channels, the "
                             f"--model {paths['model']} video tower reads {cfg.video.in_dim}: use the Wan2.2 VAE "
                             "(Wan2.2_VAE.pth or wan2.2_vae.safetensors; the Wan2.1 VAE has 16)")
    if audio.latent_channels != cfg.audio.in_dim:
        raise ComponentError(f"--audio-vae {paths['audio_vae']} gives {audio.latent_channels} latent channels, the "
                             f"--model {paths['model']} audio tower reads {cfg.audio.in_dim}: use "
                             f"{usual('audio_vae')}")
    model = load_model(paths["model"], dtype=dtype, device=store_device, what="--model")
    log(model.load_summary)
    cfg = model.cfg
    text.text_len = cfg.video.text_len
    log(f"text encoder {os.path.basename(paths['text_encoder'])}: umT5 {text.config.num_layers} layers, "
        f"width {text.dim}, text_len {text.text_len} (read for each new prompt, freed after encoding)")
    off = None
    if offload == "block_swap":
        from .offload import BlockSwap
        off = BlockSwap(model, resident_blocks=resident_blocks or 0, device=device)
    elif offload == "cpu":
        from .offload import cpu_offload
        off = cpu_offload(model, device)
    else:
        model.to(device)
    log(f"frame {size[0]}x{size[1]} at {vae.fps} fps, audio {audio.sample_rate} Hz; codecs read when first "
        "needed (video encoder: a first frame, a driving video or SyncCFG's blank frame; decoders: at decode)")
    return HarmonyPipeline(model, text, Codecs(vae, audio), device, compute, off,
                           _max_seconds(getattr(cfg, "meta", None)), log)
