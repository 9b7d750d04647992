"""Y1: per-clip signed offsets of T2AV on the held-out ambient clips, SyncCFG vs CFG, resync 0 / file (a diagnosis: nothing is chosen on these seeds)."""
import sys, time, os
sys.path.insert(0, os.getcwd())
import torch
torch.set_num_threads(2)
import numpy as np
from harmony.batch_generate import model_generate_fn
from harmony.evaluate import _as_numpy, _fit_wave
from harmony.metrics import clip_metrics
from harmony.pipeline import HarmonyPipeline
from harmony.world import heldout_seeds, tuning_seeds, render, sample_scene
split = sys.argv[1] if len(sys.argv) > 1 else "ambient"
which = sys.argv[2] if len(sys.argv) > 2 else "heldout"
n = int(sys.argv[3]) if len(sys.argv) > 3 else 8
pipe = HarmonyPipeline.from_pretrained(None, log=lambda m: None)
seeds = (heldout_seeds if which == "heldout" else tuning_seeds)(split, n)
clips = [render(sample_scene(s, split, 3.0)) for s in seeds]
for c, s in zip(clips, seeds):
    print(s, c.prompt[:90], "| events", [round(t, 2) for t, _, _ in c.scene.events()])
configs = [("synccfg", dict(resync=0.0)), ("synccfg", dict()), ("cfg", dict(resync=0.0)), ("cfg", dict())]
for mode, kw in configs:
    t0 = time.time()
    outs = model_generate_fn(pipe, mode, **kw)("T2AV", clips, seeds)
    ms = [clip_metrics((_as_numpy(f), _fit_wave(w, len(c.wave)), c.fps, c.sample_rate), c.scene) for c, (f, w) in zip(clips, outs)]
    print(f"{mode} {kw} {time.time()-t0:.0f}s conf={np.mean([m['confidence'] for m in ms]):.3f} |off|={np.mean([m['abs_offset_s'] for m in ms]):.3f}")
    print("  off ", " ".join(f"{m['offset_s']:+.3f}" for m in ms))
    print("  conf", " ".join(f"{m['confidence']:.2f}" for m in ms))
    print("  na/nv/gt", " ".join(f"{m['n_audio_events']}/{m['n_visual_events']}/{m['n_gt_events']}" for m in ms), flush=True)
