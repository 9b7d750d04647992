"""Tiny random checkpoint files in the layouts real weights come in (a test helper).

Every writer takes a reduced config (default ``tiny`` / ``tiny-global``) and
writes a safetensors file with the tensor names, wrapper prefix, dtypes and
metadata of the real file it stands for:

- ``write_harmony``: our own file (``harmony_config`` metadata), bf16 or scaled fp8.
- ``write_ovi``: Ovi's ``model.safetensors`` (no metadata, ``*.modulation.modulation``),
  optionally under ComfyUI's ``model.diffusion_model.`` prefix, bf16, Ovi's
  ``model_fp8_e4m3fn.safetensors`` form (block Linear weights e4m3fn, no scales)
  or ComfyUI scaled fp8 (``scaled_fp8`` + ``*.scale_weight``).
- ``write_wan22``: a bare Wan2.2-TI2V-5B DiT (the video tower alone).

``random_model(config, seed)`` is the model the files are cut from, so a test
can compare what was loaded with what was written.
"""
from __future__ import annotations

import torch

from harmony import keymap
from harmony.checkpoint import (FP8_FORMATS, SCALED_FP8_KEY, quantizable_weights, quantize_fp8, save_model,
                                save_safetensors)
from harmony.config import get_config
from harmony.model import HarmonyModel

COMFY_PREFIX = "model.diffusion_model."


def random_model(config="tiny-global", seed: int = 0) -> HarmonyModel:
    cfg = get_config(config) if isinstance(config, str) else config
    torch.manual_seed(seed)
    return HarmonyModel(cfg).eval()


def _stored(model: HarmonyModel, layout: str, dtype, fp8: str | None) -> dict:
    """Upstream-named tensors of ``model`` in ``layout``, cast / quantised as asked."""
    quant = set(quantizable_weights(model)) if fp8 else set()
    out = {}
    for key, t in model.state_dict().items():
        name = keymap.to_upstream(key, layout)
        if name is None:
            continue
        t = t.detach().float()
        if key in quant:
            fp8_dtype, scaled = FP8_FORMATS[fp8]
            q, scale = quantize_fp8(t, fp8_dtype, scaled)
            out[name] = q
            if scale is not None:
                out[name[: -len("weight")] + "scale_weight"] = scale
        else:
            out[name] = t.to(dtype)
    if fp8 and FP8_FORMATS[fp8][1]:
        out[SCALED_FP8_KEY] = torch.empty(0, dtype=FP8_FORMATS[fp8][0])
    return out


def write_ovi(path, model=None, prefix: str = "", dtype=torch.bfloat16, fp8: str | None = None) -> str:
    """Ovi fusion file (``fp8``: None, "e4m3fn" = Ovi's fp8 file, "scaled_e4m3fn" = ComfyUI)."""
    model = model if model is not None else random_model("tiny-global")
    tensors = {prefix + k: v for k, v in _stored(model, "ovi", dtype, fp8).items()}
    if SCALED_FP8_KEY in {k[len(prefix):] for k in tensors}:
        tensors[SCALED_FP8_KEY] = tensors.pop(prefix + SCALED_FP8_KEY)
    return save_safetensors(tensors, path, {"format": "pt"})


def write_wan22(path, model=None, prefix: str = "", dtype=torch.bfloat16) -> str:
    """Wan2.2-TI2V-5B DiT alone: the video tower's tensors under Wan's names."""
    model = model if model is not None else random_model("tiny-global")
    tensors = {prefix + k: v for k, v in _stored(model, "wan2.2-ti2v-5b", dtype, None).items()}
    return save_safetensors(tensors, path, {"format": "pt"})


def write_harmony(path, model=None, dtype="bf16", fp8: str | None = None) -> str:
    """Our own file, with its ``harmony_config`` metadata."""
    model = model if model is not None else random_model("tiny")
    return save_model(model, path, dtype=dtype, fp8=fp8)
