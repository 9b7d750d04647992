"""The ceiling of partner use: how much of one modality's latent a small direct regressor
predicts from the partner's *true* latent, and how much worse it does given another clip's.

A two-layer MLP maps, for every audio token, the video latents of the latent frames within
``--context`` frames of its time (V2A direction) to that audio latent; the reverse MLP maps the
audio tokens around each video latent frame to that frame's latent (A2V). Trained on world
training clips, scored on held-out clips: ``gain`` = MSE with the next held-out clip's partner /
MSE with the clip's own, overall and per audio channel group. A small ceiling means the codec
latents hide the events, whatever the DiT does.

    python scripts/ceiling.py --split ambient --seconds 2 --train 1024
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harmony.codecs import load_codecs  # noqa: E402
from harmony.interaction import audio_time  # noqa: E402
from harmony.probe import heldout_clips  # noqa: E402
from harmony.train import LatentPool  # noqa: E402


def windows(src: torch.Tensor, centres: torch.Tensor, context: int) -> torch.Tensor:
    """``src [B, N, C]`` gathered at ``round(centres) + k`` for ``|k| <= context`` (clamped)
    -> ``[B, len(centres), (2 context + 1) C]``."""
    idx = centres.round().long()[:, None] + torch.arange(-context, context + 1)[None, :]
    idx = idx.clamp(0, src.shape[1] - 1)
    return src[:, idx].flatten(2)


def pairs(v: torch.Tensor, a: torch.Tensor, context_frames: int):
    """V2A inputs/targets and A2V inputs/targets for latents ``v [B,C,F,h,w]``, ``a [B,L,20]``."""
    b, _, f = v.shape[:3]
    frames = v.permute(0, 2, 1, 3, 4).flatten(2)                    # [B, F, C*h*w]
    tau = audio_time(a.shape[1], f).float()                          # audio token -> frame time
    x_v2a = windows(frames, tau, context_frames)                     # [B, L, ...]
    per_frame = a.shape[1] / f
    x_a2v = windows(a, torch.arange(f) * per_frame, round(context_frames * per_frame))
    return (x_v2a, a), (x_a2v, frames)


def fit(x: torch.Tensor, y: torch.Tensor, steps: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(x.shape[-1], 256), nn.GELU(), nn.Linear(256, y.shape[-1]))
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=0.05)
    xf, yf = x.flatten(0, 1), y.flatten(0, 1)
    g = torch.Generator().manual_seed(seed)
    for step in range(steps):
        i = torch.randint(0, len(xf), (512,), generator=g)
        loss = ((net(xf[i]) - yf[i]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@torch.no_grad()
def score(net, x, y, other, groups=None) -> dict:
    own = (net(x) - y) ** 2
    oth = (net(x[other]) - y) ** 2
    out = {"gain": float(oth.mean() / own.mean()), "mse_own": float(own.mean()),
           "var": float(((y - y.mean(dim=(0, 1))) ** 2).mean())}
    for name, sl in (groups or {}).items():
        out[f"gain_{name}"] = float(oth[..., sl].mean() / own[..., sl].mean())
        out[f"r2_{name}"] = float(1 - own[..., sl].mean() / ((y[..., sl] - y[..., sl].mean(dim=(0, 1))) ** 2).mean())
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", default="ambient")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--train", type=int, default=1024, help="training clips")
    ap.add_argument("--heldout", type=int, default=32, help="held-out clips")
    ap.add_argument("--context", type=int, default=2, help="partner frames either side")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--codecs", default=None, help="codec file (default: the bundled tiny codecs)")
    ap.add_argument("--out", default=None, help="write the result as JSON here")
    a = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.time()
    codecs = load_codecs(a.codecs)
    pool = LatentPool(codecs, a.seconds, a.train, seed=11, split=a.split)
    clips, other = heldout_clips(a.heldout, a.seconds, splits=a.split)
    with torch.no_grad():
        hv = codecs[0].encode(torch.stack([torch.from_numpy(c.frames) for c in clips]))
        ha = codecs[1].encode(torch.stack([torch.from_numpy(c.wave) for c in clips]))
    (tr_v2a, tr_a), (tr_a2v, tr_f) = pairs(pool.data["video"], pool.data["audio"], a.context)
    (te_v2a, te_a), (te_a2v, te_f) = pairs(hv, ha, a.context)
    groups = {"loudness": slice(0, 4), "pitch_voicing": slice(4, 6), "bands": slice(6, 20)}
    v2a = score(fit(tr_v2a, tr_a, a.steps), te_v2a, te_a, other, groups)
    a2v = score(fit(tr_a2v, tr_f, a.steps), te_a2v, te_f, other)
    res = {"split": a.split, "seconds": a.seconds, "train_clips": a.train, "heldout_clips": len(clips),
           "context_frames": a.context, "V2A": v2a, "A2V": a2v, "wall_s": round(time.time() - t0, 1)}
    print(json.dumps(res, indent=1))
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
