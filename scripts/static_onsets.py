"""When, during sampling, does V2A put sounds on a still video? (issue 19, `v2a_static`)

The `v2a_static` control's input (a held-out lamp that never lights, empty texts, 3 s) is sampled
with SyncCFG; at every step the sampler's clean audio estimate is decoded and its loud onsets
(`harmony.metrics.loud_onsets`, the control's own count) are counted. Sounds that appear only at
the later, low-sigma steps come from the audio tower reading its own noisy input, not from the
first, video-only estimate.

    python scripts/static_onsets.py MODEL [MODEL ...] [--seeds 10 11 12 13] [--steps 20]

Prints, per model and sampling seed, the onset count of each step's estimate.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harmony.controls import SECONDS, lamp_scene  # noqa: E402
from harmony.metrics import loud_onsets  # noqa: E402
from harmony.pipeline import HarmonyPipeline  # noqa: E402
from harmony.world import render  # noqa: E402


def onsets_per_step(pipe, clip, seed: int, steps: int) -> list[int]:
    sr, fps = int(pipe.sample_rate), float(pipe.fps)
    counts = []

    def preview(step, total, x0_video, x0_audio):
        wave = pipe.codecs.audio.decode(x0_audio.float())[0].detach().cpu().numpy().reshape(-1)
        counts.append(len(loud_onsets(wave, sr, fps)))

    with torch.no_grad():
        pipe.sample(pipe.encode_text("", "", ""), seconds=SECONDS, seed=seed, steps=steps,
                    driving_video=(torch.from_numpy(clip.frames), clip.fps), preview=preview)
    return counts


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="exported model files")
    ap.add_argument("--seeds", type=int, nargs="+", default=[10, 11, 12, 13], help="sampling seeds")
    ap.add_argument("--steps", type=int, default=20, help="sampling steps")
    a = ap.parse_args(argv)
    clip = render(lamp_scene(()))  # the v2a_static control's input
    for path in a.models:
        pipe = HarmonyPipeline.from_pretrained(path, log=lambda m: None)
        for seed in a.seeds:
            print(f"{path} seed {seed}: onsets of each step's audio estimate "
                  f"{onsets_per_step(pipe, clip, seed, a.steps)}", flush=True)


if __name__ == "__main__":
    main()
