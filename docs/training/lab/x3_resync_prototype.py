"""Prototype of the resync pass (notebook X3-X5): T2AV, then the video re-denoised from `denoise` of an A2V
schedule with the T2AV's own audio latent held clean (A2V's weights and settings, or the shared weights), on
tuning seeds. Patches harmony.sampling.sample. The twelfth session's model is the one it ran on:

    git show a0db7f5:harmony/assets/harmony_tiny.safetensors > /tmp/s12/harmony_tiny.safetensors  # + .text
    python docs/training/lab/x3_resync_prototype.py --model /tmp/s12/harmony_tiny.safetensors --shares 0.4,0.6,0.8,1.0 \
        --jobs T2AV,I2AV --base          # X3;  X4: --shares 0.3,0.6 --weights shared;  X5: --shares 0.2
"""
import argparse
import sys, time
import os  # noqa: E401
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))
import torch
torch.set_num_threads(2)
import harmony.sampling as S
from harmony.batch_generate import model_generate_fn
from harmony.evaluate import evaluate
from harmony.pipeline import HarmonyPipeline
from harmony.world import tuning_seeds
from harmony.jobs import Job
ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--shares", required=True)
ap.add_argument("--jobs", default="T2AV")
ap.add_argument("--weights", choices=("a2v", "shared"), default="a2v")
ap.add_argument("--base", action="store_true", help="also the rows without the pass")
args = ap.parse_args()
pipe = HarmonyPipeline.from_pretrained(args.model, log=lambda m: None)
orig = S.sample
DENOISE = {"d": None}
def patched(model, cond, nv, na, **kw):
    kw["resync"] = 0.0  # the model's own pass (this session's code) off: the prototype's instead
    zv, za = orig(model, cond, nv, na, **kw)
    job = kw.get("job")
    d = DENOISE["d"]
    if d is None or job.clean_audio is not None or job.clean_video is not None:
        return zv, za
    # the prototype of the resync pass (before sampling.sample had one): fresh noise, and all `steps` steps
    # over the last `d` of a steps / d schedule at A2V's shift (ComfyUI's KSampler denoise)
    a2v = S.job_settings(model.cfg, "A2V")
    steps = kw["steps"]
    tail = S.sigma_schedule(max(steps, round(steps / d)), a2v.shift)[-(steps + 1):]
    s0 = float(tail[0])
    j2 = Job(); j2.clean_audio = za; j2.first_frame = job.first_frame
    g = torch.Generator().manual_seed(1234)
    noise2 = torch.randn(nv.shape, generator=g).to(nv)
    zv0 = (1 - s0) * zv + s0 * noise2
    run = dict(model=model, cond=cond, uncond=kw.get("uncond"), silent_audio_token=kw.get("silent_audio_token"),
               blank_video_frame=kw.get("blank_video_frame"), solver=kw["solver"], callback=None, cancel=None,
               preview=None, dtype=nv.dtype, log=None, total=steps, done=0)
    g2 = S.Guidance("synccfg", a2v.sv, a2v.sa, 1.0, True, a2v.st)
    if SHARED:  # the shared weights, not A2V's own
        import contextlib
        jw = S.job_weights
        S.job_weights = lambda *a, **k: contextlib.nullcontext()
        try:
            return S._solve(zv0, za, tail, g2, j2, **run)
        finally:
            S.job_weights = jw
    return S._solve(zv0, za, tail, g2, j2, **run)


S.sample = patched
SHARED = args.weights == "shared"
KEYS = ("abs_offset_s", "confidence", "f1_av", "colour_f1", "kind_acc", "count_error_audio", "count_error_video")
jobs = tuple(args.jobs.split(","))
for d in ([None] if args.base else []) + [float(x) for x in args.shares.split(",")]:
    DENOISE["d"] = d
    t0 = time.time()
    rows = evaluate(model_generate_fn(pipe), 8, jobs, seeds_fn=tuning_seeds)
    for r in rows:
        if r["kind"] == "model":
            print(f"d={d}", r["split"], r["name"], " ".join(f"{k}={r.get(k, float('nan')):.3f}" for k in KEYS), flush=True)
    print(f"d={d} {time.time()-t0:.0f} s", flush=True)
