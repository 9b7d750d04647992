"""Held-out evaluation table: ceiling, floor and model rows per split and job.

``evaluate(generate_fn, n_per_split, jobs, codec_roundtrip=None, seconds=3.0)``
renders the first ``n_per_split`` held-out clips of each split (speech /
ambient / complex) and scores, with ``harmony.metrics.clip_metrics``:

- ceiling ``real``: the real clip; ``real+codec``: through
  ``codec_roundtrip(frames, wave) -> (frames, wave)`` when given;
- floor ``audio shifted``: real audio delayed by 0.5 s; ``audio shuffled``:
  the real audio of another clip of the same split;
- model rows, one per job: ``generate_fn(job, clip, seed) -> (frames, wave)``.
  The conditioning is in ``clip`` (prompt, audio_caption, transcript,
  ref_voice; first frame ``clip.frames[0]`` for I2AV; ``clip.wave`` for A2V;
  ``clip.frames`` for V2A). For A2V / V2A the given modality may be returned
  as ``None`` and the real one is used.

``format_table(rows)`` prints a plain-text table; ``rows`` are dicts with
split, kind (ceiling / floor / model), name, n and the mean of each metric.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .metrics import clip_metrics
from .world import SPLITS, heldout_seeds, render, sample_scene

JOBS = ("T2AV", "I2AV", "A2V", "V2A")
SHIFT_S = 0.5
COLUMNS = (  # (metric key, header, better)
    ("abs_offset_s", "|offset| s", "low"),
    ("confidence", "sync conf", "high"),
    ("f1_av", "F1 a<->v", "high"),
    ("f1_audio", "F1 audio", "high"),
    ("f1_video", "F1 video", "high"),
    ("pitch_error_st", "pitch err st", "low"),
    ("colour_f1", "colour F1", "high"),
    ("kind_acc", "kind acc", "high"),
    ("count_error_audio", "count err a", "low"),
)


def shift_audio(wave: np.ndarray, seconds: float, sr: int) -> np.ndarray:
    """``wave`` delayed by ``seconds`` (silence in front, same length)."""
    n = int(round(seconds * sr))
    out = np.zeros_like(wave)
    if n < len(wave):
        out[n:] = wave[: len(wave) - n]
    return out


def _as_numpy(x):
    if x is None:
        return None
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    return np.asarray(x, np.float32)


def _fit_wave(wave: np.ndarray, n: int) -> np.ndarray:
    wave = _as_numpy(wave)
    if wave.ndim == 2:
        wave = wave.mean(0)
    return wave[:n] if len(wave) >= n else np.pad(wave, (0, n - len(wave)))


def _mean_row(split, kind, name, results) -> dict:
    row = {"split": split, "kind": kind, "name": name, "n": len(results)}
    for key, _, _ in COLUMNS + (("offset_s", "", ""),):
        vals = [r[key] for r in results if r.get(key) is not None and not math.isnan(r[key])]
        row[key] = float(np.mean(vals)) if vals else float("nan")
    return row


def evaluate(generate_fn: Callable | None, n_per_split: int = 8, jobs=JOBS,
             codec_roundtrip: Callable | None = None, seconds: float = 3.0,
             splits=SPLITS, progress: Callable | None = None) -> list[dict]:
    """Rows of the held-out table (see module docstring); ``generate_fn=None`` scores
    only the ceiling and floor rows."""
    bad = [j for j in jobs if j not in JOBS]
    if bad:
        raise ValueError(f"evaluate: unknown jobs {bad}; expected a subset of {JOBS}")
    rows = []
    for split in splits:
        seeds = heldout_seeds(split, n_per_split)
        clips = [render(sample_scene(s, split, seconds)) for s in seeds]
        res: dict[tuple[str, str], list[dict]] = {}

        def add(kind, name, clip, frames, wave):
            wave = _fit_wave(wave, len(clip.wave))
            r = clip_metrics((frames, wave, clip.fps, clip.sample_rate), clip.scene, ref_voice=clip.ref_voice)
            res.setdefault((kind, name), []).append(r)

        for i, (seed, clip) in enumerate(zip(seeds, clips)):
            add("ceiling", "real", clip, clip.frames, clip.wave)
            if codec_roundtrip is not None:
                f, w = codec_roundtrip(clip.frames, clip.wave)
                add("ceiling", "real+codec", clip, _as_numpy(f), w)
            add("floor", f"audio shifted {SHIFT_S}s", clip, clip.frames, shift_audio(clip.wave, SHIFT_S, clip.sample_rate))
            other = clips[(i + 1) % len(clips)] if len(clips) > 1 else render(sample_scene(seed + 1, split, seconds))
            add("floor", "audio shuffled", clip, clip.frames, other.wave)
            if generate_fn is not None:
                for job in jobs:
                    f, w = generate_fn(job, clip, seed)
                    f = clip.frames if (f is None and job == "V2A") else _as_numpy(f)
                    w = clip.wave if (w is None and job == "A2V") else w
                    if f is None or w is None:
                        raise ValueError(f"evaluate: generate_fn returned no {'frames' if f is None else 'audio'} "
                                         f"for job {job} (seed {seed}); only A2V may omit audio and V2A frames")
                    add("model", job, clip, f, w)
            if progress is not None:
                progress(split, i + 1, len(seeds))
        rows += [_mean_row(split, kind, name, r) for (kind, name), r in res.items()]
    return rows


def format_table(rows: list[dict]) -> str:
    """Plain-text table, one line per row."""
    head = ["split", "kind", "name", "n"] + [h for _, h, _ in COLUMNS]
    body = []
    for r in rows:
        cells = [r["split"], r["kind"], r["name"], str(r["n"])]
        for key, _, _ in COLUMNS:
            v = r.get(key, float("nan"))
            cells.append("-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}")
        body.append(cells)
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    arrows = "  ".join(("" if i < 4 else ("(low)" if COLUMNS[i - 4][2] == "low" else "(high)")).ljust(w)
                       for i, w in enumerate(widths)).rstrip()
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(head), arrows, sep] + [line(c) for c in body])


def model_generate_fn(pipe, guidance: str = "synccfg", steps: int = 20, sv: float = 3.0, sa: float = 2.0,
                      text_cfg: float = 1.0, solver: str = "dpmpp_2m"):
    """A ``generate_fn`` that runs a :class:`~harmony.pipeline.HarmonyPipeline` on a held-out clip."""
    def generate(job, clip, seed):
        cond = pipe.encode_text(clip.prompt, clip.audio_caption, clip.transcript)
        kw = dict(seconds=clip.seconds, seed=seed, steps=steps, guidance=guidance, sv=sv, sa=sa,
                  text_cfg=text_cfg, solver=solver)
        if clip.ref_voice is not None:
            kw["ref_voice"] = (clip.ref_voice[None], clip.sample_rate)
        if job == "I2AV":
            kw["first_frame"] = clip.frames[0]
        elif job == "A2V":
            kw["driving_audio"] = (clip.wave[None], clip.sample_rate)
        elif job == "V2A":
            kw["driving_video"] = (clip.frames, clip.fps)
        frames, wave, _, _ = pipe.decode(pipe.sample(cond, **kw))
        return (None if job == "V2A" else frames), (None if job == "A2V" else wave[0])
    return generate


def codec_roundtrip_fn(pipe):
    """Real media through the pipeline's codecs (the ceiling any model can reach)."""
    import torch

    def roundtrip(frames, wave):
        with torch.no_grad():
            f = pipe.codecs.video.decode(pipe.codecs.video.encode(torch.as_tensor(frames)[None]))[0]
            w = pipe.codecs.audio.decode(pipe.codecs.audio.encode(torch.as_tensor(wave)[None]))[0]
        return f.clamp(0, 1), w[: len(wave)]
    return roundtrip


def main(argv=None):
    """``python -m harmony evaluate``: the held-out table for the bundled (or given) model."""
    import argparse
    import time

    import torch

    from .cli import Parser, program

    ap = Parser(prog=f"{program()} evaluate",
                description="The held-out table and targets for the bundled (or given) model.")
    ap.add_argument("--model", default=None, help="model file (default: the bundled tiny model)")
    ap.add_argument("-n", "--n-per-split", type=int, default=8, help="held-out clips per split")
    ap.add_argument("--jobs", default=",".join(JOBS), help="comma-separated subset of " + ",".join(JOBS))
    ap.add_argument("--guidance", default="synccfg,cfg",
                    help="comma-separated guidance modes to compare (synccfg, cfg, none)")
    ap.add_argument("--steps", type=int, default=20, help="sampling steps per clip")
    ap.add_argument("--sv", type=float, default=None, help="video guidance scale (default: the model's)")
    ap.add_argument("--sa", type=float, default=None, help="audio guidance scale (default: the model's)")
    ap.add_argument("--text-cfg", type=float, default=1.0, help="text CFG on top of SyncCFG (1 = off)")
    ap.add_argument("--seconds", type=float, default=3.0, help="length of each held-out clip")
    ap.add_argument("--no-ceiling", action="store_true", help="skip the ceiling / floor rows")
    ap.add_argument("-o", "--output", default=None, help="also write the rows as JSON here")
    a = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    from .pipeline import HarmonyPipeline

    pipe = HarmonyPipeline.from_pretrained(a.model, log=lambda m: None)
    meta = pipe.model.cfg.meta or {}
    defaults = meta.get("guidance", {})
    sv = a.sv if a.sv is not None else float(defaults.get("sv", 3.0))
    sa = a.sa if a.sa is not None else float(defaults.get("sa", 2.0))
    jobs = tuple(j.strip() for j in a.jobs.split(",") if j.strip())
    t0 = time.time()
    rows = [] if a.no_ceiling else evaluate(None, a.n_per_split, jobs, codec_roundtrip_fn(pipe), a.seconds)
    for mode in [m.strip() for m in a.guidance.split(",") if m.strip()]:
        gen = model_generate_fn(pipe, mode, a.steps, sv, sa, a.text_cfg)
        model_rows = [r for r in evaluate(gen, a.n_per_split, jobs, None, a.seconds) if r["kind"] == "model"]
        for r in model_rows:
            r["name"] = f"{r['name']} {mode}"
        rows += model_rows
    order = {s: i for i, s in enumerate(SPLITS)}
    rows.sort(key=lambda r: (order.get(r["split"], 9), {"ceiling": 0, "floor": 1, "model": 2}[r["kind"]]))
    print(f"held-out seeds, {a.n_per_split} per split, {a.seconds:g} s clips, {a.steps} steps, "
          f"sv={sv:g} sa={sa:g} text_cfg={a.text_cfg:g}; {time.time() - t0:.0f} s")
    print(format_table(rows))
    if a.output:
        import json
        with open(a.output, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
