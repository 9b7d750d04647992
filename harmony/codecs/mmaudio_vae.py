"""MMAudio's 16 kHz mel VAE in pure torch, loading the upstream state dict by key.

The VAE maps an 80-bin log10 mel (62.5 frames/s, see :mod:`harmony.codecs.mel`)
to 20 latent channels at half the frame rate (31.25 latents/s) and back.
Every convolution is an EDM2-style magnitude-preserving conv without bias; the
blocks keep activations near unit RMS:

- ``mp_silu(x) = silu(x) / 0.596``;
- pixel norm over channels: ``x / (1e-4 + ||x||_C / sqrt(C))`` (eps added to the RMS);
- residual ``mp_sum(a, b) = lerp(a, b, 0.3) / sqrt(0.7^2 + 0.3^2)``;
- ResNet block: ``h = conv2(mp_silu(conv1(mp_silu(pixnorm(x)))))``, shortcut a
  1x1 conv (``nin_shortcut``) when the width changes, output ``mp_sum(shortcut, h)``;
- attention (middle only, one head): a 1x1 ``qkv`` conv whose channels are
  **interleaved** (channel ``3c + j`` is q, k, v for j = 0, 1, 2), q/k/v
  pixel-normalised over channels, softmax(q k^T / sqrt(C)) v, ``proj_out``,
  ``mp_sum(x, .)``;
- activations clamped to +-256 after every block;
- ``conv_out`` scaled by ``learnable_gain + 1``.

Encoder (widths ``h, 2h, 4h`` with ``h = hidden_dim`` = 384 in the real model):
``conv_in`` -> level 0 (2 blocks) -> ``down.0.downsample`` (1x1 conv, average
pool by 2, 1x1 conv) -> level 1 (2 blocks) -> level 2 (2 blocks) -> middle
(block, attention, block) -> mp_silu -> ``conv_out`` to 40 channels = mean and
log-variance (clamped to [-30, 20]). Decoder: ``conv_in`` from 20 channels ->
middle -> levels 2, 1, 0 (3 blocks each), nearest x2 upsampling + conv k3 after
level 1 -> mp_silu -> ``conv_out`` to 80 bins. The mel is normalised per bin with
the 80-d ``data_mean`` / ``data_std`` before encoding and un-normalised after
decoding.

**Weights.** Upstream checkpoints (``v1-16.pth``) hold the raw weights; after
loading, every conv weight is replaced by
``w_o / (1e-4 + ||w_o|| / sqrt(fan_in)) / sqrt(fan_in)`` per output channel
(:func:`normalize_conv_weights`; upstream calls it ``remove_weight_norm``).
ComfyUI's MMAudio VAE uses the weights as stored, so files in its layout hold
the normalised weights and are loaded unchanged (:func:`load_mmaudio_vae`).
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..weightfile import read_state_dict, state_dict_mismatch

DATA_MEAN_80D = (
    -1.6058, -1.3676, -1.2520, -1.2453, -1.2078, -1.2224, -1.2419, -1.2439, -1.2922, -1.2927,
    -1.3170, -1.3543, -1.3401, -1.3836, -1.3907, -1.3912, -1.4313, -1.4152, -1.4527, -1.4728,
    -1.4568, -1.5101, -1.5051, -1.5172, -1.5623, -1.5373, -1.5746, -1.5687, -1.6032, -1.6131,
    -1.6081, -1.6331, -1.6489, -1.6489, -1.6700, -1.6738, -1.6953, -1.6969, -1.7048, -1.7280,
    -1.7361, -1.7495, -1.7658, -1.7814, -1.7889, -1.8064, -1.8221, -1.8377, -1.8417, -1.8643,
    -1.8857, -1.8929, -1.9173, -1.9379, -1.9531, -1.9673, -1.9824, -2.0042, -2.0215, -2.0436,
    -2.0766, -2.1064, -2.1418, -2.1855, -2.2319, -2.2767, -2.3161, -2.3572, -2.3954, -2.4282,
    -2.4659, -2.5072, -2.5552, -2.6074, -2.6584, -2.7107, -2.7634, -2.8266, -2.8981, -2.9673,
)
DATA_STD_80D = (
    1.0291, 1.0411, 1.0043, 0.9820, 0.9677, 0.9543, 0.9450, 0.9392, 0.9343, 0.9297,
    0.9276, 0.9263, 0.9242, 0.9254, 0.9232, 0.9281, 0.9263, 0.9315, 0.9274, 0.9247,
    0.9277, 0.9199, 0.9188, 0.9194, 0.9160, 0.9161, 0.9146, 0.9161, 0.9100, 0.9095,
    0.9145, 0.9076, 0.9066, 0.9095, 0.9032, 0.9043, 0.9038, 0.9011, 0.9019, 0.9010,
    0.8984, 0.8983, 0.8986, 0.8961, 0.8962, 0.8978, 0.8962, 0.8973, 0.8993, 0.8976,
    0.8995, 0.9016, 0.8982, 0.8972, 0.8974, 0.8949, 0.8940, 0.8947, 0.8936, 0.8939,
    0.8951, 0.8956, 0.9017, 0.9167, 0.9436, 0.9690, 1.0003, 1.0225, 1.0381, 1.0491,
    1.0545, 1.0604, 1.0761, 1.0929, 1.1089, 1.1196, 1.1176, 1.1156, 1.1117, 1.1070,
)

SILU_GAIN = 0.596
RESIDUAL_T = 0.3
NORM_EPS = 1e-4
CLIP_ACT = 256.0
LOGVAR_RANGE = (-30.0, 20.0)
CH_MULT = (1, 2, 4)
ENCODER_BLOCKS = 2
DECODER_BLOCKS = 3
DOWN_LEVEL = 0   # the encoder halves the frame rate after this level; the decoder doubles it after level 1


# ------------------------------------------------------------------ magnitude-preserving pieces


def mp_silu(x: torch.Tensor) -> torch.Tensor:
    return F.silu(x) / SILU_GAIN


def mp_sum(a: torch.Tensor, b: torch.Tensor, t: float = RESIDUAL_T) -> torch.Tensor:
    return torch.lerp(a, b, t) / math.sqrt((1 - t) ** 2 + t ** 2)


def pixel_norm(x: torch.Tensor, dim: int = 1, eps: float = NORM_EPS) -> torch.Tensor:
    """``x / (eps + ||x|| / sqrt(n))`` along ``dim`` (norm taken in float32)."""
    n = x.shape[dim]
    rms = torch.linalg.vector_norm(x, dim=dim, keepdim=True, dtype=torch.float32) / math.sqrt(n)
    return x / (rms + eps).to(x.dtype)


def normalize_conv_weight(w: torch.Tensor, eps: float = NORM_EPS) -> torch.Tensor:
    """Checkpoint (raw) MMAudio conv weight -> the weight that runs.

    Per output channel ``o``: ``w_o / (eps + ||w_o|| / sqrt(fan_in)) / sqrt(fan_in)``, with
    ``fan_in = in_channels * kernel``, computed in float32 and cast back.
    """
    w32 = w.to(torch.float32)
    fan_in = w32[0].numel()
    norm = torch.linalg.vector_norm(w32.flatten(1), dim=1) / math.sqrt(fan_in)
    out = w32 / (norm + eps).view(-1, *([1] * (w32.dim() - 1))) / math.sqrt(fan_in)
    return out.to(w.dtype)


def normalize_conv_weights(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """Apply :func:`normalize_conv_weight` to every conv weight (``*.weight``, 3-D) of a VAE state dict."""
    return {k: normalize_conv_weight(v) if k.endswith(".weight") and v.dim() == 3 else v
            for k, v in state_dict.items()}


class MPConv1d(nn.Module):
    """Bias-free conv1d with 'same' padding whose weight is already normalised (see module docstring)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size))
        nn.init.normal_(self.weight, std=1.0 / math.sqrt(in_channels * kernel_size))

    def forward(self, x: torch.Tensor, gain: torch.Tensor | float = 1.0) -> torch.Tensor:
        w = self.weight * gain if not (isinstance(gain, float) and gain == 1.0) else self.weight
        return F.conv1d(x, w.to(x.dtype), padding=w.shape[-1] // 2)


class ResBlock(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, kernel_size: int = 3):
        super().__init__()
        self.conv1 = MPConv1d(in_dim, out_dim, kernel_size)
        self.conv2 = MPConv1d(out_dim, out_dim, kernel_size)
        if in_dim != out_dim:
            self.nin_shortcut = MPConv1d(in_dim, out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pixel_norm(x)
        h = self.conv2(mp_silu(self.conv1(mp_silu(x))))
        skip = self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x
        return mp_sum(skip, h)


class SelfAttention(nn.Module):
    """Single-head attention over time with interleaved q/k/v channels."""

    def __init__(self, channels: int):
        super().__init__()
        self.qkv = MPConv1d(channels, 3 * channels, 1)
        self.proj_out = MPConv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, L = x.shape
        qkv = pixel_norm(self.qkv(x).view(B, C, 3, L), dim=1)       # channel 3c + j -> [c, j]
        q, k, v = (qkv[:, :, j].transpose(1, 2)[:, None] for j in range(3))  # [B, 1, L, C]
        h = F.scaled_dot_product_attention(q, k, v)[:, 0].transpose(1, 2)    # [B, C, L]
        return mp_sum(x, self.proj_out(h))


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = MPConv1d(channels, channels, 1)
        self.conv2 = MPConv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.avg_pool1d(self.conv1(x), kernel_size=2, stride=2))


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = MPConv1d(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.repeat_interleave(2, dim=-1))


def _level(blocks: list[nn.Module]) -> nn.Module:
    level = nn.Module()
    level.block = nn.ModuleList(blocks)
    return level


def _middle(channels: int) -> nn.Module:
    mid = nn.Module()
    mid.block_1 = ResBlock(channels, channels)
    mid.attn_1 = SelfAttention(channels)
    mid.block_2 = ResBlock(channels, channels)
    return mid


def _run_middle(mid: nn.Module, h: torch.Tensor) -> torch.Tensor:
    return mid.block_2(mid.attn_1(mid.block_1(h))).clamp(-CLIP_ACT, CLIP_ACT)


class Encoder(nn.Module):
    def __init__(self, in_dim: int, hidden_dim: int, embed_dim: int):
        super().__init__()
        widths = [hidden_dim * m for m in CH_MULT]
        self.conv_in = MPConv1d(in_dim, hidden_dim, 3)
        self.down = nn.ModuleList()
        c = hidden_dim
        for i, w in enumerate(widths):
            blocks = []
            for _ in range(ENCODER_BLOCKS):
                blocks.append(ResBlock(c, w))
                c = w
            level = _level(blocks)
            if i == DOWN_LEVEL:
                level.downsample = Downsample(c)
            self.down.append(level)
        self.mid = _middle(c)
        self.conv_out = MPConv1d(c, 2 * embed_dim, 3)
        self.learnable_gain = nn.Parameter(torch.zeros([]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            for block in level.block:
                h = block(h).clamp(-CLIP_ACT, CLIP_ACT)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = _run_middle(self.mid, h)
        return self.conv_out(mp_silu(h), gain=self.learnable_gain + 1)


class Decoder(nn.Module):
    def __init__(self, out_dim: int, hidden_dim: int, embed_dim: int):
        super().__init__()
        widths = [hidden_dim * m for m in CH_MULT]
        c = widths[-1]
        self.conv_in = MPConv1d(embed_dim, c, 3)
        self.mid = _middle(c)
        levels = []
        for i in reversed(range(len(widths))):   # built from the deepest level, stored by level index
            blocks = []
            for _ in range(DECODER_BLOCKS):
                blocks.append(ResBlock(c, widths[i]))
                c = widths[i]
            level = _level(blocks)
            if i == DOWN_LEVEL + 1:
                level.upsample = Upsample(c)
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.conv_out = MPConv1d(c, out_dim, 3)
        self.learnable_gain = nn.Parameter(torch.zeros([]))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = _run_middle(self.mid, self.conv_in(z))
        for level in reversed(self.up):
            for block in level.block:
                h = block(h).clamp(-CLIP_ACT, CLIP_ACT)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(mp_silu(h), gain=self.learnable_gain + 1)


class MMAudioVAE(nn.Module):
    """MMAudio mel VAE; ``MMAudioVAE()`` is the 16 kHz model (80 bins, 20 latent channels, width 384).

    ``encode_moments(mel [B, 80, T]) -> [B, 40, T/2]`` (mean || log-variance),
    ``encode(mel) -> [B, 20, T/2]`` (posterior mean, or a sample with ``sample=True``),
    ``decode(z [B, 20, L]) -> mel [B, 80, 2L]``. ``T`` must be even.
    Weights must already be normalised: load files with :func:`load_mmaudio_vae`.
    """

    time_downsample = 2

    def __init__(self, data_dim: int = 80, embed_dim: int = 20, hidden_dim: int = 384):
        super().__init__()
        if data_dim != len(DATA_MEAN_80D):
            raise ValueError(f"MMAudioVAE: only the 16 kHz model (data_dim 80) is supported, got data_dim={data_dim}")
        self.data_dim, self.embed_dim, self.hidden_dim = data_dim, embed_dim, hidden_dim
        self.register_buffer("data_mean", torch.tensor(DATA_MEAN_80D, dtype=torch.float32).view(1, -1, 1))
        self.register_buffer("data_std", torch.tensor(DATA_STD_80D, dtype=torch.float32).view(1, -1, 1))
        self.encoder = Encoder(data_dim, hidden_dim, embed_dim)
        self.decoder = Decoder(data_dim, hidden_dim, embed_dim)

    def _check(self, x, channels: int, what: str, even: bool):
        if not torch.is_tensor(x) or x.dim() != 3 or x.shape[1] != channels or x.shape[-1] < 1:
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"MMAudioVAE.{what}: expected a tensor [B, {channels}, T], got {shape}.")
        if even and x.shape[-1] % 2:
            raise ValueError(f"MMAudioVAE.{what}: the mel needs an even number of frames (the encoder halves "
                             f"the frame rate), got {x.shape[-1]}; drop or pad one frame.")

    def normalize(self, mel: torch.Tensor) -> torch.Tensor:
        return (mel - self.data_mean.to(mel.dtype)) / self.data_std.to(mel.dtype)

    def unnormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.data_std.to(x.dtype) + self.data_mean.to(x.dtype)

    def encode_moments(self, mel: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """``mel [B, 80, T]`` -> ``[B, 40, T/2]``: latent mean (first 20) and raw log-variance (last 20)."""
        self._check(mel, self.data_dim, "encode", even=True)
        return self.encoder(self.normalize(mel) if normalize else mel)

    def posterior(self, mel: torch.Tensor, normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, std)``, each ``[B, 20, T/2]``; the log-variance is clamped to [-30, 20] first."""
        mean, logvar = self.encode_moments(mel, normalize).chunk(2, dim=1)
        return mean, torch.exp(0.5 * logvar.clamp(*LOGVAR_RANGE))

    def encode(self, mel: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None,
               normalize: bool = True) -> torch.Tensor:
        """Latent ``[B, 20, T/2]``: the posterior mean (what Ovi feeds the DiT) or, with ``sample``, a draw."""
        mean, std = self.posterior(mel, normalize)
        if not sample:
            return mean
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + std * noise

    def decode(self, z: torch.Tensor, unnormalize: bool = True) -> torch.Tensor:
        """Latent ``[B, 20, L]`` -> log10 mel ``[B, 80, 2L]``."""
        self._check(z, self.embed_dim, "decode", even=False)
        out = self.decoder(z)
        return self.unnormalize(out) if unnormalize else out


# ------------------------------------------------------------------ loading

COMFY_PREFIX = "vae."  # ComfyUI's AudioAutoencoder: vae.* (normalised), vocoder.*, mel_converter.*


def mmaudio_vae_state_dict(file_sd: Mapping[str, torch.Tensor], normalized: bool | None = None,
                           source: str = "MMAudio VAE weights") -> tuple[dict, dict]:
    """Turn a file's tensors into a state dict for :class:`MMAudioVAE` (normalised weights).

    Accepted layouts:

    - upstream (``v1-16.pth``): ``encoder.*``, ``decoder.*``, ``data_mean``, ``data_std``;
      raw weights, normalised here;
    - ComfyUI (one file with the vocoder): ``vae.encoder.*``, ``vae.decoder.*``, ``vae.data_*``
      next to ``vocoder.*`` and ``mel_converter.*``; weights used as stored.

    ``normalized`` overrides the layout's default (``True``: weights are already the ones that run).
    ``data_mean`` / ``data_std`` fall back to the built-in constants when absent.
    Returns ``(state_dict, info)`` where ``info`` has ``layout`` and ``normalized``.
    """
    keys = list(file_sd)
    if any(k.startswith(COMFY_PREFIX + "encoder.") or k.startswith(COMFY_PREFIX + "decoder.") for k in keys):
        layout, default_norm = "comfyui", True
        sd = {k[len(COMFY_PREFIX):]: v for k, v in file_sd.items() if k.startswith(COMFY_PREFIX)}
    elif any(k.startswith("encoder.") or k.startswith("decoder.") for k in keys):
        layout, default_norm = "upstream", False
        sd = dict(file_sd)
    else:
        raise ValueError(f"{source}: no MMAudio VAE tensors found (expected keys like 'encoder.conv_in.weight' "
                         f"or ComfyUI's 'vae.encoder.conv_in.weight'); first keys: {keys[:5]}. Pass MMAudio's "
                         "v1-16.pth (16 kHz) or ComfyUI's MMAudio VAE file.")
    normalized = default_norm if normalized is None else bool(normalized)
    if not normalized:
        sd = normalize_conv_weights(sd)
    return sd, {"layout": layout, "normalized": normalized}


def load_mmaudio_vae(path_or_sd, normalized: bool | None = None, hidden_dim: int | None = None,
                     device="cpu", dtype=torch.float32) -> MMAudioVAE:
    """Build an :class:`MMAudioVAE` from a file (safetensors or ``.pth`` via ``weights_only``) or a dict.

    The width is read from ``encoder.conv_in.weight`` unless ``hidden_dim`` is given.
    Every model tensor must be present with its shape (``data_mean``/``data_std`` may be absent).
    """

    source = str(path_or_sd) if not isinstance(path_or_sd, Mapping) else "MMAudio VAE state dict"
    file_sd = read_state_dict(path_or_sd, what="MMAudio VAE")
    sd, info = mmaudio_vae_state_dict(file_sd, normalized, source)
    if hidden_dim is None:
        if "encoder.conv_in.weight" not in sd:
            raise ValueError(f"{source}: 'encoder.conv_in.weight' is missing; pass hidden_dim= to build the "
                             "model (a decoder-only file is not supported).")
        hidden_dim = int(sd["encoder.conv_in.weight"].shape[0])
    with torch.device("meta"):
        model = MMAudioVAE(hidden_dim=hidden_dim)
    expected = model.state_dict()
    for name, values in (("data_mean", DATA_MEAN_80D), ("data_std", DATA_STD_80D)):
        if name not in sd:
            sd[name] = torch.tensor(values, dtype=torch.float32).view(1, -1, 1)
    mismatch = state_dict_mismatch(sd, expected)
    if mismatch:
        raise ValueError(f"{source}: does not match the MMAudio 16 kHz VAE (width {hidden_dim}): "
                         f"{mismatch}.")
    cast = {k: v.to(device=device, dtype=torch.float32 if k.startswith("data_") else dtype) for k, v in sd.items()}
    model.load_state_dict(cast, strict=True, assign=True)
    model.load_info = info
    return model.eval()
