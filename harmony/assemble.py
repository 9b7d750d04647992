"""Building a HarmonyPipeline: the one builder behind every entrance.

:func:`build_pipeline` is used by the bundled model (``HarmonyPipeline.from_pretrained``), the CLI's
real-scale stack (:func:`load_stack`) and the ComfyUI nodes (``nodes/core_inputs.py``, which hand it
the text encoder and codecs ComfyUI loaded). It decides in one place: the device (CUDA when there is
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
from dataclasses import dataclass, field
from typing import Callable, Optional, Union

import torch

from .components import ComponentError, usual
from .framesize import check_size_fits, parse_size
from .lazy_codecs import LazyMMAudioCodec, LazyWanVAE
from .umt5 import OVI_AUDIO_NEGATIVE, OVI_VIDEO_NEGATIVE
from .umt5_conditioner import UMT5Conditioner, UMT5File

OFFLOAD_MODES = ("none", "block_swap", "cpu")
"""none: the model on the device; block_swap: ``resident_blocks`` layers on the device, the rest streamed
in from the CPU; cpu: every weight in RAM, the whole model moved in for each run."""


class PairingError(ValueError):
    """A part (text encoder, codec) that does not fit the model, naming both and what to use."""


@dataclass
class Parts:
    """What a model needs around it: the text conditioner and the two codecs. ``text`` is called as
    ``text(prompts, captions, transcripts, refs, device=) -> Conditioning`` (its ``dim``, when it has
    one, is the width of its embeddings); the codecs follow the pipeline's codec interface (their
    ``latent_channels`` are paired with the towers' input channels)."""

    text: object
    video: object
    audio: object


@dataclass
class Names:
    """How pairing errors name the inputs: the CLI's flags and files, or a node's inputs; ``fixes``:
    part ("text", "video", "audio") -> what to do."""

    model: str = "the model's"
    text: str = "the text encoder"
    video: str = "the video codec"
    audio: str = "the audio codec"
    fixes: dict = field(default_factory=dict)


def resolve_device(device=None) -> torch.device:
    """``device``, or CUDA when there is one, else the CPU."""
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def compute_dtype(device) -> torch.dtype:
    """What the model computes in: fp32 on the CPU, bf16 on a GPU (weights may be stored narrower)."""
    return torch.float32 if torch.device(device).type == "cpu" else torch.bfloat16


def check_offload(offload: str) -> str:
    if offload not in OFFLOAD_MODES:
        raise ValueError(f"offload {offload!r} is unknown; use 'none', 'block_swap' or 'cpu'")
    return offload


def store_device(offload: str, device) -> torch.device:
    """Where the weights are kept: the CPU with an offload mode, else the device."""
    return torch.device("cpu") if check_offload(offload) != "none" else torch.device(device)


def place(model, offload: str, resident_blocks: Optional[int], device):
    """The model on the device (``offload="none"``), or the offload that moves it there while it runs."""
    if check_offload(offload) == "block_swap":
        from .offload import BlockSwap
        return BlockSwap(model, resident_blocks=resident_blocks or 0, device=device)
    if offload == "cpu":
        from .offload import cpu_offload
        return cpu_offload(model, device)
    model.to(device)
    return None


def default_negatives(cfg) -> tuple:
    """The texts text CFG contrasts with, ``(video tower's, audio tower's)``: Ovi's negative prompts for a
    model of Ovi's family (its config reads umT5-XXL text: Ovi's fusion files and the Harmony 5b files
    made from them), as Ovi's inference uses them (one per tower); ``("", "")`` otherwise (the tiny model
    was trained with the empty text as its unconditional side)."""
    if ((getattr(cfg, "meta", None) or {}).get("text_encoder")) == "umt5-xxl":
        return OVI_VIDEO_NEGATIVE, OVI_AUDIO_NEGATIVE
    return "", ""


def check_pairing(cfg, parts: Parts, names: Optional[Names] = None) -> None:
    """Each part against the model's config: the text encoder's width (when it has ``dim``) against both
    towers' text width, each codec's ``latent_channels`` against its tower's input channels. Raises
    :class:`PairingError` naming both sides; runs on headers and descriptions, before any compute."""
    n = names or Names()
    dim = getattr(parts.text, "dim", None)
    if dim is not None:
        for tower in (cfg.video, cfg.audio):
            if int(tower.text_dim) != int(dim):
                raise PairingError(f"{n.text} gives {dim}-wide embeddings but {n.model} {tower.modality} tower "
                                   f"reads {tower.text_dim}: they are not a pair; "
                                   + n.fixes.get("text", "use the text encoder the model was trained with"))
    for key, verb, tower in (("video", "has", cfg.video), ("audio", "gives", cfg.audio)):
        channels = getattr(getattr(parts, key), "latent_channels", None)
        if channels is not None and int(channels) != int(tower.in_dim):
            raise PairingError(f"{getattr(n, key)} {verb} {channels} latent channels, {n.model} {key} tower reads "
                               f"{tower.in_dim}: " + n.fixes.get(key, f"use the {key} codec the model was trained "
                                                                    "with"))


def build_pipeline(model_path, parts: Union[Parts, Callable], dtype: str = "auto", offload: str = "none",
                   resident_blocks: Optional[int] = None, attention: str = "sdpa", device=None,
                   what: str = "checkpoint", names: Optional[Names] = None,
                   log: Optional[Callable[[str], None]] = None):
    """A ``HarmonyPipeline`` over the model file ``model_path`` (a path, or its safetensors header
    already read: :func:`harmony.weightfile.read_header`) and ``parts``.

    ``parts``: a :class:`Parts`, or ``parts(cfg, device) -> Parts`` when they depend on the model's config
    (read from the file's header first). In order: the offload mode and the attention backend are
    checked, the config is read (header only), the parts are paired with it (:func:`check_pairing`),
    then the model is loaded onto its store device and placed (:func:`place`). ``what`` names the model
    file in errors (e.g. "--model"); ``names`` the parts."""
    from . import attention as attn
    from .checkpoint import load_model, read_config
    from .jobs import max_seconds
    from .pipeline import Codecs, HarmonyPipeline
    from .weightfile import read_header

    check_offload(offload)
    attn.check_backend(attention)  # a bad name fails before anything is read
    device = resolve_device(device)
    header = read_header(model_path, what)  # parsed once: the config, then the loading read it
    cfg = read_config(header, what=what)  # another family or no config fails here
    if callable(parts):
        parts = parts(cfg, device)
    check_pairing(cfg, parts, names)
    model = load_model(header, dtype=dtype, device=store_device(offload, device), what=what)
    model.set_attention_backend(attention)  # this model's backend, not a global
    off = place(model, offload, resident_blocks, device)
    kw = {} if log is None else {"log": log}
    return HarmonyPipeline(model, parts.text, Codecs(parts.video, parts.audio), device, compute_dtype(device), off,
                           max_seconds(model.cfg), negative=default_negatives(model.cfg), **kw)


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
