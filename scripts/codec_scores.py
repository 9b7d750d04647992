"""Codec files side by side, as the evaluation reads their pictures (issue 19 item 3; notebook Q4, Q5).

For each codec pair file: the video round trip's PSNR on held-out world frames, colour F1 and
visual-event F1 through it on 24 tuning clips (harmony.metrics, as the evaluation reads them), and
the round trip of the i2av_foreign control's three out-of-world images.

    python scripts/codec_scores.py harmony/assets/tiny_codecs.safetensors runs/q5/cw10/tiny_codecs.safetensors
    python scripts/codec_scores.py --seen 1000-1199:3 FILE ...   # also the PSNR on frames of these training
        # scenes (every 4th seed, clips of 3 s): beside the held-out value, how much a codec learned its own scenes
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from decoder_finetune import clip_scores, frames_of, psnr, roundtrip, tuning_clips  # noqa: E402


def _seen(text: str) -> tuple:
    """``FIRST-LAST[:SECONDS]`` -> (row name, every 4th seed of the range, clip seconds)."""
    span, _, seconds = text.partition(":")
    first, last = (int(x) for x in span.split("-"))
    return f"seen_{first}_{last}_db", list(range(first, last + 1, 4)), float(seconds or 3)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("paths", nargs="+", help="codec pair files")
    ap.add_argument("--seen", type=_seen, action="append", default=[], metavar="FIRST-LAST[:SECONDS]",
                    help="also the PSNR on frames of these training scenes (every 4th seed), e.g. 1000-1199:3")
    a = ap.parse_args(argv)
    paths, seen = a.paths, a.seen
    torch.set_num_threads(2)
    from harmony.codecs.tiny import load_codecs
    from harmony.controls import foreign_images
    from harmony.world.scene import heldout_seeds

    clips = tuning_clips()
    world_test = frames_of([s for split in ("speech", "ambient", "complex") for s in heldout_seeds(split, 4)], 2.0, 4)
    seen_frames = [(name, frames_of(seeds, seconds, 4)) for name, seeds, seconds in seen]
    images = foreign_images()
    control = torch.from_numpy(np.stack(list(images.values()))) if images else None
    for path in paths:
        video = load_codecs(path)[0]
        row = {"world_heldout_db": psnr(roundtrip(video, world_test), world_test), **clip_scores(video, clips)}
        row.update({name: psnr(roundtrip(video, f), f) for name, f in seen_frames})
        if control is not None:
            rt = roundtrip(video, control)
            row.update({f"{k}_db": psnr(rt[i:i + 1], control[i:i + 1]) for i, k in enumerate(images)})
        print(path, json.dumps({k: round(v, 3) for k, v in row.items()}), flush=True)


if __name__ == "__main__":
    main()
