"""``python -m harmony bench``: speed and memory, measured (never in tests).

Rows (``--rows``, default all):

- ``fp32`` / ``bf16`` / ``fp8``: one model forward (one sampling step's network
  evaluation) of the ``5b`` config cut to 2 layers at full width, with 320
  video tokens (latent 5x16x16, patch 1x2x2), 40 audio tokens and a 512-row
  text context of width 4096: seconds per forward, the model FLOPs of that
  forward (:func:`harmony.flops.model_flops`, from the config) and the achieved GFLOP/s. ``fp8``
  stores the block Linear weights in float8_e4m3fn (scaled, as ``load_model``
  does) and computes in bf16 on CUDA, fp32 on the CPU. When the model offers
  ``prepare`` (conditioning-only work done once per sampling run), the timed
  forward takes prepared conditioning and the FLOPs exclude that work.
- ``swap``: the bf16 model under ``BlockSwap`` with 0 resident layers, so every
  block's weights are copied in before its turn and dropped after it.
- ``tiny``: seconds per guided sampling step of the ``tiny`` config (plain CFG,
  SyncCFG batched, SyncCFG as three passes).

``--shape small`` (the default) runs these rows. ``--shape real``: the ``5b`` GLDI model (``--layers N``, default the full 30) at the real
clip's token counts (:func:`harmony.flops.real_tokens`: 5 s at 704x704 -> 31 x 22 x 22 = 15,004 video tokens, 157
audio tokens, 512 text rows of width 4096 per tower; ``--seconds`` / ``--size`` change the clip,
``--ref-seconds`` adds reference-voice tokens). Rows (``REAL_ROWS``): seconds per guided sampling step
through the ``SyncCFG`` denoiser for plain CFG (one forward, batch 2) and SyncCFG batched (one
forward, batch 3), with bf16 weights, fp8 weights, and fp8 weights under ``BlockSwap`` with
``--resident N`` layers kept; model FLOPs of the step and GFLOP/s; peak memory reset per row.
Random weights are filled in place (``_fill_random_``), never downloaded. Before the rows, the
**memory plan** (:func:`harmony.bench_memory.memory_plan`; ``--plan`` prints only it): weights counted on the meta device,
activations of one step and of the Wan2.2 VAE tiled decode tracked on the meta device
(``LiveBytes`` with attention as a fused kernel, ``FusedAttention``), the umT5-XXL encoder by its
parameter count, and which options fit 24 / 32 / 80 GB.

Peak memory is reset per row: ``torch.cuda.reset_peak_memory_stats`` on a GPU;
on the CPU the process's peak RSS (VmHWM) is reset through
``/proc/self/clear_refs`` where Linux allows it, else the column says n/a.
Also printed: the model FLOPs per step of the full ``5b`` model at a
realistic 5 s clip, the weight bytes of the full ``5b`` model per storage
format and, on CUDA, the achieved fraction of the device's dense peak.
"""
from __future__ import annotations

import dataclasses
import math
import os
import shlex
import sys
import time

import torch

from .bench_memory import GiB, memory_plan, weight_bytes_5b
from .checkpoint import to_fp8_
from .codecs.contract import WAN22_VAE, meta_value
from .config import HarmonyConfig, get_config
from .flops import clip_tokens_5b, model_flops, real_tokens
from .model import Conditioning, HarmonyModel

ROWS = ("fp32", "bf16", "fp8", "swap", "tiny")

FORWARD_SHAPE = {"frames": 5, "hw": 16, "audio": 40, "text_rows": 512}
"""Latent 5x16x16 (320 video tokens with patch 1x2x2), 40 audio tokens, 512 text rows."""

DEVICE_PEAK_TFLOPS = {
    # name substring -> dense (no sparsity) peak TFLOP/s per compute dtype, from the vendors' data sheets
    "H200": {torch.bfloat16: 989.0, torch.float16: 989.0, torch.float32: 67.0},
    "H100": {torch.bfloat16: 989.0, torch.float16: 989.0, torch.float32: 67.0},
    "A100": {torch.bfloat16: 312.0, torch.float16: 312.0, torch.float32: 19.5},
    "RTX 4090": {torch.bfloat16: 165.2, torch.float16: 165.2, torch.float32: 82.6},
}


def reduced(name: str, layers: int) -> HarmonyConfig:
    """Named config with both towers cut to `layers` layers (width unchanged)."""
    cfg = get_config(name)
    return cfg.replace(video=dataclasses.replace(cfg.video, num_layers=layers),
                       audio=dataclasses.replace(cfg.audio, num_layers=layers))


# --- memory ---------------------------------------------------------------------

def _reset_peak(device) -> bool:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # Linux: reset the peak resident set size (VmHWM)
        return True
    except OSError:
        return False


def _peak_gib(device, resettable: bool):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    if not resettable:
        return None
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 2**30
    except OSError:
        pass
    return None


# --- the model at issue-15 shapes ---------------------------------------------------

def _fill_random_(model: HarmonyModel, seed: int = 0):
    """Random weights of Wan-like scale, fast: N(0, 1/fan_in) values tiled from one 4M-value pool, norms 1.

    (Drawing 1.5 B fresh normals takes over a minute on 2 cores; the timing does not care.)
    """
    g = torch.Generator().manual_seed(seed)
    pool = torch.randn(1 << 22, generator=g)
    pools = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            key = (p.device, p.dtype)
            if key not in pools:  # one copy of the pool per device and dtype: no cross-device copy per chunk
                pools[key] = pool.to(p.device, p.dtype)
            src = pools[key]
            flat = p.view(-1)
            if p.dim() == 1 and "norm" in name:
                flat.fill_(1.0)
                continue
            scale = 1.0 / math.sqrt(p[0].numel()) if p.dim() >= 2 else 0.02
            for i in range(0, flat.numel(), pool.numel()):
                n = min(pool.numel(), flat.numel() - i)
                flat[i:i + n].copy_(src[:n]).mul_(scale)
    return model


def _forward_inputs(cfg, device, dtype, batch=1):
    s = FORWARD_SHAPE
    g = torch.Generator().manual_seed(1)
    zv = torch.randn(batch, cfg.video.in_dim, s["frames"], s["hw"], s["hw"], generator=g)
    za = torch.randn(batch, s["audio"], cfg.audio.in_dim, generator=g)
    cond = Conditioning(torch.randn(batch, s["text_rows"], cfg.video.text_dim, generator=g),
                        torch.randn(batch, s["text_rows"], cfg.audio.text_dim, generator=g))
    t = torch.full((batch,), 700.0)
    return zv.to(device, dtype), za.to(device, dtype), t.to(device), t.to(device), cond.to(device, dtype)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_forward(model, inputs, repeats, device):
    """Median seconds of one forward (after one warm-up call); prepared conditioning when the model offers it."""
    zv, za, tv, ta, cond = inputs
    prepared = hasattr(model, "prepare")
    times, cpu = [], []
    with torch.no_grad():
        c = model.prepare(cond, dtype=zv.dtype, device=zv.device) if prepared else cond
        for i in range(repeats + 1):
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            model(zv, za, tv, ta, c)
            _sync(device)
            if i:
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
    return sorted(times)[len(times) // 2], sorted(cpu)[len(cpu) // 2], prepared


def _peak_fraction(device, dtype, gflops):
    if device.type != "cuda":
        return ""
    name = torch.cuda.get_device_name(device)
    for key, peaks in DEVICE_PEAK_TFLOPS.items():
        if key in name and dtype in peaks:
            return f"{100 * gflops / (1000 * peaks[dtype]):.1f} % of {peaks[dtype]:g}"
    return "unknown device"


def precision_rows(device, wanted, repeats, out):
    cfg = reduced("5b", 2)
    s = FORWARD_SHAPE
    pt, ph, pw = cfg.video.patch_size
    grid = (s["frames"] // pt, s["hw"] // ph, s["hw"] // pw)
    flops = model_flops(cfg, grid, s["audio"])
    t0 = time.perf_counter()
    with torch.device("meta"):
        model = HarmonyModel(cfg)
    model = _fill_random_(model.to_empty(device=device)).eval()
    print(f"  built 5b-width 2-layer model in {time.perf_counter() - t0:.1f} s")
    cuda = device.type == "cuda"
    order = [r for r in ("fp32", "bf16", "swap", "fp8") if r in wanted]
    for row in order:
        if row == "fp32":
            model.float()
            compute = torch.float32
        elif row in ("bf16", "swap"):
            model.to(torch.bfloat16)
            compute = torch.bfloat16
        else:  # fp8
            model.to(torch.bfloat16)
            to_fp8_(model)
            compute = torch.bfloat16 if cuda else torch.float32
        inputs = _forward_inputs(cfg, device, compute)
        swap = None
        if row == "swap":
            from .offload import BlockSwap

            model.to("cpu")
            swap = BlockSwap(model, resident_blocks=0, device=device)
        resettable = _reset_peak(device)
        sec, cpu_sec, prepared = time_forward(model, inputs, repeats, device)
        peak = _peak_gib(device, resettable)
        f = flops["step"] if prepared else flops["total"]
        gflops = f / sec / 1e9
        label = {"fp32": "fp32", "bf16": "bf16", "fp8": "fp8 e4m3fn storage",
                 "swap": "bf16, block swap 0 resident"}[row]
        out.append((device.type, label, str(compute).replace("torch.", ""), "prepared" if prepared else "raw",
                    sec, cpu_sec, f / 1e9, gflops, peak, _peak_fraction(device, compute, gflops)))
        if swap is not None:
            moved = sum(len(layer.slots) for layer in swap.layers.values())
            nbytes = sum(s.master.numel() * s.master.element_size() for layer in swap.layers.values() for s in layer.slots)
            copies = getattr(swap, "copies", None)
            print(f"  block swap: {len(swap.layers)} layers ({moved} tensors, {nbytes / 2**30:.2f} GiB) streamed per forward"
                  + (f"; {copies} tensor copies over {repeats + 1} forwards" if copies is not None else
                     ("; on the CPU .to('cpu') returns the same tensor: nothing is copied" if not cuda else "")))
            swap.remove()
            model.to(device)
    del model


def tiny_rows(device, repeats, out):
    """Seconds per guided sampling step of the tiny config (uses the sampler's denoiser)."""
    from .guidance import Guidance, SyncCFG
    from .jobs import Job

    cfg = get_config("tiny")
    torch.manual_seed(0)
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    model = HarmonyModel(cfg).to(device, dtype).eval()
    g = torch.Generator().manual_seed(0)
    zv = torch.randn(1, cfg.video.in_dim, 48, 4, 4, generator=g).to(device, dtype)  # the earlier bench's shape
    za = torch.randn(1, 94, cfg.audio.in_dim, generator=g).to(device, dtype)
    cond = Conditioning(torch.randn(1, 48, cfg.video.text_dim, generator=g),
                        torch.randn(1, 48, cfg.audio.text_dim, generator=g)).to(device, dtype)
    uncond = Conditioning(torch.zeros_like(cond.video_context), torch.zeros_like(cond.audio_context))
    silent = torch.zeros(cfg.audio.in_dim, device=device, dtype=dtype)
    for mode, batched, key in (("cfg", True, "plain CFG"), ("synccfg", True, "SyncCFG batched"),
                               ("synccfg", False, "SyncCFG 3 passes")):
        den = SyncCFG(model, cond, Guidance(mode, batched=batched), Job(), uncond, silent)  # default scales
        sigma_v = torch.full((1, zv.shape[2]), 0.7, dtype=torch.float64, device=device)
        sigma_a = torch.full((1,), 0.7, dtype=torch.float64, device=device)
        resettable = _reset_peak(device)
        times, cpu = [], []
        with torch.no_grad():
            for i in range(repeats + 1):
                _sync(device)
                t0, c0 = time.perf_counter(), time.process_time()
                den(zv, za, sigma_v, sigma_a)
                _sync(device)
                if i:
                    times.append(time.perf_counter() - t0)
                    cpu.append(time.process_time() - c0)
        sec, cpu_sec = sorted(times)[len(times) // 2], sorted(cpu)[len(cpu) // 2]
        out.append((device.type, f"tiny, step: {key}", str(dtype).replace("torch.", ""), "prepared", sec, cpu_sec,
                    None, None, _peak_gib(device, resettable), ""))


# --- rows at the real token counts -------------------------------------------------------------

REAL_ROWS = ("bf16-cfg", "bf16-sync", "fp8-cfg", "fp8-sync", "swap-cfg", "swap-sync")
"""Real-shape rows: weights bf16 or fp8 (block Linear weights e4m3fn, scaled), resident or fp8 under
``BlockSwap`` with ``--resident`` layers kept; guidance plain CFG (one forward, batch 2) or SyncCFG
batched (one forward, batch 3)."""


def real_rows(device, cfg: HarmonyConfig, tokens: dict, wanted, repeats: int, warmup: int, resident: int,
              n_ref: int, out: list, log=print, sp=None):
    from .guidance import Guidance, SyncCFG
    from .jobs import Job

    dt = torch.bfloat16
    t0 = time.perf_counter()
    with torch.device("meta"):
        model = HarmonyModel(cfg).to(dt)
    model = _fill_random_(model.to_empty(device=device)).eval()
    if sp is not None:  # under torchrun: the video tokens split across the processes (harmony.parallel)
        from . import parallel

        parallel.apply(model, sp)
    log(f"  built the {cfg.num_layers}-layer model (bf16, random weights filled in place) in "
        f"{time.perf_counter() - t0:.1f} s")
    g = torch.Generator().manual_seed(1)
    f, h, w = tokens["latent"]
    zv = torch.randn(1, cfg.video.in_dim, f, h, w, generator=g).to(device)  # fp32 ODE state, as the sampler keeps it
    za = torch.randn(1, tokens["audio_tokens"], cfg.audio.in_dim, generator=g).to(device)
    ctx = torch.randn(1, cfg.video.text_len, cfg.video.text_dim, generator=g).to(device, dt)
    ref = torch.randn(1, n_ref, cfg.audio.in_dim, generator=g).to(device, dt) if n_ref else None
    cond = Conditioning(ctx, ctx.clone(), ref)
    uncond = Conditioning(torch.zeros_like(ctx), torch.zeros_like(ctx), ref)
    silent = torch.randn(cfg.audio.in_dim, generator=g).to(device)
    sv = torch.full((1, f), 0.7, dtype=torch.float64, device=device)
    sa = torch.full((1,), 0.7, dtype=torch.float64, device=device)
    grid, n_audio = tokens["grid"], tokens["audio_tokens"]
    order = [r for r in REAL_ROWS if r in wanted]  # bf16 rows before fp8 (quantising is one-way)
    quantised, swap = False, None
    for row in order:
        weights, mode = row.split("-")
        if weights in ("fp8", "swap") and not quantised:
            to_fp8_(model)
            quantised = True
        if weights == "swap" and swap is None:
            from .offload import BlockSwap

            model.to("cpu")
            swap = BlockSwap(model, resident_blocks=min(resident, cfg.num_layers), device=device)
        mode = "synccfg" if mode == "sync" else "cfg"
        den = SyncCFG(model, cond, Guidance(mode, batched=True), Job(), uncond, silent, dtype=dt)
        passes = den.passes(zv, za, sv, sa)
        den._batched_cond(passes, dt, device)  # conditioning-only work: once per sampling run, not timed
        batch = len(passes)
        _sync(device)
        resettable = _reset_peak(device)
        times, cpu = [], []
        for i in range(warmup + repeats):
            _sync(device)
            t1, c1 = time.perf_counter(), time.process_time()
            den(zv, za, sv, sa)
            _sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - t1)
                cpu.append(time.process_time() - c1)
        peak = _peak_gib(device, resettable)
        sec, cpu_sec = sorted(times)[len(times) // 2], sorted(cpu)[len(cpu) // 2]
        fl = model_flops(cfg, grid, n_audio, n_ref, batch=batch)["step"]
        label = {"bf16": "bf16", "fp8": "fp8 e4m3fn storage", "swap": f"fp8 + block swap {swap.resident_blocks if swap else resident} res."}[weights]
        label += ", " + ("plain CFG" if mode == "cfg" else "SyncCFG")
        ranks = 1 if sp is None else sp.world
        if ranks > 1:  # GFLOP/s of all the ranks together; the fraction is of one device's peak, per rank
            label += f", seq. parallel x{ranks}"
        out.append((device.type, label, batch, sec, cpu_sec, fl / 1e9, fl / sec / 1e9, peak,
                    _peak_fraction(device, dt, fl / sec / 1e9 / ranks)))
        log(f"  {label}: batch {batch}, {sec:.3f} s/step")
    if swap is not None:
        log(f"  block swap: {len(swap.layers)} of {cfg.num_layers} layers streamed, {swap.copies} tensor copies, "
            f"{swap.bytes_copied / GiB:.2f} GiB copied over all swap rows")
        swap.remove()
    del model


def print_real_rows(rows, print_fn=print):
    head = (f"{'device':6} | {'row':34} | {'batch':>5} | {'s/step':>9} | {'CPU s':>8} | {'GFLOP':>9} | "
            f"{'GFLOP/s':>8} | {'peak GiB':>8} | of device peak")
    print_fn(head)
    print_fn("-" * len(head))
    for dev, label, batch, sec, cpu_sec, gf, gfs, peak, frac in rows:
        print_fn(f"{dev:6} | {label:34} | {batch:5d} | {sec:9.3f} | {cpu_sec:8.1f} | {gf:9.1f} | {gfs:8.1f} | "
                 f"{'n/a' if peak is None else f'{peak:8.2f}':>8} | {frac}")
    by = {label: sec for _, label, _, sec, *_ in rows}
    cpu_by = {label: (cpu_sec, gf) for _, label, _, _, cpu_sec, gf, *_ in rows}
    for w in ("bf16", "fp8 e4m3fn storage"):
        c, s = by.get(f"{w}, plain CFG"), by.get(f"{w}, SyncCFG")
        if c and s:
            (cc, cf), (sc, sf) = cpu_by[f"{w}, plain CFG"], cpu_by[f"{w}, SyncCFG"]
            print_fn(f"ratio SyncCFG / plain CFG step ({w}): {s / c:.2f} wall (target <= 1.5); process CPU time "
                     f"{sc / cc:.2f}, model FLOPs {sf / cf:.2f}")
    for mode in ("plain CFG", "SyncCFG"):
        b, f8 = by.get(f"bf16, {mode}"), by.get(f"fp8 e4m3fn storage, {mode}")
        if b and f8:
            print_fn(f"speed-up fp8 / bf16 ({mode}): {b / f8:.2f}x (target >= 1.3x where the GPU has fp8 matmuls; "
                     "harmony casts fp8 weights to bf16 on use, no fp8 matmul)")
        sw = [sec for _, label, _, sec, *_ in rows if label.startswith("fp8 + block swap") and label.endswith(mode)]
        if sw and f8:
            print_fn(f"block swap slow-down over resident fp8 ({mode}): {100 * (sw[0] / f8 - 1):+.0f} % (target <= +25 %)")


def _parse_size(text):
    try:
        h, w = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ValueError(f"--size: {text!r} is not HxW (e.g. 704x704)") from None
    return h, w


def main(argv=None):
    from .cli import Parser, program

    ap = Parser(prog=f"{program()} bench", description="Speed and memory, measured: seconds per sampling step\n"
                "and peak memory, per precision and guidance mode; --shape real: at Ovi's real token counts,\n"
                "with the memory plan (what fits in 24 / 32 / 80 GB).")
    ap.add_argument("--shape", default="small", choices=("small", "real"),
                    help="small: the small forward rows (320 video tokens) + tiny rows; real: the 5b GLDI model at "
                         "the real clip's token counts (rows " + ", ".join(REAL_ROWS) + ") and the memory plan")
    ap.add_argument("--repeats", type=int, default=2, help="timed calls per row")
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls before each row's timed ones (real shape)")
    ap.add_argument("--rows", default=None,
                    help=f"comma-separated rows to run; small: {', '.join(ROWS)}; real: {', '.join(REAL_ROWS)} "
                         "(default: all of the shape's rows)")
    ap.add_argument("--quick", action="store_true", help="one timed call per row, rows fp32,bf16,tiny (--shape small)")
    ap.add_argument("--devices", default="all", choices=("all", "cpu", "cuda"),
                    help="where to measure (all = CPU, plus the GPU when present; real shape: the GPU when present, "
                         "else the CPU)")
    ap.add_argument("--layers", type=int, default=None,
                    help="real shape: layers per tower of the measured model (default 30, the full 5b; the memory "
                         "plan is always for the full model)")
    ap.add_argument("--seconds", type=float, default=5.0, help="real shape: clip length of the measured rows")
    ap.add_argument("--size", default="{}x{}".format(*WAN22_VAE.frame_size),
                    help="real shape: frame size HxW (multiples of 32)")
    ap.add_argument("--resident", type=int, default=None,
                    help="real shape: layers kept on the device under block swap (default 4, at most --layers)")
    ap.add_argument("--ref-seconds", type=float, default=0.0,
                    help="real shape: reference-voice length (its tokens join the audio sequence; 0 = none, T2AV)")
    ap.add_argument("--plan", action="store_true", help="real shape: print the memory plan only (no compute)")
    ap.add_argument("--no-plan", action="store_true", help="real shape: skip the memory plan")
    a = ap.parse_args(argv)
    if a.repeats < 1:
        ap.error("--repeats must be at least 1")
    if a.warmup < 0:
        ap.error("--warmup must be 0 or more")
    if a.shape == "real" or a.plan:
        return main_real(ap, a, argv)
    wanted = [r.strip() for r in (a.rows or ",".join(ROWS)).split(",") if r.strip()]
    bad = [r for r in wanted if r not in ROWS]
    if bad:
        ap.error(f"unknown --rows {bad}; choose from {', '.join(ROWS)} (or use --shape real)")
    if a.quick:
        wanted, a.repeats = [r for r in ("fp32", "bf16", "tiny") if r in wanted], 1
    torch.set_grad_enabled(False)
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}" if hasattr(os, "getloadavg") else "")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"))
    s = FORWARD_SHAPE
    print(f"forward rows: 5b config cut to 2 layers (dim 3072, ffn 14336), latent {s['frames']}x{s['hw']}x{s['hw']} "
          f"-> 320 video tokens, {s['audio']} audio tokens, text {s['text_rows']}x4096, batch 1, "
          f"median of {a.repeats} after 1 warm-up")
    rows = []
    devices = [torch.device("cpu")] if a.devices in ("all", "cpu") else []
    if a.devices in ("all", "cuda") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    for dev in devices:
        if any(r in wanted for r in ("fp32", "bf16", "fp8", "swap")):
            precision_rows(dev, wanted, a.repeats, rows)
        if "tiny" in wanted:
            tiny_rows(dev, a.repeats, rows)
    print()
    head = (f"{'device':6} | {'row':28} | {'compute':8} | {'cond':8} | {'s/forward':>9} | {'CPU s':>8} | "
            f"{'GFLOP':>7} | {'GFLOP/s':>8} | {'peak GiB':>8} | of device peak")
    print(head)
    print("-" * len(head))
    for dev, label, compute, cond, sec, cpu_sec, gf, gfs, peak, frac in rows:
        print(f"{dev:6} | {label:28} | {compute:8} | {cond:8} | {sec:9.4f} | {cpu_sec:8.2f} | "
              f"{'' if gf is None else f'{gf:7.1f}':>7} | {'' if gfs is None else f'{gfs:8.1f}':>8} | "
              f"{'n/a' if peak is None else f'{peak:8.2f}':>8} | {frac}")
    print("(s/forward and s/step: wall-clock median; CPU s: process CPU time of the same call, all threads, which a "
          "busy shared machine disturbs less; GFLOP/s from wall time. peak GiB: torch.cuda.max_memory_allocated on "
          "a GPU; on the CPU the whole process's peak RSS since the row began)")
    cfg5 = get_config("5b")
    grid, n_audio = clip_tokens_5b()
    fl = model_flops(cfg5, grid, n_audio)
    print()
    print(f"full 5b model, 5 s clip at 704x704 (grid {grid} = {math.prod(grid)} video tokens, {n_audio} audio tokens), "
          f"batch 1: {fl['total'] / 1e12:.1f} TFLOP per forward, of which {fl['conditioning'] / 1e12:.3f} TFLOP "
          f"conditioning-only (text embeddings)")
    wb = weight_bytes_5b()
    print(f"5b model weights ({wb['params'] / 1e9:.2f} B params):  fp32 {wb['fp32'] / 2**30:.1f} GiB | "
          f"bf16 {wb['bf16'] / 2**30:.1f} GiB | fp8 (block linears e4m3fn, rest bf16) {wb['fp8'] / 2**30:.1f} GiB")



def main_real(ap, a, argv):
    """``--shape real``: the header with the token arithmetic, the memory plan, the rows."""
    wanted = [r.strip() for r in (a.rows or ",".join(REAL_ROWS)).split(",") if r.strip()]
    bad = [r for r in wanted if r not in REAL_ROWS]
    if bad:
        ap.error(f"unknown --rows {bad} for --shape real; choose from {', '.join(REAL_ROWS)}")
    try:
        size = _parse_size(a.size)
        full = get_config("5b")
        tokens = real_tokens(full, a.seconds, size)
        plan_tokens = real_tokens(full, 5.0, size)
    except ValueError as e:
        ap.error(str(e))
    if a.ref_seconds < 0:
        ap.error("--ref-seconds must be 0 or more")
    n_ref = math.ceil(a.ref_seconds * meta_value(full.meta, "audio_latent_rate") - 1e-6) if a.ref_seconds else 0
    cuda = torch.cuda.is_available() and a.devices != "cpu"
    if a.devices == "cuda" and not torch.cuda.is_available():
        ap.error("--devices cuda: no GPU here")
    from . import parallel

    sp = parallel.init_from_environment()  # under torchrun --nproc_per_node N: sequence-parallel rows
    if sp is not None and sp.rank:  # rank 0 prints the rows
        sys.stdout = open(os.devnull, "w")
    device = torch.device("cuda" if cuda else "cpu")
    layers = a.layers if a.layers is not None else full.num_layers
    if not 1 <= layers <= full.num_layers:
        ap.error(f"--layers must be in 1..{full.num_layers}, got {layers}")
    if a.resident is None:
        a.resident = min(4, layers)
    if not 0 <= a.resident <= layers:
        ap.error(f"--resident must be in 0..{layers} (the measured model's layers), got {a.resident}")
    torch.set_grad_enabled(False)
    print("$ python -m harmony bench " + " ".join(shlex.quote(x) for x in (sys.argv[1:] if argv is None else argv)))
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}" if hasattr(os, "getloadavg") else "")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"))
    print()
    if not a.no_plan:
        memory_plan(full, plan_tokens, residents=sorted({0, a.resident, 10}), n_ref=n_ref)
        print()
    if a.plan:
        return 0
    cfg = reduced("5b", layers)
    print(f"rows on {device.type}: the 5b GLDI config cut to {layers} of {full.num_layers} layers per tower "
          f"(dim {cfg.video.dim}, ffn {cfg.video.ffn_dim}, heads {cfg.video.num_heads}), bf16 compute, random weights")
    print(f"clip of the rows: {tokens['seconds']:g} s {size[0]}x{size[1]}: {tokens['frames']} frames -> latent "
          f"{'x'.join(map(str, tokens['latent']))} -> {'x'.join(map(str, tokens['grid']))} = "
          f"{tokens['video_tokens']:,} video tokens, {tokens['audio_tokens']} audio tokens"
          + (f" + {n_ref} reference-voice tokens" if n_ref else "")
          + f", text {cfg.video.text_len}x{cfg.video.text_dim} per tower"
          + ("" if a.seconds == 5.0 else "  (SHORTER than the real 5 s clip)"))
    print(f"one step = one batched network forward through the SyncCFG denoiser (plain CFG: batch 2 = cond + "
          f"uncond; SyncCFG: batch 3 = joint + silent-audio + static-video), conditioning prepared once before "
          f"timing; {a.warmup} warm-up + median of {a.repeats}; block swap keeps {min(a.resident, layers)} of "
          f"{layers} layers resident")
    rows = []
    real_rows(device, cfg, tokens, wanted, a.repeats, a.warmup, a.resident, n_ref, rows, sp=sp)
    print()
    print_real_rows(rows)
    print("(s/step: wall-clock median; CPU s: process CPU time of the same call; GFLOP: model FLOPs of the step "
          "(model_flops, conditioning excluded); GFLOP/s from wall time; peak GiB: torch.cuda.max_memory_allocated "
          "on a GPU, the process's peak RSS on the CPU, reset per row)")
    return 0


if __name__ == "__main__":
    main()
