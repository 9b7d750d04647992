"""``python -m harmony bench``: speed and memory, measured (never in tests).

Rows (``--rows``, default all):

- ``fp32`` / ``bf16`` / ``fp8``: one model forward (one sampling step's network
  evaluation) of the ``5b`` config cut to 2 layers at full width, with 320
  video tokens (latent 5x16x16, patch 1x2x2), 40 audio tokens and a 512-row
  text context of width 4096: seconds per forward, the model FLOPs of that
  forward (``model_flops``, from the config) and the achieved GFLOP/s. ``fp8``
  stores the block Linear weights in float8_e4m3fn (scaled, as ``load_model``
  does) and computes in bf16 on CUDA, fp32 on the CPU. When the model offers
  ``prepare`` (conditioning-only work done once per sampling run), the timed
  forward takes prepared conditioning and the FLOPs exclude that work.
- ``swap``: the bf16 model under ``BlockSwap`` with 0 resident layers, so every
  block's weights are copied in before its turn and dropped after it.
- ``tiny``: seconds per guided sampling step of the ``tiny`` config (plain CFG,
  SyncCFG batched, SyncCFG as three passes).

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
import time

import torch

from .config import HarmonyConfig, get_config
from .model import Conditioning, HarmonyModel

ROWS = ("fp32", "bf16", "fp8", "swap", "tiny")

ISSUE15_SHAPE = {"frames": 5, "hw": 16, "audio": 40, "text_rows": 512}
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


# --- FLOP count -----------------------------------------------------------------

def model_flops(cfg: HarmonyConfig, grid, n_audio: int, n_ref: int = 0, batch: int = 1) -> dict:
    """Matmul and attention FLOPs of one ``HarmonyModel`` forward (a multiply-add = 2 FLOPs).

    `grid`: the video patch grid (f, h, w); `n_audio`: target audio tokens;
    `n_ref`: reference-voice tokens. Counted: every Linear / patch-embedding
    matmul and the two matmuls of each attention (q k^T and p v, dense: a
    window mask is applied inside a full score matrix). Not counted: norms,
    activations, RoPE, softmax, modulation (all O(tokens x dim)). The text
    context is always padded to ``text_len`` rows. Timesteps are one per
    sample (one group per tower). Returns a dict with ``"conditioning"`` (text
    embedding MLPs: work that depends only on the conditioning), ``"step"``
    (the rest), ``"total"`` and ``"attention"`` (the part of ``"step"`` in the
    attention matmuls), each for the whole batch.
    """
    v, a = cfg.video, cfg.audio
    D = v.dim
    Lv = math.prod(grid)
    La = n_ref + n_audio  # audio sequence as the audio tower sees it
    gldi = cfg.interaction == "gldi"
    n_part = n_audio if gldi else La  # audio tokens taking part in the cross-tower attention

    def mm(m, k, n):
        return 2 * m * k * n

    attention = 0

    def attn(lq, lk):
        nonlocal attention
        attention += 2 * lq * lk * D * 2  # q k^T and p v over all heads
        return 2 * lq * lk * D * 2

    cond = mm(v.text_len, v.text_dim, D) + mm(v.text_len, D, D) + mm(a.text_len, a.text_dim, D) + mm(a.text_len, D, D)
    step = 0
    # patch embeddings
    step += mm(Lv, v.in_dim * math.prod(v.patch_size), D)
    k, H = a.audio_patch_kernel, a.patch_hidden
    step += mm(La, a.in_dim * k, D) + 3 * mm(La, D * k, H)  # Conv1d, then ConvMLP w1, w3 (D->H), w2 (H->D)
    # timestep embeddings (one group per tower; reference tokens add a t=0 group per token when present)
    for tc, groups in ((v, 1), (a, 1 if not n_ref else La)):
        step += mm(groups, tc.freq_dim, D) + mm(groups, D, D) + mm(groups, D, 6 * D)
    for _ in range(cfg.num_layers):
        for tc, L, partner_q, partner_k in ((v, Lv, Lv, n_part), (a, La, n_part, Lv)):
            step += mm(L, D, 3 * D) + attn(L, L) + mm(L, D, D)          # self-attention q, k, v, o
            step += mm(L, D, D) + mm(tc.text_len, D, 2 * D) + attn(L, tc.text_len) + mm(L, D, D)  # text q, k, v, o
            step += mm(partner_k, D, 2 * D) + attn(partner_q, partner_k)  # partner k, v and attention
            step += mm(L, D, tc.ffn_dim) + mm(L, tc.ffn_dim, D)          # FFN
        if gldi and n_ref:  # style alignment: reference queries attend the whole video
            step += mm(n_ref, D, D) + mm(Lv, D, 2 * D) + attn(n_ref, Lv) + mm(n_ref, D, D)
    step += mm(Lv, D, math.prod(v.patch_size) * v.out_dim) + mm(La, D, a.out_dim)  # heads
    return {"conditioning": batch * cond, "step": batch * step, "total": batch * (cond + step),
            "attention": batch * attention}


def clip_tokens_5b(seconds: float = 5.0, width: int = 1280, height: int = 704):
    """Video grid and audio tokens of the full ``5b`` model for a clip (Wan2.2 VAE, MMAudio latents)."""
    cfg = get_config("5b")
    m = cfg.meta
    frames = int(seconds * m["video_fps"]) + 1
    f = (frames - 1) // m["video_temporal_stride"] + 1
    s = m["video_spatial_stride"]
    pt, ph, pw = cfg.video.patch_size
    grid = (f // pt, height // s // ph, width // s // pw)
    return grid, int(round(seconds * m["audio_latent_rate"]))


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
    with torch.no_grad():
        for name, p in model.named_parameters():
            flat = p.view(-1)
            if p.dim() == 1 and "norm" in name:
                flat.fill_(1.0)
                continue
            scale = 1.0 / math.sqrt(p[0].numel()) if p.dim() >= 2 else 0.02
            for i in range(0, flat.numel(), pool.numel()):
                n = min(pool.numel(), flat.numel() - i)
                flat[i:i + n].copy_(pool[:n]).mul_(scale)
    return model


def _issue15_inputs(cfg, device, dtype, batch=1):
    s = ISSUE15_SHAPE
    g = torch.Generator().manual_seed(1)
    zv = torch.randn(batch, cfg.video.in_dim, s["frames"], s["hw"], s["hw"], generator=g)
    za = torch.randn(batch, s["audio"], cfg.audio.in_dim, generator=g)
    cond = Conditioning(torch.randn(batch, s["text_rows"], cfg.video.text_dim, generator=g),
                        torch.randn(batch, s["text_rows"], cfg.audio.text_dim, generator=g))
    t = torch.full((batch,), 700.0)
    return zv.to(device, dtype), za.to(device, dtype), t.to(device), t.to(device), cond.to(device, dtype)


def _to_fp8_(model: HarmonyModel):
    """Block Linear weights -> scaled float8_e4m3fn, as ``load_model(dtype="fp8_e4m3fn")`` stores them."""
    from .checkpoint import quantizable_weights, quantize_fp8

    for key in quantizable_weights(model):
        module = model.get_submodule(key.rsplit(".", 1)[0])
        q, scale = quantize_fp8(module.weight.data, torch.float8_e4m3fn, scaled=True)
        module.weight.data = q
        module.register_buffer("scale_weight", scale)


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
    s = ISSUE15_SHAPE
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
            _to_fp8_(model)
            compute = torch.bfloat16 if cuda else torch.float32
        inputs = _issue15_inputs(cfg, device, compute)
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


def weight_bytes_5b():
    """Bytes of the full 5b model's weights per storage format (meta device, no allocation)."""
    cfg = get_config("5b")
    with torch.device("meta"):
        model = HarmonyModel(cfg)
    total = fp8_able = 0
    for name, p in model.named_parameters():
        total += p.numel()
        if ".blocks." in name and name.endswith(".weight") and p.dim() == 2:
            fp8_able += p.numel()
    return {"params": total, "fp32": 4 * total, "bf16": 2 * total,
            "fp8": fp8_able + 2 * (total - fp8_able)}


def main(argv=None):
    from .cli import Parser, program

    ap = Parser(prog=f"{program()} bench", description="Speed and memory, measured: seconds per sampling step\n"
                "and peak memory, per precision and guidance mode.")
    ap.add_argument("--repeats", type=int, default=2, help="timed calls per row (after one warm-up call)")
    ap.add_argument("--rows", default=",".join(ROWS),
                    help=f"comma-separated rows to run, from: {', '.join(ROWS)}")
    ap.add_argument("--quick", action="store_true", help="one timed call per row, rows fp32,bf16,tiny")
    ap.add_argument("--devices", default="all", choices=("all", "cpu", "cuda"),
                    help="where to measure (all = CPU, plus the GPU when present)")
    a = ap.parse_args(argv)
    wanted = [r.strip() for r in a.rows.split(",") if r.strip()]
    bad = [r for r in wanted if r not in ROWS]
    if bad:
        ap.error(f"unknown --rows {bad}; choose from {', '.join(ROWS)}")
    if a.quick:
        wanted, a.repeats = [r for r in ("fp32", "bf16", "tiny") if r in wanted], 1
    if a.repeats < 1:
        ap.error("--repeats must be at least 1")
    torch.set_grad_enabled(False)
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}" if hasattr(os, "getloadavg") else "")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"))
    s = ISSUE15_SHAPE
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
    print(f"full 5b model, 5 s clip at 1280x704 (grid {grid} = {math.prod(grid)} video tokens, {n_audio} audio tokens), "
          f"batch 1: {fl['total'] / 1e12:.1f} TFLOP per forward, of which {fl['conditioning'] / 1e12:.3f} TFLOP "
          f"conditioning-only (text embeddings)")
    wb = weight_bytes_5b()
    print(f"5b model weights ({wb['params'] / 1e9:.2f} B params):  fp32 {wb['fp32'] / 2**30:.1f} GiB | "
          f"bf16 {wb['bf16'] / 2**30:.1f} GiB | fp8 (block linears e4m3fn, rest bf16) {wb['fp8'] / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
