"""Y11: T2AV SyncCFG, the ninth session's file ("today" in issue 19) vs the bundled one, clip by clip on the same
clips and noise seeds: held-out 8 per split (the table's) and tuning 24 per split; paired bootstrap intervals."""
import sys, time, os
sys.path.insert(0, os.getcwd())
import torch
torch.set_num_threads(2)
import numpy as np
from harmony.batch_generate import model_generate_fn
from harmony.evaluate import _as_numpy, _fit_wave, paired_interval
from harmony.metrics import clip_metrics
from harmony.pipeline import HarmonyPipeline
from harmony.world import heldout_seeds, tuning_seeds, render, sample_scene
models = {"ninth": ("runs/y/s9/harmony_tiny.safetensors", "runs/y/s9/tiny_codecs.safetensors"), "bundled": (None, None)}
mode = sys.argv[1] if len(sys.argv) > 1 else "synccfg"
res = {}
for name, (path, codecs) in models.items():
    pipe = HarmonyPipeline.from_pretrained(path, codecs=codecs, log=lambda m: None)
    for which, fn, n in (("heldout", heldout_seeds, 8), ("tuning", tuning_seeds, 24)):
        for split in ("speech", "ambient", "complex"):
            seeds = fn(split, n)
            clips = [render(sample_scene(s, split, 3.0)) for s in seeds]
            outs = model_generate_fn(pipe, mode)("T2AV", clips, seeds)
            res[name, which, split] = [clip_metrics((_as_numpy(f), _fit_wave(w, len(c.wave)), c.fps, c.sample_rate), c.scene)
                                       for c, (f, w) in zip(clips, outs)]
print(f"T2AV {mode}: bundled minus ninth session's file, paired over the same clips (mean [95% bootstrap])")
for which in ("heldout", "tuning"):
    for split in ("speech", "ambient", "complex"):
        a, b = res["bundled", which, split], res["ninth", which, split]
        line = f"{which:8} {split:8} n={len(a):2}"
        for k in ("confidence", "abs_offset_s", "f1_av"):
            x, y = [m[k] for m in a], [m[k] for m in b]
            line += f" | {k} {np.mean(y):.3f} -> {np.mean(x):.3f} " + "{:+.3f} [{:+.3f}, {:+.3f}]".format(*paired_interval(x, y))
        print(line, flush=True)
