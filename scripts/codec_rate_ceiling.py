"""How much of an image can a latent of the tiny video codec's rate hold at all? (issue 19, item 3)

The tiny codec keeps 16 numbers per 16x16 RGB patch (a 64x64 frame -> 16 x 4 x 4, 48x fewer
numbers). This measures the round-trip PSNR of the best *linear* code of a given size per patch:
principal components of 16x16 patches, fitted on the codec's own training images (world frames
and out-of-world synthetic stills, ``harmony.world.stills``), applied to the ``i2av_foreign``
control's images (matplotlib's sample data, never fitted on), to held-out stills and to held-out world
frames. A learned
nonlinear codec can beat a linear one, but not by the 5-8 dB between this and the 20 dB target.

    python scripts/codec_rate_ceiling.py -o docs/training/lab/n_rate_ceiling.json

``--after-codec``: the components code what the shipped codec's round trip *misses* (image minus
decode(encode(image))), so a row is the shipped 16 channels plus that many linear numbers per patch:
the rate a codec that keeps the DiT's 16 channels and adds residual channels could reach.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PATCH = 16  # the tiny codec's spatial stride: one latent position per 16x16 patch


def patches(images: np.ndarray) -> np.ndarray:
    """``[N, H, W, 3]`` -> ``[N * H/16 * W/16, 16*16*3]``."""
    n, h, w, _ = images.shape
    x = images.reshape(n, h // PATCH, PATCH, w // PATCH, PATCH, 3).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, PATCH * PATCH * 3)


def psnr_db(images: np.ndarray, mean: np.ndarray, basis: np.ndarray, base=None) -> float:
    """PSNR of the images coded with the first ``len(basis)`` components per patch (clipped to 0..1);
    with ``base`` (the codec's round trip), the components code ``images - base`` on top of it."""
    images = images[None] if images.ndim == 3 else images
    p = patches(images)
    b = np.zeros_like(p) if base is None else patches(base[None] if base.ndim == 3 else base)
    if len(basis) == 0:  # no components: the base alone (the codec's round trip, or the mean patch)
        rec = np.clip(b + (0 if base is not None else mean), 0, 1)
    else:
        rec = np.clip(b + (p - b - mean) @ basis.T @ basis + mean, 0, 1)
    return float(10 * np.log10(1 / max(float(((rec - p) ** 2).mean()), 1e-10)))


def codec_roundtrip(images: np.ndarray) -> np.ndarray:
    """The shipped tiny video codec's round trip of ``[N, H, W, 3]`` images."""
    import torch

    from harmony.codecs import load_codecs

    video = load_codecs()[0]
    with torch.no_grad():
        x = torch.as_tensor(images, dtype=torch.float32)[None]
        return np.concatenate([video.decode(video.encode(x[:, i:i + 256]))[0].clamp(0, 1).numpy()
                               for i in range(0, x.shape[1], 256)])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dims", default="16,32,64,128", help="numbers per 16x16 patch (the tiny codec: 16)")
    ap.add_argument("--after-codec", action="store_true",
                    help="code what the shipped codec's round trip misses, on top of it (its 16 channels + d)")
    ap.add_argument("-o", "--output", default=None, help="also write the table as JSON here")
    args = ap.parse_args(argv)
    from harmony import world
    from harmony.controls import foreign_images
    from harmony.world.stills import foreign_stills

    train_seeds = [s for s in range(200) if not world.is_heldout(s)][:60]
    world_frames = np.concatenate([world.render(world.sample_scene(s, seconds=2.0)).frames[::4] for s in train_seeds])
    fit = np.concatenate([world_frames, foreign_stills(2048, seed=1)[0]])
    held = foreign_stills(64, seed=999)[0]
    world_held = np.concatenate([world.render(world.sample_scene(s, split, 2.0)).frames[::4]
                                 for split in world.SPLITS for s in world.heldout_seeds(split, 4)])
    tests = {**foreign_images(), "stills_heldout": held, "world_heldout": world_held}
    rt = (lambda x: codec_roundtrip(x if x.ndim == 4 else x[None])) if args.after_codec else (lambda x: None)
    base = {k: rt(v) for k, v in tests.items()}
    p = patches(fit) - (patches(rt(fit)) if args.after_codec else 0)
    mean = p.mean(0)
    basis_all = np.linalg.svd(p - mean, full_matrices=False)[2]
    rows = []
    for d in (int(x) for x in args.dims.split(",")):
        n = d + (16 if args.after_codec else 0)  # the shipped codec's 16 channels under the residual's d
        row = {"numbers_per_patch": n, "compression": round(PATCH * PATCH * 3 / n, 1)}
        row.update({f"{k}_db": round(psnr_db(v, mean, basis_all[:d], base[k]), 2) for k, v in tests.items()})
        rows.append(row)
        print(" ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"command": "python scripts/codec_rate_ceiling.py " + " ".join(argv or sys.argv[1:]),
                       "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
