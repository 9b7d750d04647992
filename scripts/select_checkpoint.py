"""Pick a checkpoint of a run without looking at the reported numbers (issue 19).

For each model file: the input controls on sampling seeds other than the reported ones
(the model card and notebook report seeds 0 and 1) and T2AV with SyncCFG on the world's
*tuning* seeds (not the held-out evaluation seeds), so that choosing a step does not fit
the table it is then judged by.

    python scripts/select_checkpoint.py runs/g1/ema_step600.safetensors runs/g1/ema_step900.safetensors \
        [--seeds 10 11 12 13] [--t2av-n 4] [--steps 20] [-o runs/g1/select.jsonl]

Prints one line per model: the control values, how many pass, and T2AV's sync confidence,
event F1 (audio-video) and speech pitch error per split.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harmony.batch_generate import model_generate_fn  # noqa: E402
from harmony.controls import run_controls  # noqa: E402
from harmony.evaluate import evaluate  # noqa: E402
from harmony.guidance import default_scales  # noqa: E402
from harmony.pipeline import HarmonyPipeline  # noqa: E402
from harmony.world import tuning_seeds  # noqa: E402


def score(path: str, seeds, t2av_n: int, steps: int, jobs=("V2A", "I2AV", "A2V")) -> dict:
    pipe = HarmonyPipeline.from_pretrained(path, log=lambda m: None)
    controls = run_controls(pipe, seeds=seeds, steps=steps, jobs=jobs)
    out = {"model": path, "controls": {r["name"]: round(r["value"], 3) for r in controls},
           "passed": int(sum(r["passed"] for r in controls)), "of": len(controls)}
    if t2av_n > 0:
        sv, sa = default_scales(pipe.model.cfg)
        gen = model_generate_fn(pipe, "synccfg", steps, sv, sa, 1.0)
        rows = evaluate({"synccfg": gen}, t2av_n, ("T2AV",), None, seeds_fn=tuning_seeds)
        for r in rows:
            if r["kind"] == "model":
                out[f"t2av_{r['split']}"] = {k: (None if not np.isfinite(r.get(k, np.nan)) else round(float(r[k]), 3))
                                             for k in ("confidence", "f1_av", "pitch_error_st")}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="exported model files")
    ap.add_argument("--seeds", type=int, nargs="+", default=[10, 11, 12, 13], help="sampling seeds of the controls")
    ap.add_argument("--t2av-n", type=int, default=4, help="tuning clips per split for T2AV (0 = skip)")
    ap.add_argument("--steps", type=int, default=20, help="sampling steps")
    ap.add_argument("--jobs", default="V2A,I2AV,A2V", help="the jobs whose controls run (comma-separated)")
    ap.add_argument("-o", "--output", default=None, help="append one JSON line per model here")
    a = ap.parse_args(argv)
    missing = [m for m in a.models if not os.path.isfile(m)]
    if missing:
        ap.error(f"model file(s) not found: {missing}; give exported .safetensors files (e.g. <run>/ema_step600.safetensors)")
    jobs = tuple(j.strip() for j in a.jobs.split(",") if j.strip())
    bad = [j for j in jobs if j not in ("V2A", "I2AV", "A2V")]
    if bad or not jobs:
        ap.error(f"--jobs {a.jobs!r}: give some of V2A, I2AV, A2V (the jobs with input controls)")
    for path in a.models:
        res = score(path, a.seeds, a.t2av_n, a.steps, jobs)
        print(json.dumps(res), flush=True)
        if a.output:
            with open(a.output, "a") as fh:
                fh.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
