"""Y2: a per-split grid on 24 tuning seeds per split (never the held-out ones); each argument is mode[:key=value...] with keys resync sv sa shift st text_cfg; env JOB (default T2AV), N, MODEL, CODECS."""
import sys, time, os
sys.path.insert(0, os.getcwd())
import torch
torch.set_num_threads(2)
import numpy as np
from harmony.batch_generate import model_generate_fn
from harmony.evaluate import _as_numpy, _fit_wave
from harmony.metrics import clip_metrics
from harmony.pipeline import HarmonyPipeline
from harmony.world import tuning_seeds, render, sample_scene
job = os.environ.get("JOB", "T2AV")
n = int(os.environ.get("N", "24"))
model = os.environ.get("MODEL") or None
pipe = HarmonyPipeline.from_pretrained(model, codecs=os.environ.get("CODECS") or None, log=lambda m: None)
data = {}
for split in ("speech", "ambient", "complex"):
    seeds = tuning_seeds(split, n)
    data[split] = (seeds, [render(sample_scene(s, split, 3.0)) for s in seeds])
for spec in sys.argv[1:]:
    p = spec.split(":")  # mode[:key=value...], keys: resync sv sa shift st text_cfg
    mode = p[0]
    kw = {k: float(v) for k, v in (x.split("=") for x in p[1:])}
    t0 = time.time()
    line = []
    for split, (seeds, clips) in data.items():
        outs = model_generate_fn(pipe, mode, **kw)(job, clips, seeds)
        ms = [clip_metrics((_as_numpy(f), _fit_wave(w, len(c.wave)), c.fps, c.sample_rate), c.scene)
              for c, (f, w) in zip(clips, outs)]
        g = lambda k: np.nanmean([m[k] for m in ms])
        out = np.mean([m["abs_offset_s"] > 0.07 for m in ms])
        line.append(f"{split[:4]} conf {g('confidence'):.3f} off {g('abs_offset_s'):.3f} bad {out:.2f} "
                    f"F1 {g('f1_av'):.2f} col {g('colour_f1'):.2f} cnt {g('count_error_audio'):.2f}/{g('count_error_video'):.2f}")
    print(f"{spec:22} ({time.time()-t0:.0f}s) | " + " | ".join(line), flush=True)
