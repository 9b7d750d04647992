"""The sync badge each shipped template shows on its first run (issue 10 item 5).

Runs every ``workflows/*.json`` template with the pack's node runner (as ComfyUI
would on first open: widget values as shipped), and prints what the Save AV
node's badge shows: offset, confidence and verdict (nodes/save_av.py sync_level).

    python scripts/template_badges.py [--model FILE]   # default: the bundled model
    python scripts/template_badges.py --only harmony_v2a --seeds 7,1,2,3,4,5 --set st=0
        # other seeds than the template's (a user who changes the seed widget), a sampler widget changed
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]  # the pack, and tests/workflow_runner.py


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="model file standing in for the bundled one")
    ap.add_argument("--only", default="", help="only templates whose file name contains this")
    ap.add_argument("--seeds", default="", help="comma-separated seeds for the sampler's seed widget "
                                                 "(default: the template's, its first run)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="a sampler widget changed from the template's (a number), e.g. st=0; repeatable")
    args = ap.parse_args(argv)
    changes = {}
    for item in args.set:
        name, _, value = item.partition("=")
        try:
            number = float(value)  # "st" alone (no "=") gives "" here: refused too
            changes[name] = int(number) if number.is_integer() else number  # INT widgets (steps) take ints
        except ValueError:
            ap.error(f"--set {item!r}: give NAME=VALUE with a number, e.g. st=0")
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()] or [None]
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("HARMONY_OUTPUT_DIR", tempfile.mkdtemp(prefix="harmony_badges_"))
    from harmony import pipeline
    if args.model:
        pipeline.DEFAULT_MODEL = os.path.abspath(args.model)
    from nodes.save_av import UI_KEY
    from workflow_runner import node_definitions, run_workflow, widget_inputs

    sampler = widget_inputs(node_definitions()["HarmonySyncCFGSampler"])
    unknown = set(changes) - {name for name, *_ in sampler}
    if unknown:
        ap.error(f"--set: {sorted(unknown)} is not a widget of the sampler "
                 f"({', '.join(name for name, *_ in sampler)})")

    def adjusted(wf, seed):  # the sampler's widgets with the seed and the changes put in
        for node in wf["nodes"]:
            if node["type"] != "HarmonySyncCFGSampler":
                continue
            pos = 0
            for name, _, _, slots in sampler:
                if name == "seed" and seed is not None:
                    node["widgets_values"][pos] = seed
                if name in changes:
                    node["widgets_values"][pos] = changes[name]
                pos += slots
        return wf

    print(f"model: {args.model or 'bundled'}")
    paths = [p for p in sorted(glob.glob(os.path.join(ROOT, "workflows", "*.json")))
             if args.only in os.path.basename(p)]
    for path, seed in ((p, s) for p in paths for s in seeds):
        with open(path, encoding="utf-8") as f:
            wf = adjusted(json.load(f), seed)
        try:
            run = run_workflow(wf, log=lambda *a: None)
        except ValueError as e:  # the Ovi templates name real weights this machine does not have
            if "is not one of" not in str(e):
                raise
            print(f"{os.path.basename(path)}: skipped, its loader names weights that are not installed "
                  f"({str(e).splitlines()[1].strip()})", flush=True)
            continue
        for node_id, msg in run["ui"].items():
            clips = (msg or {}).get(UI_KEY) if isinstance(msg, dict) else None
            for clip in clips or []:
                off, conf = clip.get("offset_s"), clip.get("confidence")
                off_txt = "n/a" if off is None else f"{off * 1000:+.0f} ms ({off * clip['fps']:+.1f} frames)"
                conf_txt = "n/a" if conf is None else f"{conf:.2f}"
                at = "" if seed is None else f" (seed {seed})"
                print(f"{os.path.basename(path)}{at}: offset {off_txt}, confidence {conf_txt} -> "
                      f"{clip.get('sync_level')}", flush=True)


if __name__ == "__main__":
    main()
