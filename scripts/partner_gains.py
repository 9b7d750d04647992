"""Partner use of model files side by side: `harmony.probe.partner_gains` (gain = x0 error with
another clip's partner / with the clip's own; and the own-partner error itself) on held-out
clips of every split, at sigma 0.3 / 0.6 / 0.9.

    python scripts/partner_gains.py harmony/assets/harmony_tiny.safetensors runs/recipe/harmony_tiny.safetensors \
        --seconds 2 -n 8 --out docs/training/recipe_probe.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harmony.pipeline import HarmonyPipeline  # noqa: E402
from harmony.probe import SIGMAS, encode_clips, heldout_clips, partner_gains  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="model files")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("-n", type=int, default=8, help="held-out clips per split")
    ap.add_argument("--splits", default="speech,ambient,complex")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    a = ap.parse_args()
    results = {}
    for path in a.models:
        pipe = HarmonyPipeline.from_pretrained(path, log=lambda m: None)
        results[path] = {}
        for split in a.splits.split(","):
            clips, other = heldout_clips(a.n, a.seconds, splits=split)
            v0, a0, cond = encode_clips(pipe, clips)
            own = {}
            gains = partner_gains(pipe.model, v0, a0, cond, other, own_mse=own)
            results[path][split] = {"gain": gains, "own_mse": own}
    print(f"{'model':48} {'split':8} {'setting':6} " + " ".join(f"gain@{s:<4}" for s in SIGMAS)
          + " " + " ".join(f"mse@{s:<5}" for s in SIGMAS))
    for path, per in results.items():
        for split, r in per.items():
            for setting in ("V2A", "A2V", "I2AV", "joint"):
                g, m = r["gain"][setting], r["own_mse"][setting]
                print(f"{os.path.relpath(path)[-48:]:48} {split:8} {setting:6} "
                      + " ".join(f"{g[s]:8.3f}" for s in SIGMAS) + " " + " ".join(f"{m[s]:9.4f}" for s in SIGMAS))
    if a.out:
        with open(a.out, "w") as fh:
            json.dump({"seconds": a.seconds, "n_per_split": a.n, "results": results}, fh, indent=1, default=str)


if __name__ == "__main__":
    main()
