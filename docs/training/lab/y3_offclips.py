"""Y3: which tuning ambient clips are off under T2AV SyncCFG, and why (events detected vs ground truth)."""
import sys, time, os
sys.path.insert(0, os.getcwd())
import torch
torch.set_num_threads(2)
import numpy as np
from harmony.batch_generate import model_generate_fn
from harmony.evaluate import _as_numpy, _fit_wave
from harmony.metrics import clip_metrics, detect_audio_events, detect_visual_events
from harmony.pipeline import HarmonyPipeline
from harmony.world import tuning_seeds, heldout_seeds, render, sample_scene
split, which, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
specs = sys.argv[4:]
pipe = HarmonyPipeline.from_pretrained(None, log=lambda m: None)
seeds = (heldout_seeds if which == "heldout" else tuning_seeds)(split, n)
clips = [render(sample_scene(s, split, 3.0)) for s in seeds]
res = {}
for spec in specs:
    mode, r = spec.split(":")
    outs = model_generate_fn(pipe, mode, resync=float(r))("T2AV", clips, seeds)
    res[spec] = outs
for i, (c, s) in enumerate(zip(clips, seeds)):
    gt = [round(t, 2) for t, _, _ in c.scene.events()]
    print(s, c.prompt[:100])
    print("   gt", gt, [k for _, k, _ in c.scene.events()][:8])
    for spec, outs in res.items():
        f, w = outs[i]
        f, w = _as_numpy(f), _fit_wave(w, len(c.wave))
        m = clip_metrics((f, w, c.fps, c.sample_rate), c.scene)
        a = detect_audio_events(w if w.ndim == 1 else w.mean(0), c.sample_rate, c.fps, num_frames=len(f))
        v = detect_visual_events(f, c.fps)
        print(f"   {spec:12} off {m['offset_s']:+.3f} conf {m['confidence']:.2f} a {[round(t,2) for t in a]} v {[round(t,2) for t in v]}")
