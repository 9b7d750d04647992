"""Train / evaluate the tiny codecs.

    python -m harmony.codecs train --out harmony/assets/tiny_codecs.safetensors
    python -m harmony.codecs eval  --weights harmony/assets/tiny_codecs.safetensors
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from .eval_toy import evaluate_codecs
from .tiny import DEFAULT_CODECS_PATH, load_codecs, save_codecs
from .toy_audio import AudioCodec
from .toy_video import VideoCodec
from .train_toy import fit_audio_stats, train_video_codec


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harmony.codecs", description="Train / evaluate the tiny video and audio codecs.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    tr = sub.add_parser("train", help="train the video codec, fit both codecs' latent stats, save")
    tr.add_argument("--out", default=DEFAULT_CODECS_PATH)
    tr.add_argument("--minutes", type=float, default=4.0)
    tr.add_argument("--clips", type=int, default=256)
    tr.add_argument("--seconds", type=float, default=3.0, help="length of each training clip")
    tr.add_argument("--watch-every", type=int, default=0,
                    help="every N steps, log the PSNR on tuning-seed frames (0: never)")
    tr.add_argument("--threads", type=int, default=1)
    tr.add_argument("--init", default=None, help="continue from this codec file instead of random weights")
    tr.add_argument("--lr", type=float, default=2e-3)
    tr.add_argument("--seed-offset", type=int, default=0, help="first training seed")
    tr.add_argument("--colour-weight", type=float, default=0.0,
                    help="pixels of a world colour weigh 1 + this in the frame loss (the objects' colours)")
    ev = sub.add_parser("eval", help="reconstruction + sync metrics on held-out world seeds")
    ev.add_argument("--weights", default=DEFAULT_CODECS_PATH)
    ev.add_argument("--n", type=int, default=4, help="held-out clips per split")
    ev.add_argument("--seconds", type=float, default=3.0)
    ev.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    if args.cmd == "train":
        from ..world.scene import MAX_SECONDS, MIN_SECONDS
        if not MIN_SECONDS <= args.seconds <= MAX_SECONDS:
            ap.error(f"--seconds {args.seconds:g}: the world renders clips of {MIN_SECONDS:g} to {MAX_SECONDS:g} s; "
                     "give a length in that range")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.cmd == "train":
        video, audio = load_codecs(args.init) if args.init else (VideoCodec(), AudioCodec())
        log = lambda m: print(m, flush=True)  # noqa: E731
        stats = train_video_codec(video, minutes=args.minutes, clips=args.clips, lr=args.lr, seconds=args.seconds,
                                  watch_every=args.watch_every, seed_offset=args.seed_offset, colour_weight=args.colour_weight, log=log)
        fit_audio_stats(audio)
        save_codecs(video, audio, args.out, metadata={"train": json.dumps(stats)})
        log(f"saved {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB): {stats}")
    else:
        video, audio = load_codecs(args.weights)
        res = evaluate_codecs(video, audio, n_per_split=args.n, seconds=args.seconds)
        print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
