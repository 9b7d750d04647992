"""Peak memory of a Wan2.2 VAE decode of a 5 s 720p clip, computed without a GPU.

Runs ``harmony.codecs.wan_vae.WanVAE`` at full size on the ``meta`` device (shapes
only, no arithmetic) under a dispatch mode that records every tensor the decode
creates and when its storage is freed, and prints the peak of live tensor bytes
(what ``torch.cuda.max_memory_allocated`` counts, less convolution workspaces and
allocator rounding) for several tile sizes, plus the decoder's weights. ``--check``
first runs the same tracker on real CPU tensors for a small case and shows that
the meta run sees exactly the same peak, and compares it with the process's
resident-memory growth.

    python scripts/wan_vae_memory.py [--check] [--encode] [--frames 121 --height 720 --width 1280]
"""
from __future__ import annotations

import argparse
import os
import resource
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harmony.bench_memory import LiveBytes  # noqa: E402  (peak of live tensor bytes, also used by the memory plan)
from harmony.codecs.tiling import tiled_decode  # noqa: E402
from harmony.codecs.wan_vae import WanVAE  # noqa: E402

GB = 1024 ** 3


def build(device: str, **cfg) -> WanVAE:
    with torch.device("meta"):
        vae = WanVAE(**cfg)
    vae = vae.to_empty(device=device).eval()
    if device != "meta":
        for p in vae.parameters():
            p.data.normal_(0, 0.02)
        vae.latent_mean.zero_()
        vae.latent_std.fill_(1.0)
    return vae


def peak_decode(vae: WanVAE, latent_shape, tile: int, overlap: int, device: str) -> int:
    z = torch.zeros(latent_shape, device=device)
    with torch.no_grad(), LiveBytes() as mode:
        if tile:
            out = tiled_decode(vae.decode_latent, z, 16, tile, overlap)
        else:
            out = vae.decode_latent(z)
        del out
    return mode.peak


def rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=121)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--tiles", default="0,32:8,24:8,16:4", help="tile:overlap in latents; 0 = untiled")
    ap.add_argument("--check", action="store_true", help="validate the meta tracker on CPU first")
    ap.add_argument("--encode", action="store_true", help="also the peak of encoding the clip")
    args = ap.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))

    if args.check:
        small = dict(dim=160, dec_dim=256, z_dim=48)          # real widths, small clip
        shape = (1, 48, 2, 6, 8)
        cpu = build("cpu", **small)
        peak_decode(cpu, (1, 48, 1, 2, 2), 0, 0, "cpu")       # warm-up: library / kernel set-up memory
        base = rss_bytes()
        p_cpu = peak_decode(cpu, shape, 0, 0, "cpu")
        grown = rss_bytes() - base
        p_meta = peak_decode(build("meta", **small), shape, 0, 0, "meta")
        print(f"check: latent {shape} untiled at full width: tracker peak on CPU {p_cpu / 2**20:.1f} MiB, "
              f"on meta {p_meta / 2**20:.1f} MiB (equal: {p_cpu == p_meta}); CPU resident-memory growth "
              f"{grown / 2**20:.1f} MiB")
        del cpu

    vae = build("meta")
    dec = sum(p.numel() for p in vae.decoder.parameters()) + sum(p.numel() for p in vae.conv2.parameters())
    enc = sum(p.numel() for p in vae.parameters()) - dec
    f_lat = WanVAE.latents_for_frames(args.frames)
    h, w = args.height // 16, args.width // 16
    shape = (1, 48, f_lat, h, w)
    n_frames = WanVAE.frames_for_latents(f_lat)
    out_bytes = 3 * n_frames * args.height * args.width * 4
    print(f"Wan2.2 VAE fp32 weights: decoder {dec * 4 / GB:.2f} GiB ({dec:,} params), "
          f"encoder {enc * 4 / GB:.2f} GiB ({enc:,} params)")
    print(f"clip: {n_frames} frames {args.height}x{args.width} -> latent {list(shape)}; "
          f"decoded frames fp32 = 3*{n_frames}*{args.height}*{args.width}*4 B = {out_bytes / GB:.2f} GiB")
    print("tile:overlap | peak live activations, output assembled on the device | one largest tile alone "
          "(output assembled elsewhere) | bound = decoder weights + peak")
    for spec in args.tiles.split(","):
        tile, overlap = (int(v) for v in (spec.split(":") + ["0"])[:2])
        peak = peak_decode(vae, shape, tile, overlap, "meta")
        if tile and max(h, w) > tile:
            one = peak_decode(vae, (1, 48, f_lat, min(tile, h), min(tile, w)), 0, 0, "meta")
            one_s = f"{one / GB:6.2f} GiB"
        else:
            one_s = "   (untiled)"
        label = "untiled" if not tile else f"{tile}:{overlap}"
        print(f"{label:>12} | {peak / GB:6.2f} GiB | {one_s} | {(dec * 4 + peak) / GB:6.2f} GiB")
    if args.encode:
        x = torch.zeros(1, 3, n_frames, args.height, args.width, device="meta")
        with torch.no_grad(), LiveBytes() as mode:
            z = vae.encode_video(x)
            del z
        print(f"encode (chunked, not tiled): input {x.nbytes / GB:.2f} GiB + peak live activations "
              f"{mode.peak / GB:.2f} GiB + encoder weights {enc * 4 / GB:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
