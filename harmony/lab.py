"""The fast lab loop: one experiment = a short CPU training run with a partner-use curve.

``python -m harmony lab NAME --minutes 10 [train options]`` trains into ``runs/lab/NAME``
for at most ``--minutes`` of wall time (``harmony.train`` with ``--max-minutes``),
probes the EMA weights every ``--probe-every`` minutes on held-out clips
(`harmony.probe.partner_gains`: V2A / A2V / I2AV gains at sigma 0.3 / 0.6 / 0.9),
and at the end writes ``curve.png`` (gains against optimizer steps) and ``summary.json`` (command, wall and CPU
seconds, the last probe). ``python -m harmony lab --plot DIR`` redraws the curve of
any run folder that has a ``probe.jsonl``. The verdicts live in the lab notebook,
``docs/training/experiments.md``.

Lab defaults (each can be overridden with the train option of the same name): the
small config ``dim=64,ffn_dim=192,num_heads=2,num_layers=2``, 2 s clips, batch 16,
lr 1e-3, EMA 0.99, a probe every minute on 8 held-out clips per split.
"""
from __future__ import annotations

import json
import os
import shlex
import sys

LAB_DEFAULTS = {
    "overrides": "dim=64,ffn_dim=192,num_heads=2,num_layers=2",
    "seconds": "2", "batch": "16", "lr": "1e-3", "warmup": "100", "ema": "0.99",
    "pool": "1024", "refresh": "256", "refresh-every": "500", "steps": "1000000",
    "probe-every": "1", "probe-clips": "8", "log-every": "50", "save-every": "1000000",
}
SETTINGS = ("V2A", "A2V", "I2AV", "joint")


def read_probe(run_dir: str) -> list[dict]:
    path = os.path.join(run_dir, "probe.jsonl")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"lab: {path!r} does not exist; train with --probe-every > 0 first")
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def plot_curve(run_dir: str, title: str | None = None) -> str:
    """``curve.png`` in ``run_dir``: each setting's gain at every probed sigma against wall minutes."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("the lab curve needs matplotlib: pip install matplotlib "
                          "(it is in requirements-dev.txt)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_probe(run_dir)
    steps = [r["step"] for r in rows]  # steps, not minutes: a loaded machine bends the time axis
    settings = [s for s in SETTINGS if s in rows[-1]]
    fig, axes = plt.subplots(1, len(settings), figsize=(3.2 * len(settings), 2.8), sharex=True)
    for ax, setting in zip(axes, settings):
        for sigma in ("0.3", "0.6", "0.9"):
            ax.plot(steps, [r[setting][sigma] for r in rows], marker=".", label=f"σ {sigma}")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_title(f"{setting} partner gain")
        ax.set_xlabel("optimizer steps")
    axes[0].legend(fontsize=7)
    name = title or os.path.basename(os.path.normpath(run_dir))
    fig.suptitle(f"{name}: {steps[-1]} steps in {rows[-1]['wall_s'] / 60:.1f} wall min", fontsize=9)
    fig.tight_layout()
    out = os.path.join(run_dir, "curve.png")
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def with_lab_defaults(train_argv: list[str], name: str, minutes: float, root: str) -> list[str]:
    """The train arguments: the lab defaults, then the caller's (theirs win), budget and folder."""
    given = {a[2:].split("=", 1)[0] for a in train_argv if a.startswith("--")}
    for bad in ("out", "max-minutes"):
        if bad in given:
            raise ValueError(f"lab: give the run's name and --minutes, not --{bad} "
                             f"(the run goes to {root}/<name>)")
    argv = []
    for key, value in LAB_DEFAULTS.items():
        if key not in given:
            argv += [f"--{key}", value]
    return argv + list(train_argv) + ["--max-minutes", str(minutes), "--out", os.path.join(root, name)]


def main(argv=None):
    from .cli import Parser, program

    argv = sys.argv[1:] if argv is None else argv
    ap = Parser(prog=f"{program()} lab", description=__doc__.split("\n\n")[1],
                epilog=f"example:\n  {program()} lab v2a_only --minutes 8 --split ambient --lambda-joint 0 "
                       "--lambda-v 0 --lambda-a 1\n  (any other option is a `train` option)")
    ap.add_argument("name", nargs="?", help="experiment name (its folder is <root>/<name>)")
    ap.add_argument("--minutes", type=float, default=10.0, help="wall-clock budget (the lab keeps it <= 15)")
    ap.add_argument("--root", default="runs/lab", help="folder of the lab's runs")
    ap.add_argument("--plot", metavar="DIR", help="only redraw DIR/curve.png from DIR/probe.jsonl")
    a, rest = ap.parse_known_args(argv)
    if a.plot:
        print(plot_curve(a.plot))
        return
    if not a.name:
        ap.error("give an experiment name (or --plot DIR)")
    if not 0 < a.minutes <= 15:
        ap.error(f"--minutes must be in (0, 15] (one idea per short experiment), got {a.minutes}")
    try:
        train_argv = with_lab_defaults(rest, a.name, a.minutes, a.root)
    except ValueError as e:
        ap.error(str(e))
    from .train import main as train_main

    train_main(train_argv)
    run_dir = os.path.join(a.root, a.name)
    with open(os.path.join(run_dir, "train_summary.json")) as fh:
        summary = json.load(fh)
    last = read_probe(run_dir)[-1]
    record = {"name": a.name, "command": f"{program()} lab {shlex.join(argv)}",
              "train_argv": train_argv, "steps": summary["steps"], "wall_s": summary["wall_s_this_run"],
              "cpu_s": summary.get("cpu_s_this_run"), "last_probe": last}
    with open(os.path.join(run_dir, "summary.json"), "w") as fh:
        json.dump(record, fh, indent=1)
    print(f"curve: {plot_curve(run_dir, a.name)}")
    print("last probe at σ 0.6: " + ", ".join(f"{s} {last[s]['0.6']:.3f}" for s in SETTINGS if s in last))
