"""The real-scale stack: a dual-tower model file + umT5-XXL + Wan2.2 VAE + MMAudio VAE + BigVGAN.

``python -m harmony generate --model … --text-encoder … --video-vae … --audio-vae …
--vocoder …`` (or ``--weights DIR``, a folder holding them under their usual names,
e.g. Ovi's ``ckpts`` folder as its ``download_weights.py`` fills it) builds a
``HarmonyPipeline`` from these files; the rest of ``generate`` is unchanged.

Shapes follow the codecs: Wan2.2 VAE 16x16 pixels per latent, the first latent
frame one video frame and every further one four (``1 + 4 (F - 1)`` frames),
24 fps; MMAudio 16 kHz audio, 31.25 latents per second. The frame size is
``--size HxW`` (multiples of 32: the VAE's 16 times the DiT's 2x2 patch); the
default 704x704 is the multiple of 32 nearest Ovi's 720x720 area.

Text: both towers get the umT5 embedding of one string built as Ovi does
(:func:`harmony.umt5.ovi_prompt`): the scene, the transcript in ``<S>…<E>``,
the audio caption as ``Audio: …`` (``--caption-tags audcap`` for Ovi's
720x720_5s checkpoint, trained with ``<AUDCAP>…<ENDAUDCAP>``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .model import Conditioning

DEFAULT_SIZE = (704, 704)
SIZE_MULTIPLE = 32


@dataclass(frozen=True)
class Component:
    key: str
    flag: str
    usual: tuple  # usual file names (relative paths), in the order they are looked for
    what: str
    folder: bool = False


COMPONENTS = (
    Component("model", "--model", ("Ovi/model.safetensors", "model.safetensors", "model_960x960.safetensors",
                                   "model_960x960_10s.safetensors", "model_fp8_e4m3fn.safetensors"),
              "the dual-tower model: Ovi's fusion checkpoint (Ovi/model.safetensors from chetwinlow1/Ovi, or "
              "model_fp8_e4m3fn.safetensors from rkfg/Ovi-fp8_quantized) or a Harmony 5b file"),
    Component("text_encoder", "--text-encoder", ("models_t5_umt5-xxl-enc-bf16.pth", "umt5_xxl_bf16.safetensors",
                                                 "umt5_xxl_fp16.safetensors",
                                                 "umt5_xxl_fp8_e4m3fn_scaled.safetensors"),
              "the umT5-XXL encoder: models_t5_umt5-xxl-enc-bf16.pth (Wan-AI/Wan2.2-TI2V-5B) or ComfyUI's "
              "umt5_xxl_bf16 / fp16 / fp8_e4m3fn_scaled .safetensors"),
    Component("tokenizer", "--tokenizer", ("google/umt5-xxl",),
              "the umT5 tokenizer folder: google/umt5-xxl inside Wan2.2-TI2V-5B (looked for beside the text "
              "encoder)", folder=True),
    Component("video_vae", "--video-vae", ("Wan2.2_VAE.pth", "wan2.2_vae.safetensors"),
              "the Wan2.2 VAE: Wan2.2_VAE.pth (Wan-AI/Wan2.2-TI2V-5B) or ComfyUI's wan2.2_vae.safetensors"),
    Component("audio_vae", "--audio-vae", ("ext_weights/v1-16.pth", "v1-16.pth"),
              "MMAudio's 16 kHz mel VAE: ext_weights/v1-16.pth (hkchengrex/MMAudio)"),
    Component("vocoder", "--vocoder", ("ext_weights/best_netG.pt", "best_netG.pt"),
              "MMAudio's 16 kHz BigVGAN vocoder: ext_weights/best_netG.pt (hkchengrex/MMAudio)"),
)
STACK_FLAGS = ("text_encoder", "tokenizer", "video_vae", "audio_vae", "vocoder", "weights")


class ComponentError(FileNotFoundError):
    """A missing or unusable component file, naming its flag and the file people usually have."""


def add_arguments(ap):
    """The component flags of ``generate`` (``--model`` is the parser's own)."""
    g = ap.add_argument_group("real-scale components (umT5 + Wan2.2 VAE + MMAudio; any of them selects this path)")
    for c in COMPONENTS[1:]:
        g.add_argument(c.flag, metavar="DIR" if c.folder else "FILE", default=None, help=c.what)
    g.add_argument("--weights", metavar="DIR", default=None,
                   help="a folder holding the components under their usual names (searched 4 levels deep), "
                        "e.g. Ovi's ckpts folder; a flag given explicitly wins")
    g.add_argument("--size", default=None, metavar="HxW",
                   help=f"frame size, multiples of {SIZE_MULTIPLE} (default {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]}, "
                        "about Ovi's 720x720 area; Ovi's 960x960 checkpoints want about 960x960)")
    g.add_argument("--caption-tags", choices=("audio", "audcap"), default="audio",
                   help="how the audio caption is written into Ovi's prompt: 'Audio: …' or "
                        "'<AUDCAP>…<ENDAUDCAP>' (Ovi's 720x720_5s checkpoint)")
    return g


def wanted(a) -> bool:
    """Whether any component flag was given (then generate takes the real-scale path)."""
    return any(getattr(a, k, None) for k in STACK_FLAGS)


def parse_size(text) -> tuple:
    if text is None:
        return DEFAULT_SIZE
    try:
        h, w = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ValueError(f"--size: {text!r} is not HxW (e.g. 704x704)") from None
    if h <= 0 or w <= 0 or h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
        raise ValueError(f"--size: {h}x{w}: height and width must be positive multiples of {SIZE_MULTIPLE} "
                         f"(16 pixels per VAE latent x the DiT's 2x2 patch), e.g. {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]}")
    return h, w


def _search(folder: str, usual: tuple, want_dir: bool) -> Optional[str]:
    """The first of ``usual`` (relative paths) found under ``folder``, at most 4 levels deep."""
    found = {}
    base = os.path.abspath(folder)
    for root, dirs, files in os.walk(base):
        depth = os.path.relpath(root, base).count(os.sep) + (root != base)
        if depth >= 4:
            dirs[:] = []
        for name in (dirs if want_dir else files):
            full = os.path.join(root, name)
            rel = os.path.relpath(full, base).replace(os.sep, "/")
            for u in usual:
                if rel == u or rel.endswith("/" + u):
                    found.setdefault(u, full)
    return next((found[u] for u in usual if u in found), None)


def resolve(a) -> dict:
    """Component key -> path, from the flags and ``--weights``; a missing one is a ComponentError."""
    folder = getattr(a, "weights", None)
    if folder is not None and not os.path.isdir(folder):
        raise ComponentError(f"--weights: folder not found: {folder}")
    paths = {}
    for c in COMPONENTS:
        p = getattr(a, c.key, None)
        if p is None and c.key == "tokenizer" and paths.get("text_encoder"):
            beside = os.path.join(os.path.dirname(paths["text_encoder"]), "google", "umt5-xxl")
            p = beside if os.path.isdir(beside) else None
        if p is None and folder is not None:
            p = _search(folder, c.usual, c.folder)
        if p is None:
            where = f" (not in --weights {folder})" if folder else ""
            raise ComponentError(f"{c.flag} is missing{where}: give {c.what}. Usual name: {c.usual[0]}.")
        ok = os.path.isdir(p) if c.folder else os.path.isfile(p)
        if not ok:
            raise ComponentError(f"{c.flag}: {'folder' if c.folder else 'file'} not found: {p}. Expected {c.what}.")
        paths[c.key] = os.fspath(p)
    return paths


class UMT5Conditioner:
    """The pipeline's conditioner for umT5 models: Ovi's one prompt, the same embedding for both towers."""

    def __init__(self, encoder, caption_tags: str = "audio", log: Callable[[str], None] = print):
        self.encoder, self.caption_tags, self.log = encoder, caption_tags, log

    def to(self, *args, **kw):
        return self

    def __call__(self, prompts, captions, transcripts, refs, device=None) -> Conditioning:
        from .umt5 import ovi_prompt

        texts = [ovi_prompt(p, t, c, self.caption_tags) for p, c, t in zip(prompts, captions, transcripts)]
        ids, _ = self.encoder.tokens(texts)
        for text, row in zip(texts, ids):
            n = int((row != self.encoder.tokenizer.pad_token_id).sum())
            if n >= self.encoder.text_len:
                self.log(f"the prompt is cut at {self.encoder.text_len} tokens (umT5's limit)")
        run_on = torch.device(device) if device is not None else self.encoder.device
        self.encoder.model.to(run_on)  # on the device only while encoding, then back to RAM
        try:
            emb, _ = self.encoder.encode(texts)
        finally:
            self.encoder.model.to("cpu")
        emb = emb.to(run_on)
        return Conditioning(emb, emb.clone(), None)


def load_stack(paths: dict, dtype: str = "auto", offload: str = "none", resident_blocks: Optional[int] = None,
               device=None, size=None, caption_tags: str = "audio", log: Callable[[str], None] = print):
    """A ``HarmonyPipeline`` over the component files (see :func:`resolve`)."""
    from .checkpoint import load_model
    from .codecs.mmaudio import MMAudioCodec
    from .codecs.wan_vae import load_wan_vae
    from .pipeline import Codecs, HarmonyPipeline, _max_seconds
    from .umt5 import load_umt5

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    compute = torch.float32 if device.type == "cpu" else torch.bfloat16
    size = parse_size(size) if not isinstance(size, tuple) else size
    store_device = "cpu" if offload in ("cpu", "block_swap") else device
    model = load_model(paths["model"], dtype=dtype, device=store_device)
    log(model.load_summary)
    cfg = model.cfg
    text = load_umt5(paths["text_encoder"], paths["tokenizer"], dtype=compute, device="cpu",
                     text_len=cfg.video.text_len)  # kept in RAM; on the device only while encoding
    log(f"text encoder {os.path.basename(paths['text_encoder'])}: umT5 {text.model.config.num_layers} layers, "
        f"width {text.dim}, text_len {text.text_len}")
    for tower in (cfg.video, cfg.audio):
        if tower.text_dim != text.dim:
            raise ComponentError(f"--text-encoder {paths['text_encoder']} gives {text.dim}-wide embeddings but the "
                                 f"model's {tower.modality} tower reads {tower.text_dim}: they are not a pair")
    vae = load_wan_vae(paths["video_vae"], device=device, dtype=compute)
    vae.frame_size = size
    if vae.latent_channels != cfg.video.in_dim:
        raise ComponentError(f"--video-vae {paths['video_vae']} has {vae.latent_channels} latent channels, the "
                             f"model's video tower {cfg.video.in_dim}: use the Wan2.2 VAE (Wan2.2_VAE.pth)")
    audio = MMAudioCodec.from_files(paths["audio_vae"], paths["vocoder"], device=device)
    if audio.latent_channels != cfg.audio.in_dim:
        raise ComponentError(f"--audio-vae gives {audio.latent_channels} latent channels, the model's audio tower "
                             f"reads {cfg.audio.in_dim}")
    off = None
    if offload == "block_swap":
        from .offload import BlockSwap
        off = BlockSwap(model, resident_blocks=resident_blocks or 0, device=device)
    elif offload == "cpu":
        from .offload import cpu_offload
        off = cpu_offload(model, device)
    else:
        model.to(device)
    log(f"frame {size[0]}x{size[1]} at {vae.fps} fps, audio {audio.sample_rate} Hz")
    return HarmonyPipeline(model, UMT5Conditioner(text, caption_tags, log), Codecs(vae, audio), device, compute,
                           off, _max_seconds(getattr(cfg, "meta", None)), log)
