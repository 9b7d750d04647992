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


if __name__ == "__main__":  # ceiling / floor only: python -m harmony.evaluate [n_per_split]
    import sys
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    print(format_table(evaluate(None, n_per_split=n)))
