"""The sync badge each shipped template shows on its first run (issue 10 item 5).

Runs every ``workflows/*.json`` template with the pack's node runner (as ComfyUI
would on first open: widget values as shipped), and prints what the Save AV
node's badge shows: offset, confidence and verdict (nodes/save_av.py sync_level).

    python scripts/template_badges.py [--model FILE]   # default: the bundled model
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
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("HARMONY_OUTPUT_DIR", tempfile.mkdtemp(prefix="harmony_badges_"))
    from harmony import pipeline
    if args.model:
        pipeline.DEFAULT_MODEL = os.path.abspath(args.model)
    from nodes.save_av import UI_KEY
    from workflow_runner import run_workflow

    print(f"model: {args.model or 'bundled'}")
    for path in sorted(glob.glob(os.path.join(ROOT, "workflows", "*.json"))):
        with open(path, encoding="utf-8") as f:
            wf = json.load(f)
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
                print(f"{os.path.basename(path)}: offset {off_txt}, confidence {conf_txt} -> "
                      f"{clip.get('sync_level')}", flush=True)


if __name__ == "__main__":
    main()
