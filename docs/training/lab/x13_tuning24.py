"""X13: T2AV ambient on 24 tuning seeds, SyncCFG vs CFG, signed offsets (is the held-out lag systematic?)."""
import sys, time
import os  # noqa: E401
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))
import torch
torch.set_num_threads(2)
from harmony.batch_generate import model_generate_fn
from harmony.evaluate import evaluate
from harmony.pipeline import HarmonyPipeline
from harmony.world import tuning_seeds
for path in sys.argv[1:]:
    pipe = HarmonyPipeline.from_pretrained(path, log=lambda m: None)
    t0 = time.time()
    rows = evaluate({m: model_generate_fn(pipe, m) for m in ("synccfg", "cfg")}, 24, ("T2AV",),
                    splits=("ambient", "complex"), seeds_fn=tuning_seeds)
    for r in rows:
        if r["kind"] == "model":
            print(path.split("/")[-2], r["split"], r["name"], " ".join(f"{k}={r.get(k, float('nan')):.3f}" for k in
                  ("offset_s", "abs_offset_s", "confidence", "f1_av", "colour_f1")), flush=True)
    print(f"{time.time()-t0:.0f} s", flush=True)
