"""``python -m harmony bench``: speed and memory, measured (never in tests).

Prints one table: seconds per sampling step for the ``tiny`` config and for a
reduced-depth ``5b``-width config, under plain CFG, SyncCFG as one batched
forward and SyncCFG as three separate passes; the block-swap overhead; and
the weight bytes of the full ``5b`` model stored in fp32 / bf16 / fp8. With a
GPU present the same runs there too, with peak memory.
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from .config import get_config
from .model import Conditioning, HarmonyModel
from .sampling import AVDenoiser, Guidance, Job


def reduced(name: str, layers: int):
    cfg = get_config(name)
    return cfg.replace(video=dataclasses.replace(cfg.video, num_layers=layers),
                       audio=dataclasses.replace(cfg.audio, num_layers=layers))


def _inputs(cfg, frames, hw, audio_len, text_rows, device, dtype):
    g = torch.Generator().manual_seed(0)
    zv = torch.randn(1, cfg.video.in_dim, frames, hw, hw, generator=g)
    za = torch.randn(1, audio_len, cfg.audio.in_dim, generator=g)
    cond = Conditioning(torch.randn(1, text_rows, cfg.video.text_dim, generator=g),
                        torch.randn(1, text_rows, cfg.audio.text_dim, generator=g))
    uncond = Conditioning(torch.zeros_like(cond.video_context), torch.zeros_like(cond.audio_context))
    move = lambda t: t.to(device, dtype)  # noqa: E731
    cond = Conditioning(move(cond.video_context), move(cond.audio_context))
    uncond = Conditioning(move(uncond.video_context), move(uncond.audio_context))
    return move(zv), move(za), cond, uncond


def time_step(model, cfg, mode, batched, shape, device, dtype, repeats):
    """Median seconds for one guided denoising step."""
    zv, za, cond, uncond = _inputs(cfg, *shape, device, dtype)
    silent = torch.zeros(cfg.audio.in_dim, device=device, dtype=dtype)
    den = AVDenoiser(model, cond, Guidance(mode, 3.0, 2.0, 1.0, batched), Job(), uncond, silent)
    sv = torch.full((1, zv.shape[2]), 0.7, dtype=torch.float64, device=device)
    sa = torch.full((1,), 0.7, dtype=torch.float64, device=device)
    times = []
    with torch.no_grad():
        for i in range(repeats + 1):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            den(zv, za, sv, sa)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i:  # first call is warm-up
                times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


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


def run(device, rows, repeats, block_swap=True):
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    specs = [("tiny", get_config("tiny"), (48, 4, 94, 48)),
             ("5b-width, 1 layer", reduced("5b", 1), (2, 8, 16, 64))]
    for label, cfg, shape in specs:
        torch.manual_seed(0)
        model = HarmonyModel(cfg).to(device, dtype).eval()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        res = {}
        for mode, batched, key in (("cfg", True, "plain CFG"), ("synccfg", True, "SyncCFG batched"),
                                   ("synccfg", False, "SyncCFG 3 passes")):
            res[key] = time_step(model, cfg, mode, batched, shape, device, dtype, repeats)
        if block_swap:
            from .offload import BlockSwap
            model.to("cpu")
            swap = BlockSwap(model, resident_blocks=0, device=device)
            res["SyncCFG batched, block swap (0 resident)"] = time_step(
                model, cfg, "synccfg", True, shape, device, dtype, repeats)
            swap.remove()
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
        for key, sec in res.items():
            rows.append((device.type, label, key, sec, peak))
        del model


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m harmony bench", description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-block-swap", action="store_true")
    ap.add_argument("--devices", default="all", choices=("all", "cpu", "cuda"),
                    help="where to measure (all = CPU, plus the GPU when present)")
    a = ap.parse_args(argv)
    torch.set_grad_enabled(False)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"))
    rows = []
    devices = [torch.device("cpu")] if a.devices in ("all", "cpu") else []
    if a.devices in ("all", "cuda") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    for dev in devices:
        run(dev, rows, a.repeats, not a.no_block_swap)
    print()
    print(f"{'device':6} | {'config':18} | {'guidance':40} | {'s/step':>8} | peak GiB")
    print("-" * 92)
    for dev, label, key, sec, peak in rows:
        print(f"{dev:6} | {label:18} | {key:40} | {sec:8.4f} | {'' if peak is None else f'{peak:.2f}'}")
    wb = weight_bytes_5b()
    print()
    print(f"5b model weights ({wb['params'] / 1e9:.2f} B params):  fp32 {wb['fp32'] / 2**30:.1f} GiB | "
          f"bf16 {wb['bf16'] / 2**30:.1f} GiB | fp8 (block linears e4m3fn, rest bf16) {wb['fp8'] / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
