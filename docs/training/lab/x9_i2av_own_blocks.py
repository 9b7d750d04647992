"""X9: I2AV's resync pass with I2AV's own weights (not A2V's): controls on selection seeds, then the
tuning-seed rows. Patches harmony.sampling.job_weights (A2V -> I2AV) for this I2AV-only run."""
import sys, time, json
import os  # noqa: E401
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))
import torch
torch.set_num_threads(2)
import harmony.sampling as S
from harmony.batch_generate import model_generate_fn
from harmony.controls import run_controls
from harmony.evaluate import evaluate
from harmony.pipeline import HarmonyPipeline
from harmony.world import tuning_seeds
orig = S.job_weights
S.job_weights = lambda model, name, log=None: orig(model, "I2AV" if name == "A2V" else name, log)
pipe = HarmonyPipeline.from_pretrained(sys.argv[1], log=lambda m: None)
for r in [float(x) for x in sys.argv[2].split(",")]:
    t0 = time.time()
    res = run_controls(pipe, seeds=list(range(10, 18)), jobs=("I2AV",), resync=r)
    print("resync", r, json.dumps({x["name"]: round(x["value"], 3) for x in res}), f"{time.time()-t0:.0f} s", flush=True)
    rows = evaluate(model_generate_fn(pipe, resync=r), 8, ("I2AV",), seeds_fn=tuning_seeds)
    for x in rows:
        if x["kind"] == "model":
            print("resync", r, x["split"], " ".join(f"{k}={x.get(k, float('nan')):.3f}" for k in
                  ("abs_offset_s", "confidence", "f1_av", "colour_f1", "kind_acc")), flush=True)
