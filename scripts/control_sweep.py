"""The input controls of one job over a grid of sampling settings, on selection seeds (issue 19).

A job's tuned settings (``python -m harmony job-weights ... --tuned JOB:KEY=X``) are picked on
sampling seeds other than the reported ones (the model card and notebook report seeds 0 and 1):

    python scripts/control_sweep.py --job A2V --shift 1,2.5,5 [--sv 3] [--sa 2] [--st 0,1] [--early-frames 2,3]
        [--text-cfg 1]
        [--solver dpmpp_2m] [--guidance synccfg] [--seeds 10-25] [--model FILE] [-o out.jsonl]

A setting left out is the model file's for the job (``jobs.tuned_settings``). Prints one JSON line per
grid point: the job's control values (mean over the seeds) and their per-seed values.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harmony import guidance  # noqa: E402
from harmony.controls import run_controls  # noqa: E402
from harmony.pipeline import HarmonyPipeline  # noqa: E402


def _values(text, kind):
    return [None] if text is None else [kind(x) for x in text.split(",")]


def _seeds(text):
    lo, sep, hi = text.partition("-")
    return list(range(int(lo), int(hi) + 1)) if sep else [int(x) for x in text.split(",")]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--job", required=True, choices=("V2A", "I2AV", "A2V"))
    ap.add_argument("--model", default=None, help="model file (default: the bundled one)")
    ap.add_argument("--seeds", default="10-17", help="sampling seeds: a range 10-25 or a list 10,11")
    ap.add_argument("--steps", type=int, default=20)
    for name in ("sv", "sa", "shift", "st", "resync", "text-cfg"):
        ap.add_argument("--" + name, default=None, help="comma-separated values (default: the model file's)")
    ap.add_argument("--early-frames", default=None,
                    help="how early the timing anchor's partner is, in video latent frames (comma-separated; "
                         "negative: late; default harmony.guidance.EARLY_FRAMES); only with --st > 0")
    ap.add_argument("--solver", default="dpmpp_2m", help="comma-separated solvers")
    ap.add_argument("--guidance", default="synccfg", help="comma-separated guidance modes")
    ap.add_argument("-o", "--output", default=None, help="append the JSON lines here")
    a = ap.parse_args(argv)
    seeds = _seeds(a.seeds)
    pipe = HarmonyPipeline.from_pretrained(a.model, log=lambda m: None)
    grid = itertools.product(_values(a.sv, float), _values(a.sa, float), _values(a.shift, float),
                             _values(a.st, float), _values(a.resync, float), _values(a.early_frames, int),
                             _values(a.text_cfg, float) if a.text_cfg else [1.0], a.solver.split(","),
                             a.guidance.split(","))
    default_early = guidance.EARLY_FRAMES
    for sv, sa, shift, st, resync, early, text_cfg, solver, mode in grid:
        guidance.EARLY_FRAMES = default_early if early is None else early  # read by SyncCFG at each step
        t0 = time.time()
        res = run_controls(pipe, seeds=seeds, steps=a.steps, guidance=mode, sv=sv, sa=sa, jobs=(a.job,),
                           shift=shift, text_cfg=text_cfg, solver=solver, st=st, resync=resync)
        row = {"model": a.model or "bundled", "job": a.job, "seeds": a.seeds, "sv": sv, "sa": sa, "shift": shift,
               "st": st, "resync": resync, "early_frames": guidance.EARLY_FRAMES, "text_cfg": text_cfg,
               "solver": solver, "guidance": mode, "seconds": round(time.time() - t0),
               "controls": {r["name"]: round(r["value"], 3) for r in res},
               "per_seed": {r["name"]: [round(float(v), 2) for v in r["per_seed"]] for r in res}}
        print(json.dumps(row), flush=True)
        if a.output:
            with open(a.output, "a") as fh:
                fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
