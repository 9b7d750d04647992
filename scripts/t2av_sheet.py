"""A contact sheet of T2AV frames on tuning seeds: the real clip's frame, then each model's (issue 19; notebook T3).

Row 1 is the world's clip for each prompt, then one row per model: the frame it generates from the same prompt
and audio caption (SyncCFG, the file's tuned settings, sampling seed 0). Each clip's colours as read by
``harmony.metrics.detect_colours`` are printed beside the prompt, so what the eye sees and what colour F1
counts can be compared.

    python scripts/t2av_sheet.py harmony/assets/harmony_tiny.safetensors runs/move/m1/harmony_tiny.safetensors=runs/move/t2/tiny_codecs.safetensors -o sheet.png
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", help="FILE or FILE=CODECS (a model trained with other codecs)")
    ap.add_argument("--scenes", default="ambient:4,complex:2", help="SPLIT:N,...: the first N tuning seeds of each")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--frame", type=int, default=12, help="which frame of each clip")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("-o", "--output", required=True, help="PNG to write")
    a = ap.parse_args(argv)
    import torch
    from PIL import Image

    from harmony import world
    from harmony.batch_generate import model_generate_fn
    from harmony.metrics import detect_colours
    from harmony.pipeline import HarmonyPipeline

    torch.set_num_threads(2)
    scenes = []
    for item in a.scenes.split(","):
        split, _, n = item.partition(":")
        scenes += [(s, split) for s in world.tuning_seeds(split, int(n or 1))]
    clips = [world.render(world.sample_scene(s, split, a.seconds)) for s, split in scenes]
    rows = [[c.frames[a.frame] for c in clips]]
    for c in clips:
        print(f"real: {sorted(detect_colours(c.frames))}  {c.prompt}")
    for spec in a.models:
        path, _, codecs = spec.partition("=")
        pipe = HarmonyPipeline.from_pretrained(path, codecs=codecs or None, log=lambda m: None)
        outs = model_generate_fn(pipe, steps=a.steps)("T2AV", clips, [0] * len(clips))
        frames = [np.asarray(o[0]) for o in outs]
        rows.append([f[a.frame] for f in frames])
        name = os.path.basename(os.path.dirname(path)) or path
        print(f"{name}: " + " | ".join(str(sorted(detect_colours(f))) for f in frames))
    sheet = np.concatenate([np.concatenate(r, 1) for r in rows], 0)
    img = Image.fromarray((np.clip(sheet, 0, 1) * 255).round().astype(np.uint8))
    img.resize((img.width * 3, img.height * 3), Image.NEAREST).save(a.output)
    print(f"wrote {a.output}: rows real, {', '.join(a.models)}")


if __name__ == "__main__":
    main()
