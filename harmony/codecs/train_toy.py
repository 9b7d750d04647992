"""Training data and training for the tiny codecs (``python -m harmony.codecs train``).

``train_video_codec`` fits the per-frame video autoencoder on rendered world clips;
``fit_audio_stats`` sets the analytic audio codec's latent statistics;
``synthetic_clip`` is a small non-world clip for unit tests.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from .toy_audio import SAMPLE_RATE, AudioCodec
from .toy_video import FPS, VideoCodec


def synthetic_clip(seed: int, seconds: float = 2.0, size: int = 64):
    """A simple non-world clip (moving squares + clicks/tones) for unit tests.

    Returns ``(frames [F,size,size,3], wave [T], onset_times)``.
    """
    g = torch.Generator().manual_seed(seed)
    Fr, T = int(round(seconds * FPS)), int(round(seconds * SAMPLE_RATE))
    bg = torch.rand(3, generator=g) * 0.5
    frames = bg.expand(Fr, size, size, 3).clone()
    for _ in range(int(torch.randint(1, 4, (1,), generator=g))):
        colour = torch.rand(3, generator=g)
        s = int(torch.randint(6, 20, (1,), generator=g))
        x0, y0 = (torch.rand(2, generator=g) * (size - s)).tolist()
        vx, vy = ((torch.rand(2, generator=g) - 0.5) * 3).tolist()
        for f in range(Fr):
            x = int(min(max(x0 + vx * f, 0), size - s))
            y = int(min(max(y0 + vy * f, 0), size - s))
            frames[f, y : y + s, x : x + s] = colour
    wave = torch.zeros(T)
    t = torch.arange(T) / SAMPLE_RATE
    onsets = sorted((torch.rand(3, generator=g) * (seconds - 0.3) + 0.1).tolist())
    for i, on in enumerate(onsets):
        f0 = float(100 + 300 * torch.rand(1, generator=g))
        dt = (t - on).clamp(min=0)
        amp = torch.where(t >= on, torch.exp(-dt * 12), torch.zeros_like(t)) * 0.3
        if i % 2:  # harmonic tone
            sig = sum(torch.sin(2 * math.pi * k * f0 * dt) / k for k in range(1, 6))
        else:      # click / noise burst
            sig = torch.randn(T, generator=g) * torch.exp(-dt * 40)
        wave += amp * sig
    return frames, wave.clamp(-1, 1), onsets


def _train_clips(n: int, seconds: float, offset: int = 0):
    """Rendered world clips of training seeds ``offset .. offset+n-1`` (never held-out ones)."""
    from .. import world

    for seed in range(offset, offset + n):
        assert not world.is_heldout(seed)
        yield world.render(world.sample_scene(seed, seconds=seconds))


def train_video_codec(codec: VideoCodec, minutes: float = 4.0, clips: int = 256, seconds: float = 3.0,
                      batch: int = 24, lr: float = 2e-3, motion_weight: float = 2.0, seed_offset: int = 0,
                      colour_weight: float = 0.0, watch_every: int = 0, log=print) -> dict:
    """Train ``codec`` on world frames for ``minutes`` of wall time; returns stats.

    Loss: MSE on frames + ``motion_weight`` x MSE on frame differences, so the
    small moving parts (mouths, bouncing objects) the sync depends on count.
    ``colour_weight`` W: pixels of one of the world's colours (the objects, the hair: what the
    evaluation's colour F1 reads, ``harmony.metrics``) weigh 1 + W in the frame term.
    ``watch_every`` N > 0: every N steps, log the round trip's PSNR on frames of tuning seeds (never
    trained on, never the reported held-out ones), so a curve shows when the codec stops generalising.
    """
    from ..metrics import colour_pixels
    from ..world.scene import tuning_seeds

    log(f"rendering {clips} training clips ...")
    data = torch.stack([torch.from_numpy(c.frames).mul(255).round().to(torch.uint8)
                        for c in _train_clips(clips, seconds, seed_offset)])
    data = data.permute(0, 1, 4, 2, 3).contiguous()                  # uint8 [N,F,3,H,W]
    N, Fr = data.shape[:2]
    watch = None
    if watch_every > 0:
        from .. import world
        seeds = [s for split in ("speech", "ambient", "complex") for s in tuning_seeds(split, 4)]
        watch = torch.from_numpy(np.concatenate([world.render(world.sample_scene(s, seconds=2.0)).frames[::4]
                                                 for s in seeds])).permute(0, 3, 1, 2).contiguous()
    opt = torch.optim.AdamW(codec.parameters(), lr=lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(0)
    t0, step, deadline = time.time(), 0, time.time() + minutes * 60
    codec.train()
    ema = None
    while time.time() < deadline:
        frac = (time.time() - t0) / (minutes * 60)
        for grp in opt.param_groups:  # 50-step warm-up, then cosine decay over the time budget
            grp["lr"] = lr * min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
        i = torch.randint(0, N, (batch,), generator=g)
        f = torch.randint(0, Fr - 1, (batch,), generator=g)
        pair = torch.stack([data[i, f], data[i, f + 1]], 1).flatten(0, 1).float() / 255  # [2b,3,H,W]
        rec = codec.decode_raw(codec.encode_raw(pair))
        loss_frame = F.mse_loss(rec, pair)
        if colour_weight:
            coloured = torch.from_numpy(colour_pixels(pair.permute(0, 2, 3, 1).numpy()))
            weight = 1 + colour_weight * coloured.float()[:, None]
            loss_frame = (weight * (rec - pair) ** 2).mean() / weight.mean()
        d_rec, d_true = rec[1::2] - rec[0::2], pair[1::2] - pair[0::2]
        loss = loss_frame + motion_weight * F.mse_loss(d_rec, d_true)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema = loss_frame.item() if ema is None else 0.95 * ema + 0.05 * loss_frame.item()
        step += 1
        if step % 50 == 0:
            log(f"step {step}  frame mse {ema:.5f}  psnr {-10 * math.log10(ema):.2f} dB  ({time.time() - t0:.0f}s)")
        if watch is not None and step % watch_every == 0:
            with torch.no_grad():
                err = ((codec.decode_raw(codec.encode_raw(watch)).clamp(0, 1) - watch) ** 2).flatten(1).mean(1)
            log(f"step {step}  tuning frames psnr {(-10 * torch.log10(err.clamp(min=1e-10))).mean():.2f} dB")
    codec.eval()
    # latent statistics -> unit variance
    with torch.no_grad():
        zs = torch.cat([codec.encode_raw(data[j, ::2].float() / 255) for j in range(min(N, 64))])
        codec.latent_mean.copy_(zs.mean((0, 2, 3)))
        codec.latent_std.copy_(zs.std((0, 2, 3)).clamp(min=1e-3))
    return {"steps": step, "train_frame_mse": ema, "clips": N, "seed_offset": seed_offset, "minutes": minutes}


def fit_audio_stats(codec: AudioCodec, clips: int = 64, seconds: float = 3.0) -> None:
    """Set ``latent_mean`` / ``latent_std`` from the features of world clips."""
    waves = torch.stack([torch.from_numpy(c.wave) for c in _train_clips(clips, seconds, offset=100_000)])
    with torch.no_grad():
        z = codec.features(waves).reshape(-1, codec.latent_channels)
    codec.latent_mean.copy_(z.mean(0))
    codec.latent_std.copy_(z.std(0).clamp(min=0.05))
