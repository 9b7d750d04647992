"""The pipeline builder's core, below ``harmony.pipeline``: what every entrance decides in one place.

:func:`build` makes a pipeline (the class is handed in: ``HarmonyPipeline.from_pretrained`` passes
itself, :func:`harmony.assemble.build_pipeline` passes ``HarmonyPipeline``), so this module never imports
``pipeline`` and ``pipeline`` never imports ``assemble``: no import circle. It decides the device (CUDA
when there is one), the compute dtype (:func:`compute_dtype`), where the weights are kept and how they
reach the device (:data:`OFFLOAD_MODES`), the attention backend, the clip-length limit and the default
negative prompts of text CFG (:func:`default_negatives`, both from the model file), and whether the parts
pair with the model (:func:`check_pairing`), from the model file's header, before any weight is read.
The entrances (the bundled model, the CLI's real stack, the nodes) are in :mod:`harmony.assemble`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Union

import torch

from .codecs.contract import AudioCodec, VideoCodec
from .umt5 import OVI_AUDIO_NEGATIVE, OVI_VIDEO_NEGATIVE


@dataclass
class Codecs:
    """The video and audio codecs: anything that keeps the codec contract
    (`harmony.codecs.contract`): a module, a lazy loader, a core-VAE adapter."""

    video: VideoCodec
    audio: AudioCodec


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


def build(pipeline_cls, model_path, parts: Union[Parts, Callable], dtype: str = "auto", offload: str = "none",
          resident_blocks: Optional[int] = None, attention: str = "sdpa", device=None,
          what: str = "checkpoint", names: Optional[Names] = None,
          log: Optional[Callable[[str], None]] = None):
    """A ``pipeline_cls`` (``HarmonyPipeline``, handed in so that this module sits below it) over the model file ``model_path`` (a path, or its safetensors header
    already read: :func:`harmony.weightfile.read_header`) and ``parts``.

    ``parts``: a :class:`Parts`, or ``parts(cfg, device) -> Parts`` when they depend on the model's config
    (read from the file's header first). In order: the offload mode and the attention backend are
    checked, the config is read (header only), the parts are paired with it (:func:`check_pairing`),
    then the model is loaded onto its store device and placed (:func:`place`). ``what`` names the model
    file in errors (e.g. "--model"); ``names`` the parts."""
    from . import attention as attn
    from .checkpoint import load_model, read_config
    from .jobs import max_seconds
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
    return pipeline_cls(model, parts.text, Codecs(parts.video, parts.audio), device, compute_dtype(device), off,
                           max_seconds(model.cfg), negative=default_negatives(model.cfg), **kw)
