"""The one attention dispatch point.

``attention(q, k, v, mask=None)`` takes ``[B, L, heads, head_dim]`` tensors and
returns ``[B, Lq, heads, head_dim]``. Backends:

- ``"sdpa"``: ``torch.nn.functional.scaled_dot_product_attention`` (always there);
- ``"flash"``: flash-attn (``flash_attn``), only when importable, CUDA half/bf16;
- ``"sage"``: SageAttention (``sageattention``), only when importable, CUDA.

A mask (bool, True = attend, shape ``[Lq, Lk]`` or ``[B, Lq, Lk]``) always runs
through sdpa, whatever backend is selected; so do CPU tensors.
"""
from __future__ import annotations

import contextlib
import importlib

import torch
import torch.nn.functional as F

_current = "sdpa"
_probed: dict = {}


def _probe(module: str):
    if module not in _probed:
        try:
            _probed[module] = importlib.import_module(module)
        except Exception:  # noqa: BLE001 - any import failure means "not available"
            _probed[module] = None
    return _probed[module]


def available_backends() -> list:
    """Names of the backends that can run here ("sdpa" always first)."""
    names = ["sdpa"]
    if _probe("flash_attn") is not None:
        names.append("flash")
    if _probe("sageattention") is not None:
        names.append("sage")
    return names


def get_backend() -> str:
    return _current


def set_backend(name: str) -> None:
    """Select the attention backend for all later calls."""
    global _current
    avail = available_backends()
    if name not in ("sdpa", "flash", "sage"):
        raise ValueError(f"unknown attention backend {name!r}; available here: {', '.join(avail)}")
    if name not in avail:
        pkg = {"flash": "flash-attn", "sage": "sageattention"}[name]
        raise RuntimeError(
            f"attention backend {name!r} is not available (package {pkg} cannot be imported); "
            f"available here: {', '.join(avail)}. Install {pkg} or pick one of those."
        )
    _current = name


@contextlib.contextmanager
def use_backend(name: str):
    """Context manager: run the block with backend `name`, then restore the previous one."""
    global _current
    previous = _current
    set_backend(name)
    try:
        yield
    finally:
        _current = previous


def _sdpa(q, k, v, mask):
    q, k, v = (x.transpose(1, 2) for x in (q, k, v))  # [B, H, L, D]
    if mask is not None:
        mask = mask.to(device=q.device, dtype=torch.bool)
        mask = mask[None, None] if mask.dim() == 2 else mask[:, None]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return out.transpose(1, 2)


def _half(x):
    return x if x.dtype in (torch.float16, torch.bfloat16) else x.to(torch.bfloat16)


def _flash(q, k, v):
    fa = _probe("flash_attn")
    out = fa.flash_attn_func(_half(q), _half(k), _half(v))
    return out.to(q.dtype)


def _sage(q, k, v):
    sa = _probe("sageattention")
    out = sa.sageattn(_half(q).contiguous(), _half(k).contiguous(), _half(v).contiguous(), tensor_layout="NHD")
    return out.to(q.dtype)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(head_dim)) v over ``[B, L, heads, head_dim]`` tensors."""
    if mask is not None or _current == "sdpa" or q.device.type != "cuda":
        return _sdpa(q, k, v, mask)
    if _current == "flash":
        return _flash(q, k, v)
    return _sage(q, k, v)
