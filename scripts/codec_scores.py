"""Codec files side by side, as the evaluation reads their pictures (issue 19 item 3; notebook Q4, Q5).

For each codec pair file: the video round trip's PSNR on held-out world frames, colour F1 and
visual-event F1 through it on 24 tuning clips (harmony.metrics, as the evaluation reads them), and
the round trip of the i2av_foreign control's three out-of-world images.

    python scripts/codec_scores.py harmony/assets/tiny_codecs.safetensors runs/q5/cw10/tiny_codecs.safetensors
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from decoder_finetune import clip_scores, frames_of, psnr, roundtrip, tuning_clips  # noqa: E402


def main(argv=None):
    paths = argv if argv is not None else sys.argv[1:]
    if not paths or any(p.startswith("-") for p in paths):
        raise SystemExit(__doc__)
    torch.set_num_threads(2)
    from harmony.codecs.tiny import load_codecs
    from harmony.controls import foreign_images
    from harmony.world.scene import heldout_seeds

    clips = tuning_clips()
    world_test = frames_of([s for split in ("speech", "ambient", "complex") for s in heldout_seeds(split, 4)], 2.0, 4)
    images = foreign_images()
    control = torch.from_numpy(np.stack(list(images.values()))) if images else None
    for path in paths:
        video = load_codecs(path)[0]
        row = {"world_heldout_db": psnr(roundtrip(video, world_test), world_test), **clip_scores(video, clips)}
        if control is not None:
            rt = roundtrip(video, control)
            row.update({f"{k}_db": psnr(rt[i:i + 1], control[i:i + 1]) for i, k in enumerate(images)})
        print(path, json.dumps({k: round(v, 3) for k, v in row.items()}), flush=True)


if __name__ == "__main__":
    main()
