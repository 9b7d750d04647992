"""BigVGAN (v1) vocoder at 16 kHz, as MMAudio uses it: log10 mel [B, 80, T] -> waveform [B, 1, 256 T].

Architecture (MMAudio's ``bigvgan_vocoder.yml``; only the widths are configurable here):

- ``conv_pre``: conv k7, 80 -> C (C = ``upsample_initial_channel`` = 1536);
- six stages ``i``: transposed conv ``ups.i.0`` (rates 4, 4, 2, 2, 2, 2, kernels 8, 8, 4, 4, 4, 4,
  padding ``(k - r) / 2``) halving the width, then three AMP blocks (``resblocks.3i + j``,
  kernels 3, 7, 11) whose outputs are **averaged**;
- AMP block (BigVGAN "AMPBlock1"): for dilations 1, 3, 5:
  ``x = x + conv2(act(conv1_d(act(x))))`` with 'same' padding, six anti-aliased activations;
- anti-aliased activation (``Activation1d``): 2x upsample (replicate-pad 5, transposed conv with a
  12-tap Kaiser-windowed sinc times 2, crop 15 each side), SnakeBeta, then 2x downsample
  (replicate-pad 5 left / 6 right, the same kind of low-pass, stride 2);
- SnakeBeta with log-scale parameters: ``x + sin(x e^alpha)^2 / (e^beta + 1e-9)`` per channel;
- ``activation_post`` (the same anti-aliased SnakeBeta), ``conv_post`` k7 to one channel, ``tanh``.

The resampling filters are ``*.filter`` buffers (saved in checkpoints); they are rebuilt here by
:func:`kaiser_sinc_filter` and replaced by the file's copy on load.

Weights: the module holds plain ``weight``/``bias`` (the names of MMAudio's vocoder after
``remove_weight_norm()``). Checkpoints trained with weight norm store ``<conv>.weight_g`` and
``<conv>.weight_v`` (or torch's newer ``<conv>.parametrizations.weight.original0/1``);
:func:`fold_weight_norm` turns them into ``weight = g * v / ||v||``, the norm taken over every
dim but 0. For the transposed convs (``ups.*``) dim 0 is the *input* channel.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..weightfile import read_state_dict, state_dict_mismatch

UPSAMPLE_RATES = (4, 4, 2, 2, 2, 2)
UPSAMPLE_KERNELS = (8, 8, 4, 4, 4, 4)
RESBLOCK_KERNELS = (3, 7, 11)
RESBLOCK_DILATIONS = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
FILTER_TAPS = 12
SNAKE_EPS = 1e-9

WN_LEGACY = (".weight_g", ".weight_v")
WN_PARAM = (".parametrizations.weight.original0", ".parametrizations.weight.original1")


# ------------------------------------------------------------------ anti-aliased activation


def kaiser_sinc_filter(cutoff: float = 0.25, half_width: float = 0.3, taps: int = FILTER_TAPS) -> torch.Tensor:
    """Low-pass FIR ``[1, 1, taps]`` on the CPU: sinc at ``cutoff`` (cycles/sample) under a Kaiser window, sum 1.

    The Kaiser beta follows Kaiser's design rule for the attenuation ``A`` that a
    transition width of ``2 * half_width`` allows with this many taps.
    """
    return _kaiser_sinc_filter(float(cutoff), float(half_width), int(taps)).clone()


@functools.lru_cache(maxsize=8)
def _kaiser_sinc_filter(cutoff: float, half_width: float, taps: int) -> torch.Tensor:
    half = taps // 2
    atten = 2.285 * (half - 1) * math.pi * (4 * half_width) + 7.95
    if atten > 50.0:
        beta = 0.1102 * (atten - 8.7)
    elif atten >= 21.0:
        beta = 0.5842 * (atten - 21.0) ** 0.4 + 0.07886 * (atten - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(taps, periodic=False, beta=beta, device="cpu")
    t = torch.arange(-half, half, device="cpu") + 0.5 if taps % 2 == 0 else torch.arange(taps, device="cpu") - half
    h = 2 * cutoff * window * torch.sinc(2 * cutoff * t)
    return (h / h.sum()).view(1, 1, taps)


class SnakeBeta(nn.Module):
    """``x + sin(x * exp(alpha))^2 / (exp(beta) + 1e-9)``, per channel (log-scale parameters)."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        freq = self.alpha.to(x.dtype).exp()[None, :, None]
        amp = self.beta.to(x.dtype).exp()[None, :, None]
        return x + (1.0 / (amp + SNAKE_EPS)) * torch.sin(x * freq).pow(2)


class Upsample2x(nn.Module):
    """Band-limited 2x upsampling: zero-stuff and low-pass (transposed conv), gain 2, replicate edges."""

    ratio = 2

    def __init__(self):
        super().__init__()
        self.register_buffer("filter", kaiser_sinc_filter(0.5 / self.ratio, 0.6 / self.ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        taps = self.filter.shape[-1]
        pad = taps // self.ratio - 1                                     # 5 input samples each side
        crop_l = pad * self.ratio + (taps - self.ratio) // 2             # 15
        crop_r = pad * self.ratio + (taps - self.ratio + 1) // 2         # 15
        B, C, T = x.shape
        # the same filter for every channel: fold channels into the batch (one single-channel
        # transposed conv, much faster on CPU than the grouped form, same arithmetic per channel)
        xp = F.pad(x, (pad, pad), mode="replicate").reshape(B * C, 1, T + 2 * pad)
        y = F.conv_transpose1d(xp, self.filter.to(x.dtype).view(1, 1, taps), stride=self.ratio)
        return self.ratio * y[..., crop_l:y.shape[-1] - crop_r].reshape(B, C, -1)


class LowPass(nn.Module):
    def __init__(self, stride: int = 2):
        super().__init__()
        self.stride = stride
        self.register_buffer("filter", kaiser_sinc_filter(0.25, 0.3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        taps = self.filter.shape[-1]
        left, right = taps // 2 - (1 - taps % 2), taps // 2             # 5, 6 for 12 taps
        B, C, T = x.shape
        xp = F.pad(x, (left, right), mode="replicate").reshape(B * C, 1, T + left + right)
        y = F.conv1d(xp, self.filter.to(x.dtype).view(1, 1, taps), stride=self.stride)
        return y.reshape(B, C, -1)


class Downsample2x(nn.Module):
    def __init__(self):
        super().__init__()
        self.lowpass = LowPass(stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lowpass(x)


class AntiAliasedSnake(nn.Module):
    """SnakeBeta evaluated at twice the sample rate: upsample 2x, activation, low-pass + decimate 2x."""

    def __init__(self, channels: int):
        super().__init__()
        self.act = SnakeBeta(channels)
        self.upsample = Upsample2x()
        self.downsample = Downsample2x()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(self.act(self.upsample(x)))


# ------------------------------------------------------------------ generator


class AMPBlock(nn.Module):
    """Three dilated residual units ``x + conv2(act(conv1_d(act(x))))`` (dilations 1, 3, 5)."""

    def __init__(self, channels: int, kernel: int, dilations: Sequence[int]):
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, dilation=d, padding=d * (kernel - 1) // 2) for d in dilations)
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, padding=(kernel - 1) // 2) for _ in dilations)
        self.activations = nn.ModuleList(AntiAliasedSnake(channels) for _ in range(2 * len(dilations)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (c1, c2) in enumerate(zip(self.convs1, self.convs2)):
            x = x + c2(self.activations[2 * i + 1](c1(self.activations[2 * i](x))))
        return x


class BigVGANVocoder(nn.Module):
    """BigVGAN v1 generator; ``BigVGANVocoder()`` is MMAudio's 16 kHz vocoder (112 M parameters).

    ``forward(mel [B, 80, T]) -> wave [B, 1, 256 T]`` in (-1, 1). Load weights with
    :func:`load_bigvgan` (plain or weight-norm checkpoints).
    """

    def __init__(self, num_mels: int = 80, upsample_initial_channel: int = 1536,
                 upsample_rates: Sequence[int] = UPSAMPLE_RATES,
                 upsample_kernel_sizes: Sequence[int] = UPSAMPLE_KERNELS,
                 resblock_kernel_sizes: Sequence[int] = RESBLOCK_KERNELS,
                 resblock_dilation_sizes: Sequence[Sequence[int]] = RESBLOCK_DILATIONS):
        super().__init__()
        if len(upsample_rates) != len(upsample_kernel_sizes):
            raise ValueError("BigVGANVocoder: upsample_rates and upsample_kernel_sizes must have the same length")
        if upsample_initial_channel % (2 ** len(upsample_rates)):
            raise ValueError(f"BigVGANVocoder: upsample_initial_channel {upsample_initial_channel} must be "
                             f"divisible by 2^{len(upsample_rates)} (each stage halves the width)")
        self.num_mels = num_mels
        self.hop_length = math.prod(upsample_rates)
        self.num_kernels = len(resblock_kernel_sizes)
        c = upsample_initial_channel
        self.conv_pre = nn.Conv1d(num_mels, c, 7, padding=3)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for r, k in zip(upsample_rates, upsample_kernel_sizes):
            self.ups.append(nn.ModuleList([nn.ConvTranspose1d(c, c // 2, k, r, padding=(k - r) // 2)]))
            c //= 2
            for kr, d in zip(resblock_kernel_sizes, resblock_dilation_sizes):
                self.resblocks.append(AMPBlock(c, kr, d))
        self.activation_post = AntiAliasedSnake(c)
        self.conv_post = nn.Conv1d(c, 1, 7, padding=3)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(mel) or mel.dim() != 3 or mel.shape[1] != self.num_mels or mel.shape[-1] < 1:
            shape = tuple(mel.shape) if torch.is_tensor(mel) else type(mel).__name__
            raise ValueError(f"BigVGANVocoder: mel must be a log10 mel [B, {self.num_mels}, T], got {shape}.")
        x = self.conv_pre(mel)
        n = self.num_kernels
        for i, (up,) in enumerate(self.ups):
            x = up(x)
            x = sum(self.resblocks[i * n + j](x) for j in range(n)) / n
        return torch.tanh(self.conv_post(self.activation_post(x)))


# ------------------------------------------------------------------ weight norm and loading


def fold_weight_norm(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """Replace every ``(g, v)`` pair by ``weight = g * v / ||v||`` (norm over all dims except 0).

    Accepts the legacy ``X.weight_g`` / ``X.weight_v`` names and torch's
    ``X.parametrizations.weight.original0`` / ``original1``; other tensors pass through.
    Computed in float64 and cast back to ``v``'s dtype.
    """
    out, pairs = {}, {}
    for k, v in state_dict.items():
        for g_suffix, v_suffix in (WN_LEGACY, WN_PARAM):
            if k.endswith(g_suffix):
                pairs.setdefault(k[: -len(g_suffix)], {})["g"] = (k, v)
                break
            if k.endswith(v_suffix):
                pairs.setdefault(k[: -len(v_suffix)], {})["v"] = (k, v)
                break
        else:
            out[k] = v
    for base, gv in pairs.items():
        if set(gv) != {"g", "v"}:
            have = next(iter(gv.values()))[0]
            raise ValueError(f"weight norm: {have} has no partner (need both g and v for {base}).")
        (gk, g), (vk, v) = gv["g"], gv["v"]
        if g.numel() != v.shape[0]:
            raise ValueError(f"weight norm: {gk} has {g.numel()} entries but {vk} has {v.shape[0]} rows (dim 0).")
        v64 = v.to(torch.float64)
        norm = torch.linalg.vector_norm(v64.flatten(1), dim=1).view(-1, *([1] * (v.dim() - 1)))
        out[base + ".weight"] = (g.to(torch.float64).view_as(norm) * v64 / norm).to(v.dtype)
    return out


def weight_norm_form(state_dict: Mapping[str, torch.Tensor], legacy: bool = True,
                     modules: Sequence[str] | None = None) -> dict:
    """Inverse of :func:`fold_weight_norm` for the vocoder's convs: ``weight -> (g = ||w||, v = w)``.

    Writes the layout BigVGAN is trained and checkpointed in (``legacy``: ``weight_g``/``weight_v``,
    else ``parametrizations.weight.original0/1``). ``modules`` lists the conv names (default: every
    ``*.weight`` except the SnakeBeta parameters and filters, i.e. all of the vocoder's convs).
    Works on meta tensors (shapes only).
    """
    g_suffix, v_suffix = WN_LEGACY if legacy else WN_PARAM
    out = {}
    for k, w in state_dict.items():
        base = k[: -len(".weight")] if k.endswith(".weight") else None
        if base is not None and (base in modules if modules is not None else w.dim() == 3):
            out[base + g_suffix] = torch.linalg.vector_norm(w.flatten(1), dim=1).view(-1, *([1] * (w.dim() - 1)))
            out[base + v_suffix] = w
        else:
            out[k] = w
    return out


COMFY_PREFIX = "vocoder."


def bigvgan_state_dict(file_sd: Mapping[str, torch.Tensor], source: str = "BigVGAN weights") -> tuple[dict, dict]:
    """Tensors of a vocoder file -> plain state dict for :class:`BigVGANVocoder`.

    Accepted: MMAudio's ``best_netG.pt`` content (the ``generator`` entry, unwrapped by the reader)
    in the weight-norm or plain form, and ComfyUI's combined MMAudio file (``vocoder.*``, plain).
    Returns ``(state_dict, info)`` with ``info = {"layout", "weight_norm"}``.
    """
    keys = list(file_sd)
    if any(k.startswith(COMFY_PREFIX + "conv_pre.") for k in keys):
        layout = "comfyui"
        sd = {k[len(COMFY_PREFIX):]: v for k, v in file_sd.items() if k.startswith(COMFY_PREFIX)}
    elif any(k.startswith("conv_pre.") for k in keys):
        layout, sd = "upstream", dict(file_sd)
    else:
        raise ValueError(f"{source}: no BigVGAN vocoder tensors found (expected 'conv_pre.*', or "
                         f"ComfyUI's 'vocoder.conv_pre.*'); first keys: {keys[:5]}. Pass MMAudio's best_netG.pt "
                         "or ComfyUI's MMAudio VAE file.")
    wn = any(k.endswith(WN_LEGACY + WN_PARAM) for k in sd)
    return (fold_weight_norm(sd) if wn else sd), {"layout": layout, "weight_norm": wn}


def load_bigvgan(path_or_sd, upsample_initial_channel: int | None = None, device="cpu",
                 dtype=torch.float32) -> BigVGANVocoder:
    """Build a :class:`BigVGANVocoder` from a file (safetensors, or ``.pt`` via ``weights_only``) or a dict.

    The width is read from ``conv_pre`` unless given. The file's ``*.filter`` buffers are used when
    present (otherwise the rebuilt ones). Every other tensor must be present with its shape.
    """

    source = str(path_or_sd) if not isinstance(path_or_sd, Mapping) else "BigVGAN state dict"
    sd, info = bigvgan_state_dict(read_state_dict(path_or_sd, what="BigVGAN vocoder"), source)
    if upsample_initial_channel is None:
        if "conv_pre.weight" not in sd:
            raise ValueError(f"{source}: 'conv_pre.weight' (or its weight_g/weight_v) is missing.")
        upsample_initial_channel = int(sd["conv_pre.weight"].shape[0])
    num_mels = int(sd["conv_pre.weight"].shape[1]) if "conv_pre.weight" in sd else 80
    with torch.device("meta"):
        model = BigVGANVocoder(num_mels=num_mels, upsample_initial_channel=upsample_initial_channel)
    expected = model.state_dict()
    for k in expected:  # fixed filters: rebuilt when the file has none
        if k.endswith(".filter") and k not in sd:
            sd[k] = kaiser_sinc_filter()
    mismatch = state_dict_mismatch(sd, expected)
    if mismatch:
        raise ValueError(f"{source}: does not match the BigVGAN 16 kHz vocoder (width {upsample_initial_channel}): "
                         f"{mismatch}.")
    model.load_state_dict({k: v.to(device=device, dtype=dtype) for k, v in sd.items()}, strict=True, assign=True)
    model.load_info = info
    return model.eval()
