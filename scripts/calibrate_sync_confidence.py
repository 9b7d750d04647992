"""Calibrate the sync badge's confidence threshold (nodes/save_av.py, SYNC_MIN_CONFIDENCE).

``harmony.metrics.av_offset`` returns (offset, confidence). A confidence that
unrelated audio reaches as easily is no evidence of sync. This script measures
the confidence on real world clips (video with its own audio) and on
mismatched pairs (video with another clip's audio), and prints the quantiles;
the threshold is the 90th percentile of the mismatched pairs: below it, the
offset is shown as "uncertain".

    python scripts/calibrate_sync_confidence.py [--n 40]
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harmony import metrics, world  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=40, help="training-range world clips (seeds 0..n-1)")
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args(argv)
    clips = [world.render(world.sample_scene(s, None, args.seconds)) for s in range(args.n)]
    own, other = [], []
    for i, c in enumerate(clips):
        off, conf = metrics.av_offset(c.frames, c.fps, c.wave, c.sample_rate)
        own.append((abs(off) * c.fps, conf))
        d = clips[(i + 1) % len(clips)]
        _, conf_x = metrics.av_offset(c.frames, c.fps, d.wave, d.sample_rate)
        other.append(conf_x)
    own_c = np.array([c for _, c in own])
    other_c = np.array(other)
    q = (10, 25, 50, 75, 90)
    print(f"{args.n} world clips ({args.seconds:g} s), seeds 0..{args.n - 1}")
    print("own audio      : confidence quantiles", dict(zip(q, np.round(np.percentile(own_c, q), 3))))
    print("|offset| frames (own audio): median", float(np.median([o for o, _ in own])))
    print("another's audio: confidence quantiles", dict(zip(q, np.round(np.percentile(other_c, q), 3))))
    thr = float(np.percentile(other_c, 90))
    print(f"threshold (90th percentile of mismatched pairs): {thr:.3f}; "
          f"own-audio clips at or above it: {float((own_c >= thr).mean()):.2f}")


if __name__ == "__main__":
    main()
