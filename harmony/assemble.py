"""Building a HarmonyPipeline: the entrances to the one builder (:func:`harmony.builder.build`).

The bundled model (``HarmonyPipeline.from_pretrained``, which calls ``build`` with its own class), the
CLI's real-scale stack (:func:`load_stack`) and the ComfyUI nodes (``nodes/core_inputs.py``, which hand
:func:`build_pipeline` the text encoder and codecs ComfyUI loaded) all go through it. It decides in one
place: the device (CUDA when there is
one), the compute dtype (:func:`compute_dtype`), where the weights are kept and how they reach the
device (:data:`OFFLOAD_MODES`), the attention backend, the clip-length limit and the default negative
prompts of text CFG (:func:`default_negatives`, both from the model file), and whether the parts pair
with the model (:func:`check_pairing`: the text encoder's width against each tower's text width, the
codecs' latent channels against its input channels), from the model file's header, before any of its
weights is read. :func:`rebind` swaps parts of a built pipeline under the same checks (the nodes bind
the core CLIP / VAEs wired to them this way).

The real-scale stack: a dual-tower model file + umT5-XXL + Wan2.2 VAE + MMAudio VAE + BigVGAN.

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

from . import builder
from .builder import (OFFLOAD_MODES, Names, PairingError, Parts, check_offload, check_pairing,  # noqa: F401
                      compute_dtype, default_negatives, place, resolve_device, store_device)
from .components import ComponentError, usual
from .framesize import check_size_fits, parse_size
from .lazy_codecs import LazyMMAudioCodec, LazyWanVAE
from .umt5_conditioner import UMT5Conditioner, UMT5File


def build_pipeline(model_path, parts, **kw):
    """A ``HarmonyPipeline`` over ``model_path`` and ``parts``: :func:`harmony.builder.build` (the
    checks and the loading, in order) with this package's pipeline class."""
    from .pipeline import HarmonyPipeline

    return builder.build(HarmonyPipeline, model_path, parts, **kw)


def rebind(pipe, text=None, video=None, audio=None, names: Optional[Names] = None):
    """``pipe`` with some of its parts replaced, paired with its model first (:func:`check_pairing`); a
    new pipeline sharing the loaded model (``pipe`` itself is not changed)."""
    new = Parts(text if text is not None else pipe.conditioner, video if video is not None else pipe.codecs.video,
                audio if audio is not None else pipe.codecs.audio)
    check_pairing(pipe.model.cfg, new, names)
    return pipe.with_parts(conditioner=new.text, video=new.video, audio=new.audio)


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
    from .jobs import MIN_SECONDS

    check_offload(offload)
    device = resolve_device(device)
    compute, store = compute_dtype(device), store_device(offload, device)
    size = parse_size(size, via="api")
    check_size_fits(size, MIN_SECONDS, device, via="api")
    text = UMT5Conditioner(UMT5File(paths["text_encoder"], paths["tokenizer"], dtype=compute, log=log),
                           caption_tags=caption_tags, log=log)
    vae = LazyWanVAE(paths["video_vae"], device=device, dtype=compute, store=store, frame_size=size, log=log)
    audio = LazyMMAudioCodec(paths["audio_vae"], paths["vocoder"], device=device, store=store, log=log)
    names = Names(model=f"the --model {paths['model']}", text=f"--text-encoder {paths['text_encoder']}",
                  video=f"--video-vae {paths['video_vae']}", audio=f"--audio-vae {paths['audio_vae']}",
                  fixes={"text": f"use {usual('text_encoder')}",
                         "video": "use the Wan2.2 VAE (Wan2.2_VAE.pth or wan2.2_vae.safetensors; the Wan2.1 VAE "
                                  "has 16)",
                         "audio": f"use {usual('audio_vae')}"})
    try:
        pipe = build_pipeline(paths["model"], Parts(text, vae, audio), dtype=dtype, offload=offload,
                              resident_blocks=resident_blocks, device=device, what="--model", names=names, log=log)
    except PairingError as e:
        raise ComponentError(str(e)) from None
    log(pipe.model.load_summary)
    text.text_len = pipe.model.cfg.video.text_len
    log(f"text encoder {os.path.basename(paths['text_encoder'])}: umT5 {text.encoder.config.num_layers} layers, "
        f"width {text.dim}, text_len {text.text_len} (read for each new prompt, freed after encoding)")
    log(f"frame {size[0]}x{size[1]} at {vae.fps} fps, audio {audio.sample_rate} Hz; codecs read when first "
        "needed (video encoder: a first frame, a driving video or SyncCFG's blank frame; decoders: at decode)")
    return pipe
