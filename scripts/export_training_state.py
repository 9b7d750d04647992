"""Export the EMA weights of a training state (runs/<name>/state.safetensors) as a model
file + text-encoder file, as the trainer does at the end of a run.

    python scripts/export_training_state.py runs/ft1 runs/ft1/export/harmony_tiny.safetensors [--dtype fp16]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    from safetensors import safe_open

    from harmony.config import HarmonyConfig
    from harmony.train import export_default

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("out")
    ap.add_argument("--dtype", default="fp16")
    args = ap.parse_args(argv)
    with safe_open(os.path.join(args.run_dir, "state.safetensors"), "pt") as fh:
        meta = fh.metadata()
        ema = {k[4:]: fh.get_tensor(k) for k in fh.keys() if k.startswith("ema.")}
    cfg = HarmonyConfig.from_dict(json.loads(meta["harmony_config"]))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    export_default(ema, cfg, args.out, int(meta["step"]), args.dtype)
    print(f"exported EMA of step {meta['step']} to {args.out}")


if __name__ == "__main__":
    main()
