"""Layer operations injected into every model layer.

Every weight-carrying layer in `harmony` is built from an ``ops`` namespace
(``ops.Linear``, ``ops.Conv1d``, ``ops.Conv3d``, ``ops.LayerNorm``,
``ops.RMSNorm``) passed once to the model constructor. The default layers
*cast on use*: their parameters may be stored in any dtype (bf16, fp16, fp8
e4m3fn / e5m2) and on any device, and each forward call casts the weight to
the activation's dtype and device. This is what makes fp8 storage, scaled-fp8
checkpoints (``scale_weight``) and CPU offload work without touching model
code.

A scaled-fp8 layer carries an extra buffer ``scale_weight`` (a scalar or one
value per output row); the real weight is ``weight.to(compute) * scale_weight``.
"""
from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn as nn
import torch.nn.functional as F


def _cast_weight_bias(layer: nn.Module, x: torch.Tensor):
    """Weight and bias of ``layer`` in ``x``'s dtype and device (scale applied)."""
    dtype, device = x.dtype, x.device
    w = layer.weight.to(device=device, dtype=dtype, non_blocking=True)
    scale = getattr(layer, "scale_weight", None)
    if scale is not None:
        scale = scale.to(device=device, dtype=dtype)
        if scale.numel() > 1:
            scale = scale.reshape(-1, *([1] * (w.dim() - 1)))
        w = w * scale
    b = None
    if layer.bias is not None:
        b = layer.bias.to(device=device, dtype=dtype, non_blocking=True)
    return w, b


class Linear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = _cast_weight_bias(self, x)
        return F.linear(x, w, b)


class Conv1d(nn.Conv1d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = _cast_weight_bias(self, x)
        return self._conv_forward(x, w, b)


class Conv3d(nn.Conv3d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = _cast_weight_bias(self, x)
        return self._conv_forward(x, w, b)


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 and cast back (Wan's WanLayerNorm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = b = None
        if self.weight is not None:
            w = self.weight.to(device=x.device, dtype=torch.float32)
        if self.bias is not None:
            b = self.bias.to(device=x.device, dtype=torch.float32)
        y = F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps)
        return y.type_as(x)


class RMSNorm(nn.Module):
    """RMS norm in float32, then cast back and scaled (Wan's WanRMSNorm)."""

    def __init__(self, dim: int, eps: float = 1e-5, device=None, dtype=None):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return y.type_as(x) * self.weight.to(device=x.device, dtype=x.dtype)


default_ops = SimpleNamespace(
    Linear=Linear, Conv1d=Conv1d, Conv3d=Conv3d, LayerNorm=LayerNorm, RMSNorm=RMSNorm
)
"""The ops namespace every model uses unless the caller passes another."""
