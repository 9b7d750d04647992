"""The tiny learned video codec: a per-frame conv autoencoder, 64x64x3 -> 16 x 4 x 4.

``VideoCodec``  frames ``[B, F, H, W, 3]`` (0..1) <-> latent ``[B, 16, F, H/16, W/16]``
(spatial stride 16, temporal stride 1, so sync precision is one video frame).
Trained by ``python -m harmony.codecs train`` (``harmony/codecs/train_toy.py``).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..world.scene import FPS  # the toy world's frame rate: the clips this codec is trained on
from .contract import FrameRule


class ResBlock(nn.Module):
    """x + conv(silu(norm(conv(silu(norm(x))))))."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(8, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(F.silu(self.norm2(self.conv1(F.silu(self.norm1(x))))))


def _conv_norm_act(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.GroupNorm(8, c_out), nn.SiLU())


class VideoCodec(FrameRule, nn.Module):
    """Per-frame conv autoencoder: ``[B,F,H,W,3]`` 0..1 <-> ``[B,C,F,H/16,W/16]``.

    Encoder: space-to-depth 2x, then three stride-2 convs (16x spatial in
    all); the decoder mirrors it with nearest upsampling and depth-to-space.
    Frames are coded independently (temporal stride 1). Latents are
    normalised with the stored per-channel ``latent_mean`` / ``latent_std``.
    """

    spatial_stride = 16
    temporal_stride = 1
    fps = FPS
    frame_size = (64, 64)  # (H, W) it was trained on; other multiples of 16 run but are untrained

    def __init__(self, latent_channels: int = 16, width: int = 64):
        super().__init__()
        self.latent_channels = latent_channels
        self.width = width
        w, h = width, width // 2
        self.encoder = nn.Sequential(
            nn.PixelUnshuffle(2),                          # 3 x 64 -> 12 x 32
            _conv_norm_act(12, h),
            _conv_norm_act(h, w, stride=2), ResBlock(w),   # 16
            _conv_norm_act(w, w, stride=2),                # 8
            _conv_norm_act(w, w, stride=2), ResBlock(w),   # 4
            nn.GroupNorm(8, w), nn.SiLU(), nn.Conv2d(w, latent_channels, 1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_channels, w, 3, padding=1), ResBlock(w),      # 4
            nn.Upsample(scale_factor=2), _conv_norm_act(w, w),             # 8
            nn.Upsample(scale_factor=2), _conv_norm_act(w, w), ResBlock(w),  # 16
            nn.Upsample(scale_factor=2), _conv_norm_act(w, h),             # 32
            nn.Conv2d(h, 12, 3, padding=1), nn.PixelShuffle(2),            # 3 x 64
        )
        self.register_buffer("latent_mean", torch.zeros(latent_channels))
        self.register_buffer("latent_std", torch.ones(latent_channels))

    # -- raw (unnormalised) per-frame maps ---------------------------------
    def encode_raw(self, images: torch.Tensor) -> torch.Tensor:
        """``[N,3,H,W]`` 0..1 -> raw latent ``[N,C,H/16,W/16]``."""
        return self.encoder(images * 2 - 1)

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        """Raw latent ``[N,C,h,w]`` -> ``[N,3,16h,16w]`` (unclamped, ~0..1)."""
        return self.decoder(z) * 0.5 + 0.5

    # -- the codec interface ----------------------------------------------
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames [B,F,H,W,3]`` float 0..1 -> normalised latent ``[B,C,F,H/16,W/16]``."""
        if not torch.is_tensor(frames) or frames.dim() != 5 or frames.shape[-1] != 3:
            shape = tuple(frames.shape) if torch.is_tensor(frames) else type(frames).__name__
            raise ValueError(
                f"VideoCodec.encode: frames must be a tensor [B, F, H, W, 3] (RGB, 0..1), got {shape}; "
                "add a batch dimension with frames[None] for a single clip."
            )
        B, Fr, H, W, _ = frames.shape
        s = self.spatial_stride
        if H % s or W % s or H == 0 or W == 0:
            raise ValueError(
                f"VideoCodec.encode: frame size {H}x{W} must be a positive multiple of {s}; "
                "resize the frames (the tiny model uses 64x64)."
            )
        p = self.latent_mean
        x = frames.to(device=p.device, dtype=p.dtype).reshape(B * Fr, H, W, 3).permute(0, 3, 1, 2)
        z = self.encode_raw(x)
        z = (z - self.latent_mean.view(1, -1, 1, 1)) / self.latent_std.view(1, -1, 1, 1)
        return z.reshape(B, Fr, self.latent_channels, H // s, W // s).permute(0, 2, 1, 3, 4).contiguous()

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Normalised latent ``[B,C,F,h,w]`` -> ``frames [B,F,16h,16w,3]`` clamped to 0..1."""
        if not torch.is_tensor(latent) or latent.dim() != 5 or latent.shape[1] != self.latent_channels:
            shape = tuple(latent.shape) if torch.is_tensor(latent) else type(latent).__name__
            raise ValueError(
                f"VideoCodec.decode: latent must be [B, {self.latent_channels}, F, h, w], got {shape}."
            )
        B, C, Fr, h, w = latent.shape
        p = self.latent_mean
        z = latent.to(device=p.device, dtype=p.dtype).permute(0, 2, 1, 3, 4).reshape(B * Fr, C, h, w)
        z = z * self.latent_std.view(1, -1, 1, 1) + self.latent_mean.view(1, -1, 1, 1)
        x = self.decode_raw(z).clamp(0, 1)
        s = self.spatial_stride
        return x.permute(0, 2, 3, 1).reshape(B, Fr, h * s, w * s, 3)
