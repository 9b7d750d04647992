"""Prototype (X2): T2AV, then A2V driven by the T2AV's own decoded audio (full cascade), on tuning seeds.

    python docs/training/lab/x2_cascade.py MODEL   # X2 ran on the twelfth session's model (git show a0db7f5:...)
"""
import sys, os, time
import os  # noqa: E401
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))
import torch
torch.set_num_threads(2)
from harmony.batch_generate import generate_batch, model_generate_fn
from harmony.evaluate import evaluate
from harmony.pipeline import HarmonyPipeline
from harmony.world import tuning_seeds
pipe = HarmonyPipeline.from_pretrained(sys.argv[1], log=lambda m: None)
base = model_generate_fn(pipe, resync=0.0)
def cascade(job, clips, seeds):
    t2av = base("T2AV", clips, seeds)
    texts = [(c.prompt, c.audio_caption, c.transcript) for c in clips]
    return generate_batch(pipe, "A2V", texts, seeds, seconds=clips[0].seconds,
                          driving_audio=[(w[None], pipe.sample_rate) for _, w in t2av],
                          ref_voices=[(c.ref_voice[None], c.sample_rate) if c.ref_voice is not None else None for c in clips])
KEYS = ("abs_offset_s", "offset_s", "confidence", "f1_av", "colour_f1", "kind_acc", "count_error_audio", "count_error_video")
t0 = time.time()
rows = evaluate({"base": base, "cascade": cascade}, 8, ("T2AV",), seeds_fn=tuning_seeds)
for r in rows:
    if r["kind"] == "model":
        print(r["split"], r["name"], " ".join(f"{k}={r.get(k, float('nan')):.3f}" for k in KEYS), flush=True)
print(f"{time.time()-t0:.0f} s")
