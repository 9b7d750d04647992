"""Model files side by side on the tuning seeds' evaluation rows (never the held-out seeds).

Each model is ``FILE`` or ``FILE=CODECS`` (a model trained with other codecs than the bundled ones,
e.g. a DiT moved to a new codec: notebook Q6). For each job asked, SyncCFG at the file's own tuned
settings, ``--n`` tuning clips per split: sync confidence, |offset|, a<->v event F1, colour F1,
object-kind accuracy and the generated modality's event-count error (harmony.evaluate's rows).

    python scripts/compare_models.py harmony/assets/harmony_tiny.safetensors runs/q6/harmony_tiny.safetensors=runs/q5/cw10/tiny_codecs.safetensors --jobs T2AV
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harmony.batch_generate import model_generate_fn  # noqa: E402
from harmony.evaluate import evaluate  # noqa: E402
from harmony.pipeline import HarmonyPipeline  # noqa: E402
from harmony.world import tuning_seeds  # noqa: E402

KEYS = ("confidence", "abs_offset_s", "f1_av", "colour_f1", "kind_acc", "count_error_audio", "count_error_video")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", help="FILE or FILE=CODECS")
    ap.add_argument("--jobs", default="T2AV", help="comma-separated jobs")
    ap.add_argument("--n", type=int, default=8, help="tuning clips per split")
    ap.add_argument("--steps", type=int, default=20)
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    jobs = tuple(j.strip() for j in a.jobs.split(",") if j.strip())
    print("model | split | job | " + " | ".join(KEYS))
    for spec in a.models:
        path, _, codecs = spec.partition("=")
        pipe = HarmonyPipeline.from_pretrained(path, codecs=codecs or None, log=lambda m: None)
        rows = evaluate({"synccfg": model_generate_fn(pipe, steps=a.steps)}, n_per_split=a.n, jobs=jobs,
                        seeds_fn=tuning_seeds)
        for r in rows:
            if r["kind"] != "model":
                continue
            vals = " | ".join(f"{r.get(k, float('nan')):.3f}" for k in KEYS)
            print(f"{os.path.basename(os.path.dirname(path)) or path} | {r['split']} | {r['name']} | {vals}", flush=True)


if __name__ == "__main__":
    main()
