"""Layer operations injected into every model layer.

Every weight-carrying layer in `harmony` is built from an ``ops`` namespace
(``ops.Linear``, ``ops.Conv1d``, ``ops.Conv3d``, ``ops.LayerNorm``,
``ops.RMSNorm``) passed once to the model constructor. The default layers
*cast on use*: their parameters may be stored in any dtype (bf16, fp16, fp8
e4m3fn / e5m2) and on any device, and each forward call casts the weight to
the activation's dtype and device. This is what makes fp8 storage, scaled-fp8
checkpoints (``scale_weight``) and CPU offload work without touching model
code. (The modulation tables are plain float32-computed parameters, not
layers; the towers keep them, the time embedding and the time projection in
float32 storage, see ``tower.computes_in_fp32``, so their cast is a no-op.)

A scaled-fp8 layer carries an extra buffer ``scale_weight`` (a scalar or one
value per output row); the real weight is ``weight.to(compute) * scale_weight``.

Convolutions that are really matrix products run as one: ``Conv1d.forward_sequence``
(stride 1, sequence-major ``[B, L, C]``) unfolds the kernel windows and does one
matmul; ``Conv3d.forward_patches`` (kernel == stride, no padding: a patch
embedding) rearranges the patches into rows and does one matmul. Both equal
the convolution up to float rounding (tests/test_model.py: within 1e-6 of the
largest output at fp32, 1e-12 at fp64, against torch's conv1d / conv3d).
"""
from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange


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


def unfold_windows(x: torch.Tensor, kernel: int, padding: int) -> torch.Tensor:
    """``[B, L, C]`` -> ``[B, L + 2*padding - kernel + 1, C*kernel]``: each row one zero-padded window,
    flattened channel-major (the order of a Conv1d weight ``[out, C, kernel]``)."""
    x = F.pad(x, (0, 0, padding, padding))
    return x.unfold(1, kernel, 1).flatten(2)  # unfold gives [B, L', C, kernel]


def conv1d_windows(windows: torch.Tensor, weight: torch.Tensor, bias=None) -> torch.Tensor:
    """A stride-1 Conv1d over unfolded windows: one matmul with the weight seen as ``[out, C*kernel]``."""
    return F.linear(windows, weight.flatten(1), bias)


class Conv1d(nn.Conv1d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = _cast_weight_bias(self, x)
        return self._conv_forward(x, w, b)

    def matmul_ok(self) -> bool:
        return (self.stride == (1,) and self.dilation == (1,) and self.groups == 1
                and self.padding_mode == "zeros" and not isinstance(self.padding, str))

    def forward_sequence(self, x: torch.Tensor, windows: torch.Tensor = None) -> torch.Tensor:
        """Sequence-major ``[B, L, C_in]`` -> ``[B, L', C_out]`` as one matmul over unfolded windows.

        `windows`: ``unfold_windows(x, kernel, padding)`` when the caller already has them.
        """
        w, b = _cast_weight_bias(self, x)
        if not self.matmul_ok():
            return self._conv_forward(x.transpose(1, 2), w, b).transpose(1, 2)
        if windows is None:
            windows = unfold_windows(x, self.kernel_size[0], self.padding[0])
        return conv1d_windows(windows, w, b)


class Conv3d(nn.Conv3d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = _cast_weight_bias(self, x)
        return self._conv_forward(x, w, b)

    def forward_patches(self, x: torch.Tensor):
        """Patch embedding ``[B, C, F, H, W]`` -> tokens ``[B, f*h*w, C_out]`` (f, h, w order) and the grid.

        With kernel == stride and no padding the convolution is one matmul over
        non-overlapping patches; other settings run the convolution.
        """
        w, b = _cast_weight_bias(self, x)
        if self.kernel_size != self.stride or self.padding != (0, 0, 0) or self.groups != 1 or self.dilation != (1, 1, 1):
            y = self._conv_forward(x, w, b)
            return rearrange(y, "b c f h w -> b (f h w) c"), tuple(y.shape[2:])
        pf, ph, pw = self.kernel_size
        f, h, w_ = x.shape[2] // pf, x.shape[3] // ph, x.shape[4] // pw
        x = x[:, :, : f * pf, : h * ph, : w_ * pw]  # a conv drops what does not fill a patch
        rows = rearrange(x, "b c (f pf) (h ph) (w pw) -> b (f h w) (c pf ph pw)", pf=pf, ph=ph, pw=pw)
        return F.linear(rows, w.flatten(1), b), (f, h, w_)


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
