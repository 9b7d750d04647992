"""The one attention dispatch point, with the backend chosen per model.

``attention(q, k, v, mask=None, backend="sdpa")`` takes ``[B, L, heads, head_dim]``
tensors and returns ``[B, Lq, heads, head_dim]``. Backends:

- ``"sdpa"``: ``torch.nn.functional.scaled_dot_product_attention`` (always there);
- ``"flash"``: flash-attn (``flash_attn``), only when importable, CUDA half/bf16;
- ``"sage"``: SageAttention (``sageattention``), only when importable, CUDA.

A mask (bool, True = attend, shape ``[Lq, Lk]`` or ``[B, Lq, Lk]``) always runs
through sdpa, whatever backend is selected; so do CPU tensors.

An `Attention` object holds one model's backend: ``HarmonyModel`` makes one and
hands it to every attention layer of both towers, so
``model.set_attention_backend("flash")`` changes that model and no other.
"""
from __future__ import annotations

import importlib

import torch
import torch.nn.functional as F

BACKENDS = ("sdpa", "flash", "sage")
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


def check_backend(name: str) -> str:
    """`name` if that backend can run here; otherwise a clear error listing the ones that can."""
    avail = available_backends()
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; available here: {', '.join(avail)}")
    if name not in avail:
        pkg = {"flash": "flash-attn", "sage": "sageattention"}[name]
        raise RuntimeError(
            f"attention backend {name!r} is not available (package {pkg} cannot be imported); "
            f"available here: {', '.join(avail)}. Install {pkg} or pick one of those."
        )
    return name


class Attention:
    """Attention with one model's backend; called like ``attention`` without the `backend` argument."""

    def __init__(self, backend: str = "sdpa"):
        self.backend = check_backend(backend)

    def set_backend(self, name: str) -> None:
        self.backend = check_backend(name)

    def __call__(self, q, k, v, mask=None):
        return attention(q, k, v, mask, self.backend)

    def __repr__(self):
        return f"Attention(backend={self.backend!r})"


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


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor = None,
              backend: str = "sdpa") -> torch.Tensor:
    """softmax(q k^T / sqrt(head_dim)) v over ``[B, L, heads, head_dim]`` tensors."""
    if mask is not None or backend == "sdpa" or q.device.type != "cuda":
        return _sdpa(q, k, v, mask)
    if backend == "flash":
        return _flash(q, k, v)
    return _sage(q, k, v)
