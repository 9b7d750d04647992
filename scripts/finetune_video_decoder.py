"""Fine-tune only the video codec's decoder, keeping its encoder and latent statistics.

Trains on training seeds and checks on tuning seeds (``harmony.world.tuning_seeds``),
never on the held-out evaluation seeds. A latent diffusion model is tied to its codec's latent space: retraining the
whole codec would make the shipped model's latents decode to noise. Training
the decoder alone improves the picture while every latent keeps its meaning.

    python scripts/finetune_video_decoder.py --minutes 8 --out harmony/assets/tiny_codecs.safetensors
"""
import argparse
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harmony.codecs.tiny import load_codecs, save_codecs  # noqa: E402
from harmony.codecs.train_toy import _train_clips  # noqa: E402


def psnr(a, b):
    return float(-10 * torch.log10(F.mse_loss(a, b)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--codecs", default=None, help="input codec file (default: the bundled one)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--clips", type=int, default=300)
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--seed-offset", type=int, default=5000)
    a = ap.parse_args()
    torch.manual_seed(0)
    video, audio = load_codecs(a.codecs)
    data = torch.stack([torch.from_numpy(c.frames).mul(255).round().to(torch.uint8)
                        for c in _train_clips(a.clips, 3.0, a.seed_offset)]).permute(0, 1, 4, 2, 3)
    from harmony import world
    held = torch.stack([torch.from_numpy(world.render(world.sample_scene(s, seconds=3.0)).frames)
                        for split in world.SPLITS for s in world.tuning_seeds(split, 2)])
    with torch.no_grad():
        before = psnr(video.decode(video.encode(held)), held)
        enc_before = video.encode(held[:1])
    for p in video.encoder.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(video.decoder.parameters(), lr=a.lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(0)
    n, frames = data.shape[:2]
    t0, step, deadline = time.time(), 0, time.time() + a.minutes * 60
    video.decoder.train()
    while time.time() < deadline:
        frac = (time.time() - t0) / (a.minutes * 60)
        for grp in opt.param_groups:
            grp["lr"] = a.lr * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
        i = torch.randint(0, n, (a.batch,), generator=g)
        f = torch.randint(0, frames - 1, (a.batch,), generator=g)
        pair = torch.stack([data[i, f], data[i, f + 1]], 1).flatten(0, 1).float() / 255
        with torch.no_grad():
            z = video.encode_raw(pair)
        rec = video.decode_raw(z)
        loss = F.mse_loss(rec, pair) + 2.0 * F.mse_loss(rec[1::2] - rec[0::2], pair[1::2] - pair[0::2])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 100 == 0:
            print(f"step {step}  loss {loss.item():.5f}  ({time.time() - t0:.0f}s)", flush=True)
    video.eval()
    with torch.no_grad():
        after = psnr(video.decode(video.encode(held)), held)
        assert torch.equal(video.encode(held[:1]), enc_before), "the encoder must not change"
    print(f"tuning-seed PSNR: {before:.2f} dB -> {after:.2f} dB after {step} decoder-only steps")
    save_codecs(video, audio, a.out, metadata={"decoder_finetune_steps": step,
                                               "tuning_psnr_db": round(after, 2)})
    print(f"wrote {a.out} (encoder and latent statistics unchanged)")


if __name__ == "__main__":
    main()
