"""Weight-space blend of two exports of one model (WiSE-FT, Wortsman et al. 2022): ``w * A + (1 - w) * B``
for the tensors whose names match ``--only``, B's tensors as they are for the rest; B's metadata and its
``.text.safetensors`` go with the result. Both exports must come from one start (B fine-tuned from A, or
both from one file): then the blend keeps part of what each learned (notebook X12: A2V's speech-only
blocks W3 blended with X6, their fine-tune on every split).

    python scripts/blend_weights.py harmony/assets/harmony_tiny.safetensors runs/x/x6/ema_step900.safetensors \\
        runs/x/blend/harmony_tiny.safetensors --a-job A2V --weight 0.7 --only 'video_model\\.blocks\\.'
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def blend(a: dict, b: dict, weight: float, only: str = "") -> tuple[dict, int]:
    """``weight * a + (1 - weight) * b`` (in fp32, stored in b's dtype) for every tensor of ``b`` whose name
    matches ``only`` (``re.match``; empty: all); ``b``'s other tensors as they are. Returns the tensors and
    how many were blended. Refuses a weight outside [0, 1], and a matched tensor missing from ``a`` or of
    another shape there."""
    if not 0 <= weight <= 1:
        raise ValueError(f"--weight must be between 0 and 1 (the share of A), got {weight}")
    pattern = re.compile(only)
    out, n = {}, 0
    for name, tb in b.items():
        if not pattern.match(name):
            out[name] = tb
            continue
        ta = a.get(name)
        if ta is None or tuple(ta.shape) != tuple(tb.shape):
            got = "missing" if ta is None else f"of shape {tuple(ta.shape)}"
            raise ValueError(f"A's {name} is {got}, B's is of shape {tuple(tb.shape)}: blend exports of one "
                             "model (the same config), e.g. a run and its fine-tune")
        out[name] = (weight * ta.float() + (1 - weight) * tb.float()).to(tb.dtype)
        n += 1
    if n == 0:
        raise ValueError(f"--only {only!r} matches no tensor of B: nothing would be blended")
    return out, n


def main(argv=None):
    from harmony.job_weights import split_keys
    from harmony.jobs import JOBS
    from harmony.weightfile import read_header, read_state_dict, save_safetensors

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a", help="export A (.safetensors)")
    ap.add_argument("b", help="export B (.safetensors); its metadata and .text.safetensors go with the result")
    ap.add_argument("output", help="file to write (.safetensors); its .text.safetensors is written beside it")
    ap.add_argument("--weight", type=float, required=True, help="A's share, 0..1 (1: A's tensors, 0: B's)")
    ap.add_argument("--only", default="", help="regular expression of the tensors blended (default: all)")
    ap.add_argument("--a-job", default="", metavar="JOB",
                    help="A is a file with job weights (python -m harmony job-weights): JOB's own tensors stand in "
                         "for the shared ones, as that job samples")
    args = ap.parse_args(argv)
    if not args.output.endswith(".safetensors"):
        ap.error(f"output {args.output!r}: give a .safetensors path")
    text_in = args.b.replace(".safetensors", ".text.safetensors")
    if not os.path.isfile(text_in):
        ap.error(f"B {args.b!r} has no {os.path.basename(text_in)} beside it (a training export has one)")
    if args.a_job and args.a_job not in JOBS:
        ap.error(f"--a-job {args.a_job!r}: give one of {', '.join(JOBS)}")
    try:
        a = read_state_dict(args.a, "A")
        if args.a_job:  # the job's view of A: its own tensors over the shared ones
            shared, jobs = split_keys(a)
            if args.a_job not in jobs:
                raise ValueError(f"A {args.a!r} holds no own weights for {args.a_job} (jobs: {sorted(jobs) or 'none'})")
            a = {**{k: a[k] for k in shared}, **{name: a[key] for name, key in jobs[args.a_job].items()}}
        out, n = blend(a, read_state_dict(args.b, "B"), args.weight, args.only)
    except ValueError as e:
        ap.error(str(e))
    save_safetensors(out, args.output, read_header(args.b, "B").metadata)
    shutil.copyfile(text_in, args.output.replace(".safetensors", ".text.safetensors"))
    print(f"wrote {args.output}: {n} of {len(out)} tensors blended, {args.weight:g} x A + {1 - args.weight:g} x B")


if __name__ == "__main__":
    main()
