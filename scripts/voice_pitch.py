"""Does T2AV still give each speaker their own voice pitch? (issue 19)

T2AV on the speech split's tuning seeds (not the reported held-out ones), SyncCFG, 3 s: the
median voice pitch of each generated clip next to the reference voice's, and the error in
semitones. A model that forgot the speaker gives every clip about the same pitch.

    python scripts/voice_pitch.py MODEL [MODEL ...] [-n 8]
    python scripts/voice_pitch.py MODEL --text OTHER.text.safetensors      # another text-encoder file
    python scripts/voice_pitch.py MODEL --take-from OTHER.safetensors --take 'style'  # swap DiT weights

``--take-from`` / ``--take REGEX``: DiT parameters whose names match REGEX come from OTHER (where a
behaviour lives: which part of a fine-tune lost it). ``--text``: the text encoders from another file.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harmony import metrics  # noqa: E402
from harmony.batch_generate import model_generate_fn  # noqa: E402
from harmony.guidance import default_scales  # noqa: E402
from harmony.pipeline import HarmonyPipeline  # noqa: E402
from harmony.world import render, sample_scene, tuning_seeds  # noqa: E402


def _text_file(path: str) -> str:
    return path[: -len(".safetensors")] + ".text.safetensors"


def combined(model: str, text: str | None, take_from: str | None, take: str | None, tmp: str) -> str:
    """A model file in ``tmp``: ``model``'s DiT with ``take``-matching weights from ``take_from``,
    and the text encoders of ``text`` (default: the model's own)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    weights = load_file(model)
    if take_from:
        pattern, other = re.compile(take), load_file(take_from)
        swapped = [k for k in weights if pattern.search(k)]
        if not swapped:
            raise SystemExit(f"--take {take!r} matches no parameter of {model}")
        weights.update({k: other[k] for k in swapped})
    with safe_open(model, "pt") as fh:
        meta = fh.metadata()
    out = os.path.join(tmp, "combined.safetensors")
    save_file(weights, out, metadata=meta)
    shutil.copy(text or _text_file(model), _text_file(out))
    return out


def voice_pitch(path: str, n: int, steps: int = 20) -> dict:
    pipe = HarmonyPipeline.from_pretrained(path, log=lambda m: None)
    sv, sa = default_scales(pipe.model.cfg)
    seeds = tuning_seeds("speech", n)
    clips = [render(sample_scene(s, "speech", 3.0)) for s in seeds]
    outs = list(model_generate_fn(pipe, "synccfg", steps, sv, sa, 1.0)("T2AV", clips, seeds))
    gen = [metrics.voice_pitch(np.asarray(w).reshape(-1), c.sample_rate) for c, (_, w) in zip(clips, outs)]
    ref = [metrics.voice_pitch(c.ref_voice, c.sample_rate) for c in clips]
    err = [abs(12 * np.log2(g / r)) for g, r in zip(gen, ref)]
    return {"generated_hz": [round(float(g), 1) for g in gen], "reference_hz": [round(float(r), 1) for r in ref],
            "error_st": [round(float(e), 1) for e in err], "mean_error_st": round(float(np.nanmean(err)), 2),
            "spread_generated_st": round(float(np.nanstd(12 * np.log2(np.asarray(gen)))), 2),
            "spread_reference_st": round(float(np.nanstd(12 * np.log2(np.asarray(ref)))), 2)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="exported model files")
    ap.add_argument("-n", type=int, default=8, help="speech tuning clips")
    ap.add_argument("--text", default=None, help="text-encoder file to use instead of each model's own")
    ap.add_argument("--take-from", default=None, help="model file to take the --take parameters from")
    ap.add_argument("--take", default=None, help="regular expression of DiT parameter names (with --take-from)")
    a = ap.parse_args(argv)
    if bool(a.take_from) != bool(a.take):
        ap.error("--take-from and --take go together: the file and the parameter names to take from it")
    for path in a.models + [p for p in (a.text, a.take_from) if p]:
        if not os.path.isfile(path):
            ap.error(f"{path!r} does not exist; give exported .safetensors files")
    for path in a.models:
        with tempfile.TemporaryDirectory() as tmp:
            use = combined(path, a.text, a.take_from, a.take, tmp) if (a.text or a.take_from) else path
            res = voice_pitch(use, a.n)
        label = path + (f" + text {a.text}" if a.text else "") + (f" + {a.take!r} from {a.take_from}" if a.take else "")
        print(label, res, flush=True)


if __name__ == "__main__":
    main()
