"""The paper's ablation at toy scale, one command: ``python -m harmony ablate``.

Rows (same clips, steps and training seeds; the variants differ only in what
the row names):

====  ==========================================================  ============================
row   model / training                                            config overrides
====  ==========================================================  ============================
A     Ovi-like global interaction, joint loss only (baseline)     interaction=global, audio_rope=ovi
B     + Cross-Task Synergy (λv 0.1, λa 0.3)                        interaction=global, audio_rope=ovi
C     GLDI local interaction, no RoPE alignment                    interaction=gldi, audio_rope=ovi
D     + RoPE alignment (the paper's model)                         interaction=gldi, audio_rope=aligned
E     D + SyncCFG at inference (rows A-D use plain CFG)            -
W2/W4 D with a local window of 2 / 4 video latent frames (D: 1)    local_window=2 / 4
L0    D with λv = λa = 0 (joint loss only)                          -
L1    D with λv = λa = 1                                             -
====  ==========================================================  ============================

"No RoPE alignment" uses Ovi's fixed audio position scale (0.19676, right for
Ovi's latent rates): in our world (16 video latent frames and 31.25 audio
latents per second) it maps 2 s of audio onto 12.3 positions for 32 video
frames, so audio and video positions disagree, as in a model that was not aligned.

Stages, each resumable (finished outputs are kept and skipped):

1. one shared latent pool (``pool.safetensors``): world clips from the
   training seeds, encoded once by the bundled codecs;
2. every (variant, seed) trained by ``python -m harmony train`` in its own
   process (one thread each, ``--parallel`` at a time), EMA snapshots every
   ``--drift-every`` steps;
3. every final model evaluated on held-out seeds (decoded media, per split,
   T2AV) with plain CFG and with SyncCFG, and the snapshots of L0 (joint only)
   and D (Cross-Task) for the drift curve;
4. the report: ``ablation.md`` (table, mean ± sd over training seeds),
   ``ablation.json`` and ``drift.png`` in ``--docs``.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass

from .guidance import DEFAULT_SA, DEFAULT_SV
from .probe import SIGMAS

SMALL = "dim=64,ffn_dim=192,num_heads=2,num_layers=2"
"""The ablation model: both towers 64 wide, 2 layers (0.75 M DiT parameters)."""
GLOBAL, LOCAL, LOCAL_ALIGNED = ("interaction=global,audio_rope=ovi", "interaction=gldi,audio_rope=ovi",
                                "interaction=gldi,audio_rope=aligned")
METRICS = (  # (key in harmony.evaluate rows, header, better)
    ("confidence", "sync conf", "high"),
    ("abs_offset_s", "|offset| s", "low"),
    ("f1_av", "F1 a<->v", "high"),
)


@dataclass(frozen=True)
class Variant:
    name: str
    group: str  # "main" | "window" | "weights"
    label: str
    overrides: str
    tasks: str = "synergy"
    lambda_v: float = 0.1
    lambda_a: float = 0.3

    def train_args(self) -> list:
        return ["--overrides", f"{SMALL},{self.overrides}", "--tasks", self.tasks,
                "--lambda-v", f"{self.lambda_v:g}", "--lambda-a", f"{self.lambda_a:g}"]


VARIANTS = (
    Variant("A", "main", "global interaction, joint loss (Ovi-like baseline)", GLOBAL, "joint", 0.0, 0.0),
    Variant("B", "main", "+ Cross-Task Synergy", GLOBAL),
    Variant("C", "main", "GLDI local, no RoPE alignment", LOCAL),
    Variant("D", "main", "+ RoPE alignment", LOCAL_ALIGNED),
    Variant("W2", "window", "D, local window 2 frames", LOCAL_ALIGNED + ",local_window=2"),
    Variant("W4", "window", "D, local window 4 frames", LOCAL_ALIGNED + ",local_window=4"),
    Variant("L0", "weights", "D, λv = λa = 0 (joint only)", LOCAL_ALIGNED, "joint", 0.0, 0.0),
    Variant("L1", "weights", "D, λv = λa = 1", LOCAL_ALIGNED, "synergy", 1.0, 1.0),
)
BY_NAME = {v.name: v for v in VARIANTS}
DRIFT = ("L0", "D")  # joint only vs Cross-Task, same architecture
PRIORITY = ("A", "B", "C", "D", "L0", "L1", "W2", "W4")


@dataclass
class Settings:
    out: str = "runs/ablation"
    docs: str = "docs/ablation"
    variants: tuple = tuple(BY_NAME)
    seeds: tuple = (0, 1)
    steps: int = 1000
    batch: int = 8
    lr: float = 1e-3
    warmup: int = 100
    ema: float = 0.99
    seconds: float = 2.0
    clips: int = 3000
    parallel: int = 2
    eval_n: int = 8
    eval_steps: int = 20
    drift_every: int = 200
    drift_n: int = 4


def run_name(variant: str, seed: int) -> str:
    return f"{variant}_s{seed}"


# ----------------------------------------------------------------------------- the task graph

@dataclass
class Task:
    name: str
    cmd: list
    done: str  # output file that marks it finished
    deps: tuple = ()
    log: str = ""


def _python() -> list:
    return [sys.executable, "-m", "harmony"]


def plan(s: Settings) -> list:
    """Every training and evaluation task, in a good order to run them (long ones first)."""
    pool = os.path.join(s.out, "pool.safetensors")
    tasks, evals = [], []
    order = sorted(s.variants, key=lambda v: PRIORITY.index(v))  # the main rows and the drift pair first
    for v in order:
        for seed in s.seeds:
            name = run_name(v, seed)
            folder = os.path.join(s.out, "runs", name)
            drift = v in DRIFT and s.drift_every > 0
            tasks.append(Task(
                f"train {name}",
                _python() + ["train", "--out", folder, "--latents", pool, "--steps", str(s.steps),
                             "--batch", str(s.batch), "--lr", f"{s.lr:g}", "--warmup", str(s.warmup),
                             "--ema", f"{s.ema:g}", "--seconds", f"{s.seconds:g}", "--seed", str(seed),
                             "--save-every", str(s.steps), "--log-every", "25",
                             "--export-every", str(s.drift_every if drift else 0)] + BY_NAME[v].train_args(),
                os.path.join(folder, "harmony_tiny.safetensors")))
            evals.append(_eval_task(s, f"eval {name}", os.path.join(folder, "harmony_tiny.safetensors"),
                                    os.path.join(s.out, "eval", f"{name}.json"), s.eval_n, "cfg,synccfg",
                                    (f"train {name}",)))
            if drift:
                for step in range(s.drift_every, s.steps, s.drift_every):
                    evals.append(_eval_task(
                        s, f"drift {name} {step}", os.path.join(folder, f"ema_step{step}.safetensors"),
                        os.path.join(s.out, "drift", f"{name}_{step}.json"), s.drift_n, "cfg", (f"train {name}",)))
    return tasks + evals


def _eval_task(s: Settings, name, model, out, n, guidance, deps) -> Task:
    return Task(name, _python() + ["evaluate", "--model", model, "-n", str(n), "--jobs", "T2AV",
                                   "--guidance", guidance, "--steps", str(s.eval_steps),
                                   "--seconds", f"{s.seconds:g}", "--no-ceiling", "--no-progress", "-o", out],
                out, deps)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def running_elsewhere(t: Task) -> bool:
    """Another ``ablate`` command (same folder) is running this task: its ``<done>.running``
    marker names a live process."""
    try:
        with open(t.done + ".running") as fh:
            return _alive(int(fh.read().strip()))
    except (OSError, ValueError):
        return False


def run_tasks(tasks: list, parallel: int, logdir: str, say=print) -> list:
    """Run the tasks, ``parallel`` at a time, each with one CPU thread; a task whose
    ``done`` file exists is skipped, one that another command is running (its marker
    names a live process) is waited for. Returns the names of the tasks that failed."""
    os.makedirs(logdir, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    pending = [t for t in tasks if not os.path.exists(t.done)]
    finished = {t.name for t in tasks if os.path.exists(t.done)}
    failed, running = [], {}
    t0 = time.time()
    while pending or running:
        for t in sorted(pending, key=lambda t: not t.deps):  # ready evaluations before new training
            if os.path.exists(t.done):  # finished by another command
                pending.remove(t)
                finished.add(t.name)
                continue
            if running_elsewhere(t):
                continue
            if len(running) >= parallel:
                break
            if any(d in failed for d in t.deps):
                pending.remove(t)
                failed.append(t.name)
                continue
            if all(d in finished for d in t.deps):
                pending.remove(t)
                os.makedirs(os.path.dirname(t.done) or ".", exist_ok=True)
                t.log = os.path.join(logdir, t.name.replace(" ", "_") + ".log")
                fh = open(t.log, "w")
                proc = subprocess.Popen(t.cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
                with open(t.done + ".running", "w") as marker:
                    marker.write(str(proc.pid))
                running[t.name] = (t, proc, fh, time.time())
        if pending and not running and all(running_elsewhere(t) or any(d not in finished for d in t.deps)
                                           for t in pending):
            time.sleep(4.0)  # only waiting for another command's tasks
        time.sleep(1.0)
        for name, (t, proc, fh, start) in list(running.items()):
            if proc.poll() is None:
                continue
            fh.close()
            del running[name]
            os.remove(t.done + ".running")
            ok = proc.returncode == 0 and os.path.exists(t.done)
            (finished.add(name) if ok else failed.append(name))
            say(f"[{time.time() - t0:6.0f}s] {'done' if ok else 'FAILED'}: {name} ({time.time() - start:.0f}s"
                + ("" if ok else f"; log {t.log}") + ")")
    return failed


def make_pool(s: Settings, say=print):
    """The shared latent pool: ``s.clips`` world clips from the training seeds, encoded once."""
    path = os.path.join(s.out, "pool.safetensors")
    if os.path.exists(path):
        return path
    from .codecs import load_codecs
    from .train import LatentPool

    os.makedirs(s.out, exist_ok=True)
    t0 = time.time()
    pool = LatentPool(load_codecs(), s.seconds, s.clips, seed=20251126, workers=s.parallel)
    pool.save(path, {"clips": s.clips})
    say(f"latent pool: {s.clips} clips of {s.seconds:g} s rendered and encoded in {time.time() - t0:.0f}s")
    return path


# ----------------------------------------------------------------------------- the report

def mean_sd(values) -> tuple:
    """Mean and sample standard deviation (ddof 1; 0 for one value); NaNs dropped."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return float("nan"), float("nan")
    m = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return m, sd


def _rows(path: str) -> list:
    with open(path) as fh:
        data = json.load(fh)
    return data["rows"] if isinstance(data, dict) else data


def collect(s: Settings) -> dict:
    """``{(row, split, metric): [value per training seed]}`` from the evaluation files.
    Rows A-D and the sweeps use plain CFG; row E is D's models under SyncCFG; every
    variant's SyncCFG result is also kept as ``"<name>+SyncCFG"``. ``split`` includes "all"."""
    from .world import SPLITS

    table = {}
    for v in s.variants:
        for seed in s.seeds:
            path = os.path.join(s.out, "eval", f"{run_name(v, seed)}.json")
            if not os.path.exists(path):
                continue
            for r in _rows(path):
                if r.get("kind") != "model":
                    continue
                mode = r["name"].split(" ", 1)[1]
                names = [v] if mode == "cfg" else [f"{v}+SyncCFG"] + (["E"] if v == "D" else [])
                for name in names:
                    for key, _, _ in METRICS:
                        table.setdefault((name, r["split"], key), []).append(r[key])
    for (name, split, key), vals in list(table.items()):  # the mean over splits, per seed
        if split == SPLITS[0]:
            per_split = [table.get((name, sp, key), []) for sp in SPLITS]
            if all(len(p) == len(vals) for p in per_split):
                table[(name, "all", key)] = [sum(p[i] for p in per_split) / len(SPLITS) for i in range(len(vals))]
    return table


def drift_points(s: Settings) -> dict:
    """``{variant: {step: {metric: [per seed]}}}`` of the snapshot evaluations (mean over splits)."""
    out = {}
    for v in DRIFT:
        for seed in s.seeds:
            for step in range(s.drift_every, s.steps + 1, s.drift_every) if s.drift_every > 0 else ():
                path = (os.path.join(s.out, "eval", f"{run_name(v, seed)}.json") if step >= s.steps else
                        os.path.join(s.out, "drift", f"{run_name(v, seed)}_{step}.json"))
                if not os.path.exists(path):
                    continue
                rows = [r for r in _rows(path) if r.get("kind") == "model" and r["name"].endswith(" cfg")]
                if not rows:
                    continue
                for key, _, _ in METRICS:
                    vals = [r[key] for r in rows if not math.isnan(r[key])]
                    out.setdefault(v, {}).setdefault(step, {}).setdefault(key, []).append(
                        sum(vals) / len(vals) if vals else float("nan"))
    return out


ROW_ORDER = ("A", "B", "C", "D", "E", "W2", "W4", "L0", "L1")
ROW_LABEL = {**{v.name: v.label for v in VARIANTS}, "E": "+ SyncCFG at inference (D's models)"}


def _cell(vals, fmt=".3f") -> str:
    """``mean ± sd`` over seeds; one seed has no spread: its value alone."""
    m, sd = mean_sd(vals)
    if math.isnan(m):
        return "-"
    return f"{m:{fmt}}" if len([v for v in vals if not math.isnan(float(v))]) < 2 else f"{m:{fmt}} ± {sd:{fmt}}"


def format_report(s: Settings, table: dict, ceiling: list | None = None) -> str:
    """Markdown: one table per split (and "all" = the mean of the splits' values per seed), rows A-E,
    the sweeps, every variant under SyncCFG, and the held-out references (real clips through
    the codecs; real video with another clip's audio)."""
    from .world import SPLITS

    names = [r for r in ROW_ORDER if r in s.variants or (r == "E" and "D" in s.variants)]
    names += [f"{v}+SyncCFG" for v in s.variants if v != "D"]
    by = {(r["split"], r["name"]): r for r in (ceiling or [])}
    out = []
    for sp in list(SPLITS) + ["all"]:
        out.append(f"**{sp}**" + (" (mean of the three splits)" if sp == "all" else "") + "\n")
        out.append("| row | variant | seeds | " + " | ".join(f"{h} ({b}er better)" for _, h, b in METRICS) + " |")
        out.append("|---|---|---|" + "---|" * len(METRICS))
        for name in names:
            label = ROW_LABEL.get(name) or ROW_LABEL[name.split("+")[0]] + ", SyncCFG"
            n = len(table.get((name, sp, METRICS[0][0]), []))
            out.append(f"| {name} | {label} | {n} | "
                       + " | ".join(_cell(table.get((name, sp, key), [])) for key, _, _ in METRICS) + " |")
        for ref in ("real+codec", "audio shuffled"):
            splits = SPLITS if sp == "all" else (sp,)
            if not all((x, ref) in by for x in splits):
                continue
            cells = [f"{sum(by[(x, ref)][key] for x in splits) / len(splits):.3f}" for key, _, _ in METRICS]
            out.append(f"| ref | {ref} ({by[(splits[0], ref)]['n']} clips per split) | - | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


PROBE_SETTINGS = (("joint", "T2AV (both noisy)"), ("V2A", "V2A: audio reads video"), ("A2V", "A2V: video reads audio"))


def probe_key(run: str, step: int, s: Settings) -> str:
    return run if step >= s.steps else f"{run}@{step}"


def format_probe(s: Settings, probes: dict) -> str:
    """Markdown: partner-use gain (mean over sigmas) per row, mean ± sd over training seeds."""
    head = "| row | variant | seeds | " + " | ".join(f"gain, {label}" for _, label in PROBE_SETTINGS) + " |"
    lines = [head, "|---|---|---|" + "---|" * len(PROBE_SETTINGS)]
    for v in [r for r in ROW_ORDER if r in s.variants]:
        runs = [probes[run_name(v, seed)] for seed in s.seeds if run_name(v, seed) in probes]
        cells = [_cell([r[k]["mean"] for r in runs]) for k, _ in PROBE_SETTINGS]
        lines.append(f"| {v} | {ROW_LABEL[v]} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def drift_probe(s: Settings, probes: dict) -> dict:
    """``{variant: {step: {"gain_joint": [per seed], ...}}}`` for the drift pair."""
    out = {}
    for v in DRIFT:
        for seed in s.seeds:
            for step in range(s.drift_every, s.steps + 1, s.drift_every) if s.drift_every > 0 else ():
                g = probes.get(probe_key(run_name(v, seed), step, s))
                if g is None:
                    continue
                for k, _ in PROBE_SETTINGS:
                    out.setdefault(v, {}).setdefault(step, {}).setdefault(f"gain_{k}", []).append(g[k]["mean"])
    return out


def plot_drift(points: dict, path: str, s: Settings):
    """The drift picture: sync metrics of EMA snapshots over training, joint only vs Cross-Task."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("the drift plot needs matplotlib: pip install matplotlib "
                          "(it is in requirements-dev.txt), then rerun with --report-only") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [m for m in METRICS if m[0] != "abs_offset_s"] + [m for m in METRICS if m[0] == "abs_offset_s"]
    keys += [(f"gain_{k}", f"partner gain, {k} (1 = ignored)", "high") for k, _ in PROBE_SETTINGS
             if any(f"gain_{k}" in p for v in points.values() for p in v.values())]
    cols = 3
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.3 * rows), squeeze=False)
    axes = axes.ravel()
    for ax in axes[len(keys):]:
        ax.axis("off")
    for ax, (key, head, better) in zip(axes, keys):
        for v, colour in zip(DRIFT, ("tab:gray", "tab:red")):
            steps = sorted(st for st in points.get(v, {}) if key in points[v][st])
            stats = [mean_sd(points[v][st][key]) for st in steps]
            if not steps:
                continue
            m = [x[0] for x in stats]
            sd = [x[1] for x in stats]
            label = "joint loss only (L0)" if v == "L0" else "Cross-Task Synergy (D)"
            ax.plot(steps, m, "o-", color=colour, label=label)
            ax.fill_between(steps, [a - b for a, b in zip(m, sd)], [a + b for a, b in zip(m, sd)],
                            color=colour, alpha=0.2)
        ax.set_xlabel("training step")
        ax.set_title(f"{head} ({better}er is better)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Over training, GLDI + RoPE alignment, joint loss only vs Cross-Task Synergy (mean ± sd over "
                 f"{len(s.seeds)} seeds). Sync: T2AV, plain CFG, {s.drift_n} held-out clips per split ({s.eval_n} at the "
                 f"last step); "
                 f"partner gain: {s.eval_n} clips per split (1 = partner ignored)", fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ceiling_rows(s: Settings) -> list:
    """Real clips (and through the codecs) and the shuffled-audio floor on the same held-out seeds."""
    path = os.path.join(s.out, "ceiling.json")
    if os.path.exists(path):
        with open(path) as fh:
            return json.load(fh)
    from .batch_generate import codec_roundtrip_fn
    from .evaluate import evaluate
    from .pipeline import HarmonyPipeline

    pipe = HarmonyPipeline.from_pretrained(None, log=lambda m: None)
    rows = evaluate(None, s.eval_n, ("T2AV",), codec_roundtrip_fn(pipe), s.seconds)
    with open(path, "w") as fh:
        json.dump(rows, fh, indent=1)
    return rows


def probe_all(s: Settings, say=print) -> dict:
    """``{run or "run@step": harmony.probe.partner_gains(...)}`` for every final model and drift
    snapshot that exists, on ``s.eval_n`` held-out clips per split (cached in ``probe.json``)."""
    path = os.path.join(s.out, "probe.json")
    cache = {}
    if os.path.exists(path):
        with open(path) as fh:
            cache = json.load(fh)
    models = {}
    for v in s.variants:
        for seed in s.seeds:
            folder = os.path.join(s.out, "runs", run_name(v, seed))
            models[run_name(v, seed)] = os.path.join(folder, "harmony_tiny.safetensors")
            if v in DRIFT and s.drift_every > 0:
                for step in range(s.drift_every, s.steps, s.drift_every):
                    models[f"{run_name(v, seed)}@{step}"] = os.path.join(folder, f"ema_step{step}.safetensors")
    todo = {k: p for k, p in models.items() if k not in cache and os.path.exists(p)}
    if todo:
        from .pipeline import HarmonyPipeline
        from .probe import encode_clips, heldout_clips, partner_gains

        clips, other = heldout_clips(max(2, s.eval_n), s.seconds)
        for key, model_path in sorted(todo.items()):
            pipe = HarmonyPipeline.from_pretrained(model_path, device="cpu", log=lambda m: None)
            v0, a0, cond = encode_clips(pipe, clips)  # texts through this model's own text encoder
            cache[key] = {k: {str(x): y for x, y in v.items()}
                          for k, v in partner_gains(pipe.model, v0, a0, cond, other).items()}
        with open(path, "w") as fh:
            json.dump(cache, fh, indent=1)
        say(f"partner-use probe: {len(todo)} models")
    return cache


def report(s: Settings, say=print) -> str:
    import torch

    torch.set_num_threads(1)  # small batches: one thread is fastest, and never oversubscribes a busy machine
    table = collect(s)
    probes = probe_all(s, say)
    tables = format_report(s, table, ceiling_rows(s))
    points = drift_points(s)
    for v, steps in drift_probe(s, probes).items():
        for step, vals in steps.items():
            points.setdefault(v, {}).setdefault(step, {}).update(vals)
    os.makedirs(s.docs, exist_ok=True)
    plot = os.path.join(s.docs, "drift.png")
    if points:
        plot_drift(points, plot, s)
    with open(os.path.join(s.docs, "ablation.json"), "w") as fh:
        json.dump({"settings": s.__dict__, "table": {" | ".join(k): v for k, v in sorted(table.items())},
                   "drift": points, "probe": probes}, fh, indent=1, default=list)
    text = (f"Settings: {s.steps} steps, batch {s.batch}, lr {s.lr:g}, EMA {s.ema:g}, {s.seconds:g} s clips, "
            f"a shared pool of {s.clips} clips, model `{SMALL}`, training seeds {list(s.seeds)}; "
            f"T2AV on {s.eval_n} held-out clips per split, {s.eval_steps} steps; rows A-D, the sweeps and "
            f"the references use plain CFG (sv {DEFAULT_SV:g} / sa {DEFAULT_SA:g} as text-CFG scales), "
            f"E and `+SyncCFG` rows SyncCFG (sv {DEFAULT_SV:g}, sa {DEFAULT_SA:g}); cells: mean ± sd "
            f"over training seeds.\n\n" + tables
            + "\n**Partner use** (`harmony.probe`: x0 MSE with another clip's partner / with the clip's own, "
              f"mean over sigma {', '.join(map(str, SIGMAS))}, {s.eval_n} held-out clips per split; 1 = ignored)\n\n"
            + format_probe(s, probes) + "\n")
    with open(os.path.join(s.docs, "table.md"), "w") as fh:
        fh.write(text)
    say(text)
    return text


# ----------------------------------------------------------------------------- CLI

def main(argv=None):
    from .cli import Parser, program

    d = Settings()
    ap = Parser(prog=f"{program()} ablate",
                description="The paper's ablation at toy scale (module docstring of harmony/ablate.py): "
                            "train every variant with every seed, evaluate, write the table and drift plot.")
    ap.add_argument("--out", default=d.out, help="work folder (pool, runs, evaluations, logs)")
    ap.add_argument("--docs", default=d.docs, help="where the table, JSON and drift.png go")
    ap.add_argument("--variants", default=",".join(d.variants), help="comma-separated subset of " + ",".join(BY_NAME))
    ap.add_argument("--seeds", default=",".join(map(str, d.seeds)), help="comma-separated training seeds")
    for name in ("steps", "batch", "clips", "parallel", "eval_n", "eval_steps", "drift_every", "drift_n"):
        ap.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name), help=f"(see Settings.{name})")
    for name in ("lr", "ema", "seconds"):
        ap.add_argument("--" + name, type=float, default=getattr(d, name), help=f"(see Settings.{name})")
    ap.add_argument("--warmup", type=int, default=d.warmup, help="learning-rate warm-up steps")
    ap.add_argument("--report-only", action="store_true", help="only write the report from what exists")
    ap.add_argument("--dry-run", action="store_true", help="print the commands and stop")
    a = ap.parse_args(argv)
    variants = tuple(v.strip() for v in a.variants.split(",") if v.strip())
    bad = [v for v in variants if v not in BY_NAME]
    if bad:
        ap.error(f"--variants: unknown {bad}; choose from {', '.join(BY_NAME)}")
    try:
        seeds = tuple(int(x) for x in a.seeds.split(",") if x.strip())
    except ValueError:
        ap.error(f"--seeds: expected comma-separated integers, got {a.seeds!r}")
    if not seeds or min(a.steps, a.batch, a.clips, a.parallel, a.eval_n, a.eval_steps, a.drift_n) < 1:
        ap.error("--seeds must name at least one seed; --steps, --batch, --clips, --parallel, --eval-n, "
                 "--eval-steps and --drift-n must be >= 1")
    s = Settings(out=a.out, docs=a.docs, variants=variants, seeds=seeds, steps=a.steps, batch=a.batch, lr=a.lr,
                 warmup=a.warmup, ema=a.ema, seconds=a.seconds, clips=a.clips, parallel=a.parallel,
                 eval_n=a.eval_n, eval_steps=a.eval_steps, drift_every=a.drift_every, drift_n=a.drift_n)
    tasks = plan(s)
    if a.dry_run:
        for t in tasks:
            print(" ".join(t.cmd))
        return
    if not a.report_only:
        t0 = time.time()
        make_pool(s)
        failed = run_tasks(tasks, s.parallel, os.path.join(s.out, "logs"))
        print(f"{len(tasks) - len(failed)}/{len(tasks)} tasks done in {time.time() - t0:.0f}s"
              + (f"; failed: {', '.join(failed)}" if failed else ""))
    report(s)


if __name__ == "__main__":
    main()
