"""The Wan2.2 video VAE (used by Wan2.2-TI2V-5B and Ovi), written from its published facts.

48 latent channels; 4x temporal and 16x16 spatial compression (a 2x2 patchify of
the input, then three 2x conv downsamplings). The first frame is encoded alone,
then 4 frames per latent frame: ``F_lat = 1 + (T - 1) // 4``. Encode and decode
run causally chunk by chunk (encode: frames ``[0], [1:5], [5:9], ...``; decode:
one latent frame at a time), with a feature cache: every causal 3-D conv keeps
the last ``CACHE_FRAMES`` input frames of the previous chunk, so the chunked
pass equals one causal pass over the whole clip while holding only one chunk of
activations. Latents are normalised per channel with Wan2.2's 48-d mean/std.

Parameter names and shapes equal the upstream ``WanVAE_`` state dict
(``Wan2.2_VAE.pth``, ComfyUI's ``wan2.2_vae.safetensors``), so real checkpoints
load by key (``load_wan_vae``). The module layout (``encoder.downsamples.N.
downsamples.M.residual.K``, ...) follows those names; the code is our own.

Decoding a long high-resolution clip in one piece needs a lot of memory (the
decoder is 256..1024 channels wide at up to half the output resolution), so
``decode`` can work in overlapping spatial tiles blended linearly
(``tile`` / ``tile_overlap``; :mod:`harmony.codecs.tiling`); ``scripts/wan_vae_memory.py`` prints the peak
memory this needs for a 5 s 720p clip (docs/codecs.md quotes it).
"""
from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..weightfile import read_state_dict
from .contract import WAN22_VAE, frames_for_latents, latents_for_frames
from .tiling import tiled_decode

CACHE_FRAMES = 2       # input frames a causal 3-D conv carries from one chunk to the next
PATCH = 2              # the input is patchified 2x2 before the encoder (3 -> 12 channels)

#: Wan2.2's per-channel latent statistics (constants of the upstream wrapper, not checkpoint tensors).
LATENT_MEAN = (
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557, -0.1382, 0.0542, 0.2813, 0.0891,
    0.1570, -0.0098, 0.0375, -0.1825, -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230, -0.0313, -0.1649, 0.0117, 0.0723,
    -0.2839, -0.2083, -0.0520, 0.3748, 0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
)
LATENT_STD = (
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013, 0.8158, 1.0344, 0.5894, 1.0901,
    0.6885, 0.6165, 0.8454, 0.4978, 0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093, 0.5709, 0.6065, 0.6415, 0.4944,
    0.5726, 1.2042, 0.5458, 1.6887, 0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
)

#: the real configuration (Wan2.2_VAE.pth); ``dec_dim`` is wider than ``dim``.
WAN22_CONFIG = dict(dim=160, dec_dim=256, z_dim=48, dim_mult=(1, 2, 4, 4), num_res_blocks=2,
                    temporal_downsample=(False, True, True))


# --------------------------------------------------------------------------- #
# building blocks
# --------------------------------------------------------------------------- #

class CausalConv3d(nn.Conv3d):
    """3-D conv, causal in time: the time padding (``2 * pad_t`` frames) goes in front only,
    height/width are padded symmetrically.

    With a ``cache`` dict the conv reads the input frames it kept from the
    previous chunk (instead of that many zero frames) and stores the last
    ``CACHE_FRAMES`` frames of the history it has now seen.
    """

    def __init__(self, c_in: int, c_out: int, kernel, stride=1, padding=0):
        pad = (padding,) * 3 if isinstance(padding, int) else tuple(padding)
        super().__init__(c_in, c_out, kernel, stride=stride, padding=0)
        self.front = 2 * pad[0]
        self.space = (pad[2], pad[2], pad[1], pad[1])

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        prev = None
        if self.front and cache is not None:
            prev = cache.get(self)
            if prev is not None:
                prev = prev.to(x.device)
            keep = x[:, :, -CACHE_FRAMES:]
            if keep.shape[2] < CACHE_FRAMES and prev is not None:
                keep = torch.cat([prev[:, :, keep.shape[2] - CACHE_FRAMES:], keep], dim=2)
            cache[self] = keep.clone()
        n_prev = 0 if prev is None else prev.shape[2]
        front = max(0, self.front - n_prev)
        pw, ph = self.space[0], self.space[2]
        if not (front or n_prev or pw or ph):
            return super().forward(x)
        # one padded buffer: [zeros | cached frames | x] in time, zero borders in space
        b, c, t, h, w = x.shape
        buf = x.new_zeros(b, c, front + n_prev + t, h + 2 * ph, w + 2 * pw)
        if n_prev:
            buf[:, :, front:front + n_prev, ph:ph + h, pw:pw + w] = prev
        buf[:, :, front + n_prev:, ph:ph + h, pw:pw + w] = x
        return super().forward(buf)


class RMSNorm(nn.Module):
    """``normalize(x over channels) * sqrt(C) * gamma`` (L2 normalisation, eps 1e-12 on the norm)."""

    def __init__(self, channels: int, spatial_dims: int = 3):
        super().__init__()
        self.scale = channels ** 0.5
        self.gamma = nn.Parameter(torch.ones(channels, *([1] * spatial_dims)))

    def forward(self, x):
        return F.normalize(x, dim=1).mul_(self.scale).mul_(self.gamma)


def _per_frame(fn, x: torch.Tensor) -> torch.Tensor:
    """Apply a 2-D map ``fn`` to every frame of ``x [B, C, T, H, W]``."""
    b, t = x.shape[0], x.shape[2]
    y = fn(x.transpose(1, 2).flatten(0, 1))
    return y.unflatten(0, (b, t)).transpose(1, 2)


class ResidualBlock(nn.Module):
    """``x -> shortcut(x) + conv(SiLU(norm(conv(SiLU(norm(x))))))`` with causal 3x3x3 convs."""

    def __init__(self, c_in: int, c_out: int, dropout: float = 0.0):
        super().__init__()
        self.residual = nn.Sequential(
            RMSNorm(c_in), nn.SiLU(inplace=True), CausalConv3d(c_in, c_out, 3, padding=1),
            RMSNorm(c_out), nn.SiLU(inplace=True), nn.Dropout(dropout), CausalConv3d(c_out, c_out, 3, padding=1),
        )
        self.shortcut = CausalConv3d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, cache):
        skip = self.shortcut(x)
        for layer in self.residual:
            x = layer(x, cache) if isinstance(layer, CausalConv3d) else layer(x)
        return x + skip


class AttentionBlock(nn.Module):
    """Single-head self-attention over the pixels of each frame (no attention across time)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = RMSNorm(channels, spatial_dims=2)
        self.to_qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def _frame(self, x):
        n, c, h, w = x.shape
        tokens = self.to_qkv(self.norm(x)).flatten(2).transpose(1, 2)       # [n, h*w, 3c]
        q, k, v = (t.unsqueeze(1) for t in tokens.chunk(3, dim=-1))       # q | k | v = channel thirds
        y = F.scaled_dot_product_attention(q, k, v).squeeze(1)           # [n, h*w, c]
        return self.proj(y.transpose(1, 2).reshape(n, c, h, w))

    def forward(self, x, cache=None):
        return x + _per_frame(self._frame, x)


class _NearestUp2x(nn.Module):
    """2x nearest-exact spatial upsampling, computed in float32 (parameter-free)."""

    def forward(self, x):
        return F.interpolate(x.float(), scale_factor=2.0, mode="nearest-exact").to(x.dtype)


class Resample(nn.Module):
    """Spatial 2x down/upsampling per frame, optionally with a 2x temporal step.

    ``downsample3d``: after the spatial step, a stride-2 time conv over
    ``[last frame of the previous chunk, this chunk]``; the first chunk (one
    frame) is passed through unchanged. ``upsample3d``: before the spatial step,
    a causal time conv doubles the channels and the two halves become frames
    ``2t`` and ``2t+1``; the first latent frame is not doubled, and the time conv's
    history starts after it (zeros, not frame 0).
    """

    def __init__(self, channels: int, mode: str):
        super().__init__()
        self.mode = mode
        if mode in ("upsample2d", "upsample3d"):
            self.resample = nn.Sequential(_NearestUp2x(), nn.Conv2d(channels, channels, 3, padding=1))
            if mode == "upsample3d":
                self.time_conv = CausalConv3d(channels, 2 * channels, (3, 1, 1), padding=(1, 0, 0))
        elif mode in ("downsample2d", "downsample3d"):
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(channels, channels, 3, stride=2))
            if mode == "downsample3d":
                self.time_conv = CausalConv3d(channels, channels, (3, 1, 1), stride=(2, 1, 1))
        else:
            raise ValueError(f"Resample: unknown mode {mode!r}")

    def forward(self, x, cache):
        if self.mode == "upsample3d":
            if self in cache:
                b, c, t, h, w = x.shape
                y = self.time_conv(x, cache)                                   # [b, 2c, t, h, w]
                x = y.view(b, 2, c, t, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b, c, 2 * t, h, w)
            else:
                cache[self] = True                                             # first chunk seen
        x = _per_frame(self.resample, x)
        if self.mode == "downsample3d":
            last = x[:, :, -1:].clone()
            if self in cache:
                x = self.time_conv(torch.cat([cache[self].to(x.device), x], dim=2))
            cache[self] = last
        return x


class AvgDown3D(nn.Module):
    """Parameter-free shortcut: fold ``factor_t x factor_s x factor_s`` blocks into channels
    (channel-major), then average groups of them down to ``c_out`` channels. Time is zero-padded
    in front to a multiple of ``factor_t``."""

    def __init__(self, c_in: int, c_out: int, factor_t: int, factor_s: int = 1):
        super().__init__()
        self.c_out, self.ft, self.fs = c_out, factor_t, factor_s
        self.group = c_in * factor_t * factor_s * factor_s // c_out

    def forward(self, x):
        ft, fs = self.ft, self.fs
        x = F.pad(x, (0, 0, 0, 0, (-x.shape[2]) % ft, 0))
        b, c, t, h, w = x.shape
        x = x.view(b, c, t // ft, ft, h // fs, fs, w // fs, fs).permute(0, 1, 3, 5, 7, 2, 4, 6)
        return x.reshape(b, self.c_out, self.group, t // ft, h // fs, w // fs).mean(2)


class DupUp3D(nn.Module):
    """Parameter-free shortcut, the inverse fold of ``AvgDown3D``: repeat each channel, then unfold
    channels into ``factor_t x factor_s x factor_s`` blocks. On the first chunk the first
    ``factor_t - 1`` frames are dropped (the first latent frame is one video frame)."""

    def __init__(self, c_in: int, c_out: int, factor_t: int, factor_s: int = 1):
        super().__init__()
        self.c_out, self.ft, self.fs = c_out, factor_t, factor_s
        self.repeats = c_out * factor_t * factor_s * factor_s // c_in

    def forward(self, x, first_chunk: bool):
        ft, fs = self.ft, self.fs
        b, _, t, h, w = x.shape
        x = x.repeat_interleave(self.repeats, dim=1).view(b, self.c_out, ft, fs, fs, t, h, w)
        x = x.permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(b, self.c_out, t * ft, h * fs, w * fs)
        return x[:, :, ft - 1:] if first_chunk else x


class DownBlock(nn.Module):
    """``num_res_blocks`` residual blocks (+ a Resample), plus an ``AvgDown3D`` shortcut."""

    def __init__(self, c_in, c_out, dropout, num_res_blocks, temporal: bool, down: bool):
        super().__init__()
        self.avg_shortcut = AvgDown3D(c_in, c_out, 2 if temporal else 1, 2 if down else 1)
        blocks = [ResidualBlock(c_in if i == 0 else c_out, c_out, dropout) for i in range(num_res_blocks)]
        if down:
            blocks.append(Resample(c_out, "downsample3d" if temporal else "downsample2d"))
        self.downsamples = nn.Sequential(*blocks)

    def forward(self, x, cache):
        skip = self.avg_shortcut(x)
        for block in self.downsamples:
            x = block(x, cache)
        return x + skip


class UpBlock(nn.Module):
    """``num_res_blocks`` residual blocks (+ a Resample), plus a ``DupUp3D`` shortcut when it upsamples."""

    def __init__(self, c_in, c_out, dropout, num_res_blocks, temporal: bool, up: bool):
        super().__init__()
        self.avg_shortcut = DupUp3D(c_in, c_out, 2 if temporal else 1, 2) if up else None
        blocks = [ResidualBlock(c_in if i == 0 else c_out, c_out, dropout) for i in range(num_res_blocks)]
        if up:
            blocks.append(Resample(c_out, "upsample3d" if temporal else "upsample2d"))
        self.upsamples = nn.Sequential(*blocks)

    def forward(self, x, cache, first_chunk: bool):
        y = x
        for block in self.upsamples:
            y = block(y, cache)
        return y if self.avg_shortcut is None else y + self.avg_shortcut(x, first_chunk)


def _head(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(RMSNorm(c_in), nn.SiLU(inplace=True), CausalConv3d(c_in, c_out, 3, padding=1))


def _run_head(head: nn.Sequential, x, cache):
    for layer in head:
        x = layer(x, cache) if isinstance(layer, CausalConv3d) else layer(x)
    return x


class Encoder3d(nn.Module):
    """Patchified video ``[B, 12, T, H/2, W/2]`` -> ``[B, 2*z_dim, F, H/16, W/16]`` (mean | log-variance)."""

    def __init__(self, dim, z2, dim_mult, num_res_blocks, temporal_downsample, dropout=0.0):
        super().__init__()
        dims = [dim * m for m in (1, *dim_mult)]
        self.conv1 = CausalConv3d(3 * PATCH * PATCH, dims[0], 3, padding=1)
        last = len(dim_mult) - 1
        self.downsamples = nn.Sequential(*[
            DownBlock(dims[i], dims[i + 1], dropout, num_res_blocks,
                      temporal=bool(temporal_downsample[i]) if i < len(temporal_downsample) else False,
                      down=i != last)
            for i in range(len(dim_mult))])
        c = dims[-1]
        self.middle = nn.Sequential(ResidualBlock(c, c, dropout), AttentionBlock(c), ResidualBlock(c, c, dropout))
        self.head = _head(c, z2)

    def forward(self, x, cache):
        x = self.conv1(x, cache)
        for block in self.downsamples:
            x = block(x, cache)
        for block in self.middle:
            x = block(x, cache)
        return _run_head(self.head, x, cache)


class Decoder3d(nn.Module):
    """Latent ``[B, z_dim, F, h, w]`` -> patchified video ``[B, 12, 1 + 4(F-1), 8h, 8w]``."""

    def __init__(self, dim, z_dim, dim_mult, num_res_blocks, temporal_upsample, dropout=0.0):
        super().__init__()
        dims = [dim * m for m in (dim_mult[-1], *reversed(dim_mult))]
        self.conv1 = CausalConv3d(z_dim, dims[0], 3, padding=1)
        c = dims[0]
        self.middle = nn.Sequential(ResidualBlock(c, c, dropout), AttentionBlock(c), ResidualBlock(c, c, dropout))
        last = len(dim_mult) - 1
        self.upsamples = nn.Sequential(*[
            UpBlock(dims[i], dims[i + 1], dropout, num_res_blocks + 1,
                    temporal=bool(temporal_upsample[i]) if i < len(temporal_upsample) else False,
                    up=i != last)
            for i in range(len(dim_mult))])
        self.head = _head(dims[-1], 3 * PATCH * PATCH)

    def forward(self, x, cache, first_chunk: bool):
        x = self.conv1(x, cache)
        for block in self.middle:
            x = block(x, cache)
        for block in self.upsamples:
            x = block(x, cache, first_chunk)
        return _run_head(self.head, x, cache)


def patchify(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, T, H, W]`` -> ``[B, 4C, T, H/2, W/2]``; channel ``c*4 + 2*dw + dh`` (width offset first)."""
    b, c, t, h, w = x.shape
    x = x.view(b, c, t, h // PATCH, PATCH, w // PATCH, PATCH)            # b c t h dh w dw
    return x.permute(0, 1, 6, 4, 2, 3, 5).reshape(b, c * PATCH * PATCH, t, h // PATCH, w // PATCH)


def unpatchify(x: torch.Tensor) -> torch.Tensor:
    """Inverse of ``patchify``."""
    b, c4, t, h, w = x.shape
    c = c4 // (PATCH * PATCH)
    x = x.view(b, c, PATCH, PATCH, t, h, w)                               # b c dw dh t h w
    return x.permute(0, 1, 4, 5, 3, 6, 2).reshape(b, c, t, h * PATCH, w * PATCH)


# --------------------------------------------------------------------------- #
# the VAE
# --------------------------------------------------------------------------- #

class WanVAE(nn.Module):
    """The Wan2.2 VAE with the codec interface of ``toy_video.VideoCodec``.

    Codec interface (what the pipeline calls):

    - ``encode(frames)``: ``frames [B, T, H, W, 3]`` float in 0..1, ``T = 4k + 1``,
      ``H, W`` multiples of 16 -> normalised latent ``[B, 48, 1 + (T-1)//4, H/16, W/16]``
      (the posterior mean; the log-variance is dropped, as upstream does).
    - ``decode(latent)``: ``[B, 48, F, h, w]`` -> ``frames [B, 1 + 4(F-1), 16h, 16w, 3]``
      clamped to 0..1. Tiled spatially when the latent is larger than ``tile``
      (``tile=None`` uses ``self.tile``; ``tile=0`` disables tiling).
    - attributes ``latent_channels`` (48), ``spatial_stride`` (16),
      ``temporal_stride`` (4), ``fps`` (24, Wan2.2-TI2V-5B / Ovi), ``frame_size``
      (704, 704) (``contract.WAN22_VAE``: the codec contract's values).

    Unlike the toy codec, the first latent frame covers one video frame and the
    others four (``frames_for_latents`` / ``latents_for_frames``).

    Lower level, in upstream conventions: ``encode_video(x [B,3,T,H,W] in -1..1)``
    and ``decode_latent(z) -> [B,3,T,H,W]`` unclamped (upstream's wrapper clamps to -1..1).
    """

    latent_channels = WAN22_VAE.latent_channels  # z_dim: a small test VAE may have another
    spatial_stride = WAN22_VAE.spatial_stride
    temporal_stride = WAN22_VAE.temporal_stride
    fps = WAN22_VAE.fps
    frame_size = WAN22_VAE.frame_size

    def __init__(self, dim: int = 160, dec_dim: int = 256, z_dim: int = WAN22_VAE.latent_channels, dim_mult=(1, 2, 4, 4),
                 num_res_blocks: int = 2, temporal_downsample=(False, True, True), dropout: float = 0.0,
                 tile: int = 32, tile_overlap: int = 8):
        super().__init__()
        self.config = dict(dim=dim, dec_dim=dec_dim, z_dim=z_dim, dim_mult=tuple(dim_mult),
                           num_res_blocks=num_res_blocks, temporal_downsample=tuple(temporal_downsample))
        self.z_dim = self.latent_channels = z_dim
        self.tile, self.tile_overlap = tile, tile_overlap
        self.encoder = Encoder3d(dim, 2 * z_dim, dim_mult, num_res_blocks, temporal_downsample, dropout)
        self.conv1 = CausalConv3d(2 * z_dim, 2 * z_dim, 1)
        self.conv2 = CausalConv3d(z_dim, z_dim, 1)
        self.decoder = Decoder3d(dec_dim, z_dim, dim_mult, num_res_blocks, tuple(temporal_downsample)[::-1], dropout)
        if z_dim == len(LATENT_MEAN):
            mean, std = torch.tensor(LATENT_MEAN), torch.tensor(LATENT_STD)
        else:
            mean, std = torch.zeros(z_dim), torch.ones(z_dim)
        # not in the state dict (upstream keeps them as wrapper constants)
        self.register_buffer("latent_mean", mean, persistent=False)
        self.register_buffer("latent_std", std, persistent=False)

    # -- frame counts --------------------------------------------------------
    @staticmethod
    def latents_for_frames(num_frames: int) -> int:
        return latents_for_frames(num_frames, WAN22_VAE.temporal_stride)

    @staticmethod
    def frames_for_latents(num_latents: int) -> int:
        return frames_for_latents(num_latents, WAN22_VAE.temporal_stride)

    def _stats(self, like: torch.Tensor):
        mean = self.latent_mean.to(like.device, like.dtype).view(1, -1, 1, 1, 1)
        inv_std = (1.0 / self.latent_std).to(like.device, like.dtype).view(1, -1, 1, 1, 1)
        return mean, inv_std

    # -- upstream-convention maps -----------------------------------------
    @torch.no_grad()
    def encode_video(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, T, H, W]`` in -1..1 -> normalised latent mean ``[B, z, 1 + (T-1)//4, H/16, W/16]``."""
        x = patchify(x)
        cache: dict = {}
        chunks = [x[:, :, :1]] + [x[:, :, i:i + 4] for i in range(1, x.shape[2] - 3, 4)]
        out = torch.cat([self.encoder(c, cache) for c in chunks], dim=2)
        del cache
        mu = self.conv1(out)[:, : self.z_dim]
        mean, inv_std = self._stats(mu)
        return (mu - mean) * inv_std

    @torch.no_grad()
    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latent ``[B, z, F, h, w]`` -> ``[B, 3, 1 + 4(F-1), 16h, 16w]`` (unclamped, ~-1..1)."""
        mean, inv_std = self._stats(z)
        x = self.conv2(z / inv_std + mean)
        b, _, f, h, w = x.shape
        s = self.spatial_stride
        out = torch.empty(b, 3, self.frames_for_latents(f), h * s, w * s, device=x.device, dtype=x.dtype)
        cache: dict = {}
        t = 0
        for i in range(f):   # one latent frame per chunk, written straight into the output
            y = unpatchify(self.decoder(x[:, :, i:i + 1], cache, first_chunk=i == 0))
            out[:, :, t:t + y.shape[2]] = y
            t += y.shape[2]
            del y
        return out

    # -- the codec interface ------------------------------------------------
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames [B, T, H, W, 3]`` 0..1 -> normalised latent ``[B, 48, 1 + (T-1)//4, H/16, W/16]``."""
        if not torch.is_tensor(frames) or frames.dim() != 5 or frames.shape[-1] != 3:
            shape = tuple(frames.shape) if torch.is_tensor(frames) else type(frames).__name__
            raise ValueError(f"WanVAE.encode: frames must be a tensor [B, T, H, W, 3] (RGB, 0..1), got {shape}; "
                             "add a batch dimension with frames[None] for a single clip.")
        _, t, h, w, _ = frames.shape
        s = self.spatial_stride
        if h % s or w % s or h == 0 or w == 0:
            raise ValueError(f"WanVAE.encode: frame size {h}x{w} must be a positive multiple of {s}; "
                             "resize or crop the frames.")
        if t < 1 or (t - 1) % 4:
            raise ValueError(f"WanVAE.encode: {t} frames; the Wan2.2 VAE takes 4k+1 frames (1, 5, ..., 121): "
                             f"trim the clip to {1 + 4 * ((t - 1) // 4)} frames.")
        p = self.conv1.weight
        x = frames.to(device=p.device, dtype=p.dtype).permute(0, 4, 1, 2, 3) * 2 - 1
        return self.encode_video(x)

    def decode(self, latent: torch.Tensor, tile: int | None = None, tile_overlap: int | None = None,
               out_device=None) -> torch.Tensor:
        """Normalised latent ``[B, 48, F, h, w]`` -> ``frames [B, 1 + 4(F-1), 16h, 16w, 3]`` in 0..1.

        Tiles of ``tile x tile`` latents overlapping by ``tile_overlap`` when the
        latent is larger than one tile (``tile=0``: one piece); the frames are
        assembled on ``out_device`` (default: the latent's device).
        """
        if not torch.is_tensor(latent) or latent.dim() != 5 or latent.shape[1] != self.z_dim:
            shape = tuple(latent.shape) if torch.is_tensor(latent) else type(latent).__name__
            raise ValueError(f"WanVAE.decode: latent must be [B, {self.z_dim}, F, h, w], got {shape}.")
        tile = self.tile if tile is None else int(tile)
        overlap = self.tile_overlap if tile_overlap is None else int(tile_overlap)
        p = self.conv2.weight
        z = latent.to(device=p.device, dtype=p.dtype)
        if tile and max(z.shape[-2:]) > tile:
            x = tiled_decode(self.decode_latent, z, self.spatial_stride, tile, min(overlap, tile - 1), out_device)
        else:
            x = self.decode_latent(z)
            x = x if out_device is None else x.to(out_device)
        return x.float().add_(1).mul_(0.5).clamp_(0, 1).permute(0, 2, 3, 4, 1)


# --------------------------------------------------------------------------- #
# loading
# --------------------------------------------------------------------------- #

KEY_PREFIXES = ("first_stage_model.", "vae.", "model.")   # stripped when every key carries one


WEIGHTS_HINT = ("the file people have is Wan2.2_VAE.pth from Wan-AI/Wan2.2-TI2V-5B, or ComfyUI's "
                "wan2.2_vae.safetensors")


def strip_prefix(sd: dict) -> dict:
    """``sd`` without the wrapper prefix (:data:`KEY_PREFIXES`) every key carries, if one does."""
    for p in KEY_PREFIXES:
        if sd and all(k.startswith(p) for k in sd):
            return {k[len(p):]: v for k, v in sd.items()}
    return sd


def config_from_state_dict(sd: dict, where: str = "state dict") -> dict:
    """The ``WanVAE`` constructor arguments implied by a state dict's shapes (Wan2.2 layout only)."""
    need = ("encoder.conv1.weight", "decoder.head.2.weight", "conv2.weight",
            "decoder.upsamples.0.upsamples.0.residual.2.weight")
    missing = [k for k in need if k not in sd]
    if missing:
        hint = ""
        if "decoder.middle.0.residual.0.gamma" in sd:
            hint = " It looks like the Wan2.1 VAE (16 channels, 8x spatial), which this codec does not implement."
        raise ValueError(f"{where} is not a Wan2.2 VAE: missing {missing}.{hint} "
                         "Expected Wan2.2_VAE.pth or wan2.2_vae.safetensors.")
    enc_in = sd["encoder.conv1.weight"].shape[1]
    if enc_in != 3 * PATCH * PATCH:
        raise ValueError(f"{where}: encoder.conv1 takes {enc_in} channels, the Wan2.2 VAE takes 12 "
                         "(a 2x2-patchified RGB frame); this is a different VAE.")
    return dict(dim=int(sd["encoder.conv1.weight"].shape[0]), dec_dim=int(sd["decoder.head.2.weight"].shape[1]),
                z_dim=int(sd["conv2.weight"].shape[0]))


def load_wan_vae(path, device="cpu", dtype=torch.float32, **kwargs) -> WanVAE:
    """Build a ``WanVAE`` from ``Wan2.2_VAE.pth`` / ``wan2.2_vae.safetensors`` (upstream names; a
    ``first_stage_model.`` / ``vae.`` prefix is accepted). Runs in float32 by default, as upstream."""
    sd = strip_prefix(read_state_dict(path, "Wan VAE weights", hint=WEIGHTS_HINT))
    cfg = config_from_state_dict(sd, f"Wan VAE weights {os.fspath(path)!r}")
    with torch.device("meta"):
        vae = WanVAE(**cfg, **kwargs)
    missing, unexpected = vae.load_state_dict(sd, strict=False, assign=True)
    if missing or unexpected:
        raise ValueError(f"Wan VAE weights {os.fspath(path)!r}: keys do not match the Wan2.2 VAE "
                         f"(missing {sorted(missing)[:8]}, unexpected {sorted(unexpected)[:8]}).")
    bad = [k for k, v in vae.state_dict().items() if v.shape != sd[k].shape]
    if bad:
        raise ValueError(f"Wan VAE weights: shape mismatch for {bad[:8]}")
    # the non-persistent statistics were created on meta: rebuild them on the target device
    mean, std = ((torch.tensor(LATENT_MEAN), torch.tensor(LATENT_STD)) if cfg["z_dim"] == len(LATENT_MEAN)
                 else (torch.zeros(cfg["z_dim"]), torch.ones(cfg["z_dim"])))
    vae.latent_mean, vae.latent_std = mean, std
    return vae.to(device=device, dtype=dtype).eval()


__all__ = ["WanVAE", "load_wan_vae", "strip_prefix", "config_from_state_dict",
           "patchify", "unpatchify", "LATENT_MEAN", "LATENT_STD", "WAN22_CONFIG", "CACHE_FRAMES"]
