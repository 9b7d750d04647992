"""How much a generated video boils: its frame-to-frame change beside the real clip's.

A world clip's background and bodies hold still between events: the real latent changes by about
0.03 (rms, normalised latent units) from one frame to the next. For each sampling setting this
prints, over the speech clips of the A2V control and the given seeds:

- ``latent step``: the rms frame-to-frame change of the clean-video estimate at a few sampling steps,
  and at the end (what is decoded);
- ``pixel |d|``: the mean absolute frame-to-frame change of the decoded frames (0..1, x1000);
- the same two for the real clips through the codec.

    python scripts/video_jitter.py [--model FILE] [--job A2V] [--seeds 10,11] [--sv 1,3] [--steps 20]
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="model file (default: the bundled one)")
    ap.add_argument("--job", default="A2V", choices=("T2AV", "I2AV", "A2V"), help="a job that generates the video")
    ap.add_argument("--seeds", default="10,11", help="comma-separated sampling seeds")
    ap.add_argument("--sv", default="", help="comma-separated video scales (default: the model file's)")
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    scales = [float(s) for s in args.sv.split(",") if s.strip()] or [None]

    import torch

    from harmony import controls as C
    from harmony import sampling
    from harmony.batch_generate import generate_batch
    from harmony.pipeline import HarmonyPipeline
    from harmony.world import render

    pipe = HarmonyPipeline.from_pretrained(args.model, log=lambda m: None)
    clips = [render(C.speech_scene(i)) for i in (1, 2)]
    order = [c for c in clips for _ in seeds]

    def latent_step(z):  # rms change between consecutive latent frames, [B, C, F, H, W]
        return float(z.diff(dim=2).pow(2).mean().sqrt())

    def pixel_step(frames):
        return float(np.mean([np.abs(np.diff(np.asarray(f, np.float32), axis=0)).mean() for f in frames])) * 1000

    with torch.no_grad():
        real_z = torch.cat([pipe.codecs.video.encode(torch.as_tensor(c.frames)[None]) for c in clips])
        real_px = [pipe.codecs.video.decode(z[None])[0].numpy() for z in real_z]
    print(f"model: {args.model or 'bundled'}; job {args.job}; {len(order)} clips (speech clips 1, 2 of the A2V "
          f"control x seeds {seeds}); {args.steps} steps")
    print(f"real through the codec: latent step {latent_step(real_z):.3f}, pixel |d| x1000 {pixel_step(real_px):.1f}")

    trace: list[float] = []
    plain = sampling.sample

    def traced(*a, **k):  # generate_batch imports sample at call time: record each step's clean estimate
        k["preview"] = lambda i, n, xv, xa: trace.append(latent_step(xv))
        return plain(*a, **k)

    given = {"A2V": {"driving_audio": [(c.wave[None], c.sample_rate) for c in order]},
             "I2AV": {"first_frames": [c.frames[0] for c in order]}, "T2AV": {}}[args.job]
    sampling.sample = traced
    try:
        for sv in scales:
            trace.clear()
            out = generate_batch(pipe, args.job, [(c.prompt, c.audio_caption, c.transcript) for c in order],
                                 seeds * len(clips), ref_voices=[(c.ref_voice[None], c.sample_rate) for c in order],
                                 steps=args.steps, sv=sv, keep_given=False, **given)
            marks = sorted({0, len(trace) // 4, len(trace) // 2, 3 * len(trace) // 4})
            along = " ".join(f"{trace[i]:.3f}" for i in marks)
            print(f"sv {sv if sv is not None else 'file'}: latent step along sampling (steps {marks}) {along}; "
                  f"end {trace[-1]:.3f}; pixel |d| x1000 {pixel_step([f for f, _ in out]):.1f}")
    finally:
        sampling.sample = plain


if __name__ == "__main__":
    main()
