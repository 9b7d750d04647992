"""Held-out evaluation table: ceiling, floor and model rows per split and job, and the targets.

``evaluate(generators, n_per_split, jobs, codec_roundtrip=None, seconds=3.0)``
renders the first ``n_per_split`` held-out clips of each split (speech /
ambient / complex; ``harmony.world.heldout_seeds``) and scores, with
``harmony.metrics.clip_metrics``:

- ceiling ``real``: the real clip; ``real+codec``: through
  ``codec_roundtrip(frames, wave) -> (frames, wave)`` when given (the best any
  latent model can do: every model row is decoded media);
- floor ``audio shifted``: real audio delayed by 0.5 s; ``audio shuffled``:
  the real audio of another clip of the same split;
- model rows, one per job and generator: ``generate(job, clips, seeds) ->
  [(frames, wave), ...]``, all clips of a split in one call (one batched
  sampling run). Every job returns BOTH modalities decoded from its latent:
  for A2V the audio is the driving audio through the audio codec, for V2A the
  video is the driving video through the video codec, so they compare with the
  ``real+codec`` ceiling like-for-like.

``generators`` is one callable (rows named by job) or a dict ``{mode: callable}``
(rows named ``"<job> <mode>"``). ``format_table(rows)`` prints the table;
``format_targets(rows)`` prints, per split and job, each model row against the
through-codec ceiling and against plain CFG, with a PASS / MISS verdict
(targets: ``TARGETS``).

``harmony.batch_generate.model_generate_fn(pipe, ...)`` builds the batched generator from a
:class:`~harmony.pipeline.HarmonyPipeline`.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .jobs import JOBS
from .metrics import clip_metrics, first_frame_similarity
from .world import FPS, SPLITS, heldout_seeds, render, sample_scene

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
    ("count_error_video", "count err v", "low"),
    ("ff_psnr_db", "frame0 dB", "high"),
    ("persist_psnr_db", "frames1+ dB", "high"),
)
EXTRA_KEYS = ("offset_s", "n_audio_events", "n_visual_events", "n_gt_events")
PAIRED_KEYS = ("confidence",)
"""Metrics kept per clip in each row (``row["per_clip"]``): SyncCFG's gap to plain CFG on the same
clips gets a bootstrap interval (:func:`paired_interval`) in the targets table."""

# Targets (issue 10 item 4), for every job and split under SyncCFG, on held-out seeds:
TARGETS = {
    "ratio": 0.9,           # sync confidence and a<->v F1 within 10 % of the through-codec ceiling
    "offset_frames": 1.0,   # |offset| within one frame of the ceiling's
    "ff_ratio": 0.9,        # I2AV first-frame PSNR within 10 % of the codec's own round trip (dB)
}


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


def _fit_wave(wave, n: int) -> np.ndarray:
    wave = _as_numpy(wave)
    if wave.ndim == 2:
        wave = wave.mean(0)
    return wave[:n] if len(wave) >= n else np.pad(wave, (0, n - len(wave)))


def _nanmean(vals) -> float:
    vals = [v for v in vals if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(vals)) if vals else float("nan")


def _mean_row(split, kind, name, results) -> dict:
    row = {"split": split, "kind": kind, "name": name, "n": len(results)}
    for key in [c[0] for c in COLUMNS] + list(EXTRA_KEYS):
        row[key] = _nanmean([r.get(key) for r in results])
    # each clip's value, in the split's clip order: what a paired comparison of two rows needs
    row["per_clip"] = {key: [float(r.get(key, float("nan"))) for r in results] for key in PAIRED_KEYS}
    return row


def paired_interval(a, b, level: float = 0.95, n_boot: int = 4000, seed: int = 0) -> tuple[float, float, float]:
    """``(mean, lo, hi)`` of the per-clip difference ``a - b`` of two rows scored on the same clips,
    with a percentile bootstrap interval (clips resampled with replacement; a fixed seed, so a table
    prints the same interval twice). With 8 clips the interval is rough, but it says whether a gap
    between two rows is larger than the clip-to-clip spread."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = a - b if a.shape == b.shape else a[:0]
    if d.ndim != 1 or len(d) == 0 or np.isnan(d).any():
        raise ValueError(f"paired_interval: expected two equal-length lists of numbers, got {len(a)} and {len(b)}")
    means = d[np.random.default_rng(seed).integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(d.mean()), float(lo), float(hi)


def _generators(generators) -> list[tuple[str, Callable]]:
    if generators is None:
        return []
    if callable(generators):
        return [("", generators)]
    return list(generators.items())


def evaluate(generators=None, n_per_split: int = 8, jobs=JOBS, codec_roundtrip: Callable | None = None,
             seconds: float = 3.0, splits=SPLITS, seeds_fn: Callable = heldout_seeds,
             progress: Callable | None = None) -> list[dict]:
    """Rows of the held-out table (see module docstring). ``generators=None`` scores only the
    ceiling and floor rows. ``seeds_fn(split, n)``: which seeds (default: the held-out
    evaluation seeds; guidance tuning passes ``harmony.world.tuning_seeds``).
    ``progress(label)`` is called once per finished unit (ceiling of a split, or one row)."""
    bad = [j for j in jobs if j not in JOBS]
    if bad:
        raise ValueError(f"evaluate: unknown jobs {bad}; expected a subset of {JOBS}")
    if n_per_split < 1:
        raise ValueError(f"evaluate: n_per_split must be >= 1, got {n_per_split}")
    gens = _generators(generators)
    rows = []
    for split in splits:
        seeds = list(seeds_fn(split, n_per_split))
        clips = [render(sample_scene(s, split, seconds)) for s in seeds]
        res: dict[tuple[str, str], list[dict]] = {}

        def add(kind, name, clip, frames, wave, first_frame=None):
            frames = _as_numpy(frames)
            wave = _fit_wave(wave, len(clip.wave))
            r = clip_metrics((frames, wave, clip.fps, clip.sample_rate), clip.scene, ref_voice=clip.ref_voice)
            if first_frame is not None:
                r.update(first_frame_similarity(frames, first_frame))
            res.setdefault((kind, name), []).append(r)

        for i, clip in enumerate(clips):
            add("ceiling", "real", clip, clip.frames, clip.wave, clip.frames[0])
            if codec_roundtrip is not None:
                f, w = codec_roundtrip(clip.frames, clip.wave)
                add("ceiling", "real+codec", clip, f, w, clip.frames[0])
                # the codec's own round trip of the first frame alone (what I2AV can reach on frame 0)
                f0, _ = codec_roundtrip(clip.frames[:1], clip.wave)
                res[("ceiling", "real+codec")][-1]["ff_psnr_db"] = first_frame_similarity(
                    f0, clip.frames[0])["ff_psnr_db"]
            add("floor", f"audio shifted {SHIFT_S}s", clip, clip.frames,
                shift_audio(clip.wave, SHIFT_S, clip.sample_rate))
            other = clips[(i + 1) % len(clips)] if len(clips) > 1 else render(sample_scene(seeds[i] + 1, split, seconds))
            add("floor", "audio shuffled", clip, clip.frames, other.wave)
        if progress is not None:
            progress(f"{split} ceiling/floor")
        for mode, gen in gens:
            for job in jobs:
                outs = list(gen(job, clips, seeds))
                if len(outs) != len(clips):
                    raise ValueError(f"evaluate: generator returned {len(outs)} results for {len(clips)} clips")
                name = f"{job} {mode}".strip()
                for clip, seed, (f, w) in zip(clips, seeds, outs):
                    if f is None or w is None:
                        raise ValueError(f"evaluate: generator returned no {'frames' if f is None else 'audio'} "
                                         f"for job {job} (seed {seed}); every job returns both decoded modalities")
                    add("model", name, clip, f, w, clip.frames[0] if job == "I2AV" else None)
                if progress is not None:
                    progress(f"{split} {name}")
        rows += [_mean_row(split, kind, name, r) for (kind, name), r in res.items()]
    return rows


def _fmt(v, spec=".3f") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _layout(head, body, notes=None) -> str:
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    out = [line(head)]
    if notes is not None:
        out.append(line(notes))
    out.append("  ".join("-" * w for w in widths))
    return "\n".join(out + [line(c) for c in body])


def format_table(rows: list[dict]) -> str:
    """Plain-text table, one line per row."""
    head = ["split", "kind", "name", "n"] + [h for _, h, _ in COLUMNS]
    body = [[r["split"], r["kind"], r["name"], str(r["n"])] + [_fmt(r.get(k, float("nan"))) for k, _, _ in COLUMNS]
            for r in rows]
    notes = ["", "", "", ""] + [f"({b})" for _, _, b in COLUMNS]
    return _layout(head, body, notes)


def _generated_count_error(job: str, row: dict) -> float:
    """Event-count error of the modality the job generates (both for T2AV / I2AV)."""
    keys = {"A2V": ("count_error_video",), "V2A": ("count_error_audio",)}.get(
        job, ("count_error_audio", "count_error_video"))
    return _nanmean([row.get(k) for k in keys])


def target_rows(rows: list[dict], fps: float = FPS) -> list[dict]:
    """Each model row against the split's ``real+codec`` ceiling and the same job under plain
    CFG (``"<job> cfg"``). Verdict keys: ``misses`` (list of failed targets), ``verdict``."""
    ceil = {r["split"]: r for r in rows if r["kind"] == "ceiling" and r["name"] == "real+codec"}
    by_name = {(r["split"], r["name"]): r for r in rows if r["kind"] == "model"}
    out = []
    for r in rows:
        if r["kind"] != "model" or r["split"] not in ceil:
            continue
        c = ceil[r["split"]]
        job, _, mode = r["name"].partition(" ")
        cfg = by_name.get((r["split"], f"{job} cfg")) if mode != "cfg" else None
        t = {"split": r["split"], "job": job, "mode": mode or "-", "n": r["n"],
             "conf": r["confidence"], "conf_ceil": c["confidence"], "conf_ratio": r["confidence"] / c["confidence"],
             "f1": r["f1_av"], "f1_ceil": c["f1_av"], "f1_ratio": r["f1_av"] / max(c["f1_av"], 1e-9),
             "offset": r["abs_offset_s"], "offset_ceil": c["abs_offset_s"],
             "n_audio": r["n_audio_events"], "n_video": r["n_visual_events"], "n_gt": r["n_gt_events"],
             "count_err": _generated_count_error(job, r),
             "ff": r["ff_psnr_db"] if job == "I2AV" else float("nan"),
             "ff_codec": c["ff_psnr_db"] if job == "I2AV" else float("nan")}
        misses = []
        if not t["conf_ratio"] >= TARGETS["ratio"]:
            misses.append("conf")
        if not t["f1_ratio"] >= TARGETS["ratio"]:
            misses.append("F1")
        if not t["offset"] <= t["offset_ceil"] + TARGETS["offset_frames"] / fps + 1e-9:
            misses.append("|offset|")
        if job == "I2AV" and not t["ff"] >= TARGETS["ff_ratio"] * t["ff_codec"]:
            misses.append("frame0")
        if cfg is not None:
            t.update(conf_cfg=cfg["confidence"], f1_cfg=cfg["f1_av"], offset_cfg=cfg["abs_offset_s"],
                     count_err_cfg=_generated_count_error(job, cfg))
            mine, theirs = (x.get("per_clip", {}).get("confidence") for x in (r, cfg))
            if mine and theirs and len(mine) == len(theirs):
                t["conf_gap"] = paired_interval(mine, theirs)
            if not t["conf"] >= cfg["confidence"]:
                misses.append("conf<cfg")
            if not t["f1"] >= cfg["f1_av"]:
                misses.append("F1<cfg")
            if not t["offset"] <= cfg["abs_offset_s"] + 1e-9:
                misses.append("|offset|>cfg")
            if not t["count_err"] <= t["count_err_cfg"] + 1e-9:
                misses.append("counts>cfg")
        t["misses"] = misses
        t["verdict"] = "PASS" if not misses else "MISS"
        out.append(t)
    return out


def format_targets(rows: list[dict], fps: float = FPS) -> str:
    """The targets table (see :func:`target_rows`): ratios to the through-codec ceiling,
    |offset| against the ceiling's, event counts, I2AV frame-0 PSNR against the codec's own
    round trip of the image, and PASS / MISS (SyncCFG rows are also compared with plain CFG)."""
    head = ["split", "job", "guidance", "conf/ceil", "conf - cfg [95%]", "F1/ceil", "|off| s (ceil)",
            "events a/v (gt)", "count err (cfg)", "frame0 dB (codec)", "verdict"]
    body = []
    for t in target_rows(rows, fps):
        cerr = _fmt(t["count_err"], ".2f") + (f" ({_fmt(t['count_err_cfg'], '.2f')})" if "count_err_cfg" in t else "")
        gap = "-" if "conf_gap" not in t else "{:+.2f} [{:+.2f}, {:+.2f}]".format(*t["conf_gap"])
        body.append([
            t["split"], t["job"], t["mode"],
            f"{_fmt(t['conf_ratio'], '.2f')} ({_fmt(t['conf'], '.2f')}/{_fmt(t['conf_ceil'], '.2f')})", gap,
            f"{_fmt(t['f1_ratio'], '.2f')} ({_fmt(t['f1'], '.2f')}/{_fmt(t['f1_ceil'], '.2f')})",
            f"{_fmt(t['offset'], '.3f')} ({_fmt(t['offset_ceil'], '.3f')})",
            f"{_fmt(t['n_audio'], '.1f')}/{_fmt(t['n_video'], '.1f')} ({_fmt(t['n_gt'], '.1f')})",
            cerr,
            "-" if t["job"] != "I2AV" else f"{_fmt(t['ff'], '.1f')} ({_fmt(t['ff_codec'], '.1f')})",
            t["verdict"] + ("" if not t["misses"] else ": " + ", ".join(t["misses"])),
        ])
    legend = (f"targets: conf and F1 a<->v >= {TARGETS['ratio']:g} x the real+codec ceiling; |offset| <= "
              f"ceiling + {TARGETS['offset_frames']:g} frame; I2AV frame-0 PSNR >= {TARGETS['ff_ratio']:g} x the "
              "codec's own round trip of the image; SyncCFG rows also: conf, F1, |offset| and the generated "
              "modality's event-count error no worse than plain CFG's (values in brackets). conf - cfg: SyncCFG's "
              "sync confidence minus plain CFG's on the same clips, with a 95 % bootstrap interval over the clips "
              "(an interval across 0: the gap is within the clip-to-clip spread; the verdict does not use it).")
    return _layout(head, body) + "\n" + legend


def main(argv=None):
    """``python -m harmony evaluate``: the held-out table and targets for the bundled (or given) model."""
    import json
    import time

    from .batch_generate import codec_roundtrip_fn, model_generate_fn
    from .cli import Parser, program

    ap = Parser(prog=f"{program()} evaluate",
                description="The held-out table and targets for the bundled (or given) model.")
    ap.add_argument("--model", default=None, help="model file (default: the bundled tiny model)")
    ap.add_argument("-n", "--n-per-split", type=int, default=8, help="held-out clips per split")
    ap.add_argument("--jobs", default=",".join(JOBS), help="comma-separated subset of " + ",".join(JOBS))
    ap.add_argument("--guidance", default="synccfg,cfg",
                    help="comma-separated guidance modes to compare (synccfg, cfg, none)")
    ap.add_argument("--steps", type=int, default=20, help="sampling steps per clip")
    ap.add_argument("--sv", type=float, default=None, help="video guidance scale (default: the model's, per job)")
    ap.add_argument("--sa", type=float, default=None, help="audio guidance scale (default: the model's, per job)")
    ap.add_argument("--shift", type=float, default=None, help="schedule shift (default: the model's, per job)")
    ap.add_argument("--st", type=float, default=None,
                    help="timing anchor's scale on top of SyncCFG, A2V / V2A (default: the model's, per job; 0 = off)")
    ap.add_argument("--resync", type=float, default=None,
                    help="resync pass's share of the schedule, T2AV / I2AV (default: the model's, per job; 0 = off)")
    ap.add_argument("--text-cfg", type=float, default=1.0, help="text CFG on top of SyncCFG (1 = off)")
    ap.add_argument("--seconds", type=float, default=3.0, help="length of each held-out clip")
    ap.add_argument("--batch", type=int, default=8, help="clips per batched sampling run")
    ap.add_argument("--no-ceiling", action="store_true", help="skip the ceiling / floor rows")
    ap.add_argument("--controls", action="store_true",
                    help="also run the input controls (harmony.controls: V2A static / flashing / two videos, "
                         "I2AV persistence, A2V tone bursts and speech)")
    ap.add_argument("--controls-only", action="store_true", help="run only the controls")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("-o", "--output", default=None, help="also write the rows (and controls) as JSON here")
    a = ap.parse_args(argv)
    jobs = tuple(j.strip() for j in a.jobs.split(",") if j.strip())
    modes = [m.strip() for m in a.guidance.split(",") if m.strip()]
    from .sampling import GUIDANCE_MODES
    bad = [j for j in jobs if j not in JOBS] + [m for m in modes if m not in GUIDANCE_MODES]
    if bad:
        ap.error(f"unknown job or guidance mode {bad}; jobs: {', '.join(JOBS)}; guidance: {', '.join(GUIDANCE_MODES)}")
    if a.n_per_split < 1 or a.steps < 1 or a.batch < 1:
        ap.error("-n, --steps and --batch must be >= 1")
    from .pipeline import HarmonyPipeline

    pipe = HarmonyPipeline.from_pretrained(a.model, log=lambda m: None)
    from .sampling import RESYNC_JOBS, job_settings

    sv, sa, shift, st, resync = a.sv, a.sa, a.shift, a.st, a.resync  # None: each job at the model file's tuned value
    if resync is not None and not 0 <= resync <= 1:
        ap.error(f"--resync must be between 0 and 1 (0 = off), got {resync}")
    settings = {j: job_settings(pipe.model.cfg, j, sv, sa, shift, st, resync) for j in jobs}
    scales = "; ".join(f"{j} sv={v.sv:g} sa={v.sa:g} shift={v.shift:g}" + (f" st={v.st:g}" if v.st else "")
                       + (f" resync={v.resync:g}" if v.resync and j in RESYNC_JOBS else "")
                       for j, v in settings.items())
    t0 = time.time()
    out = {}
    if not a.controls_only:
        from tqdm import tqdm

        n_units = len(SPLITS) * (1 + len(modes) * len(jobs))
        bar = tqdm(total=n_units, desc="evaluate", unit="row", disable=a.no_progress)

        def progress(label):
            bar.set_postfix_str(label)
            bar.update(1)

        gens = {m: model_generate_fn(pipe, m, a.steps, sv, sa, a.text_cfg, max_batch=a.batch, shift=shift,
                                   st=st, resync=resync) for m in modes}
        rows = evaluate(gens, a.n_per_split, jobs, None if a.no_ceiling else codec_roundtrip_fn(pipe), a.seconds,
                        progress=progress)
        bar.close()
        if a.no_ceiling:
            rows = [r for r in rows if r["kind"] == "model"]
        order = {s: i for i, s in enumerate(SPLITS)}
        rows.sort(key=lambda r: (order.get(r["split"], 9), {"ceiling": 0, "floor": 1, "model": 2}[r["kind"]]))
        print(f"held-out seeds, {a.n_per_split} per split, {a.seconds:g} s clips, {a.steps} steps, "
              f"{scales}; text_cfg={a.text_cfg:g}, batch {a.batch}; {time.time() - t0:.0f} s")
        print(format_table(rows))
        if not a.no_ceiling:
            print()
            print(format_targets(rows, pipe.fps))
        out["rows"] = rows
    if a.controls or a.controls_only:
        from .controls import format_controls, run_controls
        t1 = time.time()
        results = run_controls(pipe, steps=a.steps, sv=sv, sa=sa, guidance=modes[0], shift=shift, st=st,
                               resync=resync)
        print()
        print(f"controls ({modes[0]}, {a.steps} steps; decoded media; {time.time() - t1:.0f} s)")
        print(format_controls(results))
        out["controls"] = results
    if a.output:
        with open(a.output, "w") as fh:
            json.dump(out if len(out) > 1 else next(iter(out.values())), fh, indent=1)


if __name__ == "__main__":
    main()
