"""Lab (issue 19, entry Q1): the first-frame detail gate (harmony.codecs.keyframe) on I2AV.

For each (keep, drop) setting of the gate, on the *tuning* seeds of every split (I2AV, SyncCFG, the
model file's settings): sync confidence, visual-event F1 and colour F1 (harmony.metrics); PSNR of
frames 1..N against the true clip inside the regions that move in the truth and outside them; and
the *ghost*: the mean absolute change the transfer makes where the generated frame itself differs
from its frame 0 by more than 0.2 (there it can only paint the old picture over new content).
Then the out-of-world images of the i2av_foreign control: PSNR of frames 1..N against the image
(reported, not used to choose).

    python scripts/first_frame_detail_lab.py [--n 6] [--steps 20]
"""
import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harmony.batch_generate import generate_batch
from harmony.codecs.keyframe import first_frame_detail
from harmony.controls import foreign_images
from harmony.metrics import clip_metrics, first_frame_similarity
from harmony.pipeline import HarmonyPipeline
from harmony.world import SPLITS, render, sample_scene, tuning_seeds

GATES = [None, (0.05, 0.15), (0.1, 0.2), (0.1, 0.25), (0.15, 0.3), (0.1, 0.4), (0.1, 0.6), (0.0, 1e9)]  # None: plain decode; last: no gate


def masked_psnr(a, b, mask) -> float:
    return float(10 * np.log10(1 / max(((a - b) ** 2)[mask].mean(), 1e-10))) if mask.any() else float("nan")


def dilate(mask) -> np.ndarray:
    """``[F, H, W]`` bool -> grown by 2 pixels, repeated over RGB ``[F, H, W, 3]``."""
    m = F.max_pool2d(torch.as_tensor(mask, dtype=torch.float32)[:, None], 5, 1, 2)[:, 0] > 0
    return m.numpy()[..., None].repeat(3, -1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=6, help="tuning clips per split")
    ap.add_argument("--steps", type=int, default=20)
    a = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.time()
    pipe = HarmonyPipeline.from_pretrained(log=lambda m: None)
    video = pipe.codecs.video

    def roundtrip(image):
        im = torch.as_tensor(image, dtype=torch.float32)
        with torch.no_grad():
            return im, video.decode(video.encode(im[None, None]))[0, 0].clamp(0, 1)

    def gated(frames, image, g):
        if g is None:
            return np.asarray(frames)
        im, rt = roundtrip(image)
        return first_frame_detail(torch.as_tensor(frames), im, rt, *g).numpy()

    rows = {g: [] for g in GATES}
    for split in SPLITS:
        seeds = list(tuning_seeds(split, a.n))
        clips = [render(sample_scene(s, split, 3.0)) for s in seeds]
        voices = [(c.ref_voice[None], c.sample_rate) if c.ref_voice is not None else None for c in clips]
        out = generate_batch(pipe, "I2AV", [(c.prompt, c.audio_caption, c.transcript) for c in clips], seeds,
                             first_frames=[c.frames[0] for c in clips], steps=a.steps, ref_voices=voices,
                             keep_given=False)
        for c, (f, w) in zip(clips, out):
            truth = c.frames[: len(f)]
            moving = dilate(np.abs(truth - truth[:1]).mean(-1) > 0.05)[1:]
            own_motion = (np.abs(f - f[:1]).mean(-1) > 0.2)[1:]
            for g in GATES:
                ff = gated(f, c.frames[0], g)
                m = clip_metrics((ff, w, c.fps, c.sample_rate), c.scene)
                ghost = np.abs(ff - f).mean(-1)[1:][own_motion].mean() if own_motion.any() else 0.0
                rows[g].append([m["confidence"], m["f1_video"], m["colour_f1"], masked_psnr(ff[1:], truth[1:], moving),
                                masked_psnr(ff[1:], truth[1:], ~moving), ghost])
        print(f"{split}: {time.time() - t0:.0f} s", flush=True)
    print("\nI2AV, tuning seeds (gate = (keep, drop); None = plain decode)")
    print("gate          | conf  | f1_video | colour_f1 | PSNR moving | PSNR static | ghost")
    for g, v in rows.items():
        print(f"{str(g):14s}|", " | ".join(f"{x:.3f}" for x in np.nanmean(np.array(v, float), 0)))

    images = foreign_images()
    if images:
        kinds = [k for k in images for _ in (0, 1)]
        out = generate_batch(pipe, "I2AV", [("", "", "")] * len(kinds), [0, 1] * len(images),
                             first_frames=[images[k] for k in kinds], steps=a.steps, keep_given=False)
        print("\nout-of-world images (seeds 0, 1): PSNR (dB) of frames 1..N vs the image")
        print("gate          | " + " | ".join(images))
        for g in GATES:
            vals = [np.mean([first_frame_similarity(gated(f, images[k], g), images[k])["persist_psnr_db"]
                             for (f, _), kk in zip(out, kinds) if kk == k]) for k in images]
            print(f"{str(g):14s}|", " | ".join(f"{v:.2f}" for v in vals))
    print(f"\n{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
