"""Y7: wall time of one batch of 8 T2AV clips (ambient tuning seeds, no pass) under SyncCFG, SyncCFG + text CFG 1.5 and CFG."""
import sys, time, os
sys.path.insert(0, os.getcwd())
import torch
torch.set_num_threads(2)
from harmony.batch_generate import model_generate_fn
from harmony.pipeline import HarmonyPipeline
from harmony.world import tuning_seeds, render, sample_scene
pipe = HarmonyPipeline.from_pretrained(None, log=lambda m: None)
seeds = tuning_seeds("ambient", 8)
clips = [render(sample_scene(s, "ambient", 3.0)) for s in seeds]
for mode, tc in [("synccfg", 1.0), ("synccfg", 1.5), ("cfg", 1.0), ("synccfg", 1.0)]:
    t0 = time.time()
    model_generate_fn(pipe, mode, text_cfg=tc, resync=0.0)("T2AV", clips, seeds)
    print(mode, tc, f"{time.time()-t0:.1f}s", flush=True)
