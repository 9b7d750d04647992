"""The real-scale component files: what each is, how it is asked for and how it is found.

The dual-tower model file, the umT5-XXL encoder and its tokenizer, the Wan2.2 VAE, MMAudio's VAE and
its BigVGAN vocoder (:data:`COMPONENTS`). ``python -m harmony generate`` takes each as a flag
(:func:`add_arguments`) or finds it by its usual name under ``--weights DIR`` (:func:`resolve`: e.g.
Ovi's ``ckpts`` folder as its ``download_weights.py`` fills it). A missing, doubled or wrong file is
a :class:`ComponentError` naming the flag and the file people usually have, before anything loads.
The files are read by :mod:`harmony.weightfile`: headers first (``peek``), then tensor by tensor
(``read_state_dict``); a bad file is its ``WeightFileError``, naming the flag.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from .framesize import DEFAULT_SIZE, SIZE_MULTIPLE



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


def check_not_empty(a) -> None:
    """A path flag given as an empty string (``--weights ""``, ``--model ""``) is an error, never
    a silent fall-back to the bundled model."""
    for c in COMPONENTS + (Component("weights", "--weights", (), "the folder holding the components", True),):
        if getattr(a, c.key, None) == "":
            kind = "folder" if c.folder else "file"
            raise ComponentError(f"{c.flag}: the {kind} path is empty; give {c.what} (e.g. {c.flag} "
                                 f"{c.usual[0] if c.usual else 'ckpts'}), or leave {c.flag} out"
                                 + (" for the bundled model" if c.key in ("model", "weights") else ""))



def component(key: str) -> Component:
    return next(c for c in COMPONENTS if c.key == key)


def usual(key: str) -> str:
    return component(key).what


def _search(folder: str, usual: tuple, want_dir: bool) -> list:
    """Every path under ``folder`` (at most 4 levels deep) named as one of ``usual`` (relative
    paths), sorted; the caller refuses more than one (no silent pick)."""
    found = set()
    base = os.path.abspath(folder)
    for root, dirs, files in os.walk(base):
        depth = os.path.relpath(root, base).count(os.sep) + (root != base)
        if depth >= 4:
            dirs[:] = []
        for name in (dirs if want_dir else files):
            full = os.path.join(root, name)
            rel = os.path.relpath(full, base).replace(os.sep, "/")
            if any(rel == u or rel.endswith("/" + u) for u in usual):
                found.add(os.path.realpath(full) if os.path.islink(full) else full)
    return sorted(found)


def resolve(a) -> dict:
    """Component key -> path, from the flags and ``--weights``; a missing one is a ComponentError."""
    check_not_empty(a)
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
            found = _search(folder, c.usual, c.folder)
            if len(found) > 1:
                shown = "; ".join(found[:6]) + (f"; ... ({len(found) - 6} more)" if len(found) > 6 else "")
                raise ComponentError(f"--weights {folder}: {len(found)} candidates for {c.flag} ({shown}); "
                                     f"Harmony will not pick one silently: choose with {c.flag} "
                                     f"{'DIR' if c.folder else 'FILE'} (e.g. {c.flag} {found[0]})")
            p = found[0] if found else None
        if p is None:
            where = f" (not in --weights {folder})" if folder else ""
            raise ComponentError(f"{c.flag} is missing{where}: give {c.what}. Usual name: {c.usual[0]}.")
        ok = os.path.isdir(p) if c.folder else os.path.isfile(p)
        if not ok:
            raise ComponentError(f"{c.flag}: {'folder' if c.folder else 'file'} not found: {p}. Expected {c.what}.")
        paths[c.key] = os.fspath(p)
    return paths
