"""The real-scale frame size: parsed from ``--size HxW`` / ``size=(H, W)`` and checked against the
device's memory by the memory plan before anything loads.

With the Wan2.2 VAE a frame is 16x16 pixels per latent, and the DiT's 2x2 patch makes the size a
multiple of 32 (:data:`SIZE_MULTIPLE`, the codec contract's ``size_multiple``); the default 704x704
(``contract.WAN22_VAE.frame_size``) is the multiple of 32 nearest Ovi's 720x720 area.
"""
from __future__ import annotations

import os
from typing import Optional

import torch

from .codecs.contract import WAN22_VAE, size_multiple
from .config import get_config

DEFAULT_SIZE = WAN22_VAE.frame_size
SIZE_MULTIPLE = size_multiple(WAN22_VAE, get_config("5b").video.patch_size)


def parse_size(value, via: str = "cli") -> tuple:
    """``"HxW"`` (CLI) or ``(H, W)`` (API) -> ``(H, W)``: positive multiples of :data:`SIZE_MULTIPLE`.
    ``via``: "cli" words the error for ``--size``, "api" for ``size=``."""
    label, example = (("--size", f"--size {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]}") if via == "cli"
                      else ("size", f"size={DEFAULT_SIZE}"))
    if value is None:
        return DEFAULT_SIZE
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ValueError(f"{label}={value!r}: expected (height, width) as two whole numbers; pass e.g. {example}")
        h, w = value
    else:
        try:
            h, w = (int(v) for v in str(value).lower().split("x"))
        except ValueError:
            raise ValueError(f"{label}: {value!r} is not HxW; pass e.g. {example}") from None
    if h <= 0 or w <= 0 or h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
        raise ValueError(f"{label}: {h}x{w}: height and width must be positive multiples of {SIZE_MULTIPLE} "
                         f"(16 pixels per VAE latent x the DiT's 2x2 patch); pass e.g. {example}")
    return h, w


PLAN_STEP_BYTES_PER_TOKEN = 3.26 * 2**30 / 15004
"""Device bytes of one sampling step per video token, from the memory plan (``python -m harmony bench
--plan``, docs/bench/memory_plan.txt): SyncCFG batched (batch 3) of the 5B model at 5 s 704x704 needs
3.26 GiB of activations for 15,004 video tokens; attention is fused, so this grows linearly with tokens."""


def device_memory_bytes(device) -> tuple:
    """``(bytes, words)``: the device's total memory (a GPU's, or the machine's RAM for the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device.index or 0).total_memory
        return total, f"the GPU's {total / 2**30:.1f} GiB"
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return total, f"this machine's {total / 2**30:.1f} GiB of RAM"


def check_size_fits(size: tuple, seconds: float, device=None, memory: Optional[tuple] = None,
                    via: str = "cli") -> tuple:
    """Refuse a frame size whose sampling step alone (no weights counted) would not fit the device's
    memory by the memory plan's figure (:data:`PLAN_STEP_BYTES_PER_TOKEN`); checked before anything
    loads. ``memory``: ``(bytes, words)`` instead of the device's (:func:`device_memory_bytes`)."""
    from .flops import real_tokens
    from .config import get_config

    h, w = size
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    total, where = memory if memory is not None else device_memory_bytes(device)
    cfg = get_config("5b")
    tokens = real_tokens(cfg, seconds, (h, w))
    need = tokens["video_tokens"] * PLAN_STEP_BYTES_PER_TOKEN
    if need <= total:
        return size
    frames = tokens["grid"][0]
    side = SIZE_MULTIPLE * int((total / PLAN_STEP_BYTES_PER_TOKEN / frames) ** 0.5)
    label = "--size" if via == "cli" else "size"
    largest = (f"the largest square size that fits is about {side}x{side}" if side >= SIZE_MULTIPLE
               else "no size fits")
    example = f"--size {min(side, DEFAULT_SIZE[0])}x{min(side, DEFAULT_SIZE[0])}" if via == "cli" else \
        f"size=({min(side, DEFAULT_SIZE[0])}, {min(side, DEFAULT_SIZE[0])})"
    raise ValueError(
        f"{label}: {h}x{w} is too large: one sampling step of a {seconds:g} s clip at this size "
        f"({tokens['video_tokens']:,} video tokens) needs about {need / 2**30:,.1f} GiB by the memory plan "
        f"({PLAN_STEP_BYTES_PER_TOKEN / 2**20:.2f} MiB per video token, SyncCFG at batch 3, weights not counted), "
        f"more than {where}; {largest}; pass e.g. {example}")
