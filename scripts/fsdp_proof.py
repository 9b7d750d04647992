"""Proof on CPU (2 gloo processes) of the sharded trainer (issue 24, docs/training/distributed.md).

    python scripts/fsdp_proof.py --out runs/fsdp_proof          # writes runs/fsdp_proof/proof.json

Tiny width (the repository's ``tiny`` config), real training through ``python -m harmony train``:

1. one process with 2 micro-batches (``--accum 2``) and ``torchrun --nproc_per_node 2 ... --fsdp
   block`` (one micro-batch each, the same global batch) train 20 steps on one saved pool: the two
   loss curves, side by side, and each process's parameter + AdamW + EMA bytes (train_summary.json);
2. the sharded run stopped at step 10 (``--stop-at 10``) and resumed from its
   torch.distributed.checkpoint state: steps 11..20 and the exported weights against the whole run;
3. the export gathered on rank 0 generates a clip with ``python -m harmony generate --model``;
4. the same sharded run with ``--mixed-precision bf16`` (bf16 parameters, float32 reduction).

Reduced 5B (the 5b config at full width, ``num_layers=1,text_dim=64``: 1.09 B parameters): the
parameter + AdamW + EMA bytes of one process and of each of 2 gloo processes after
``harmony.distributed.shard``, counted on meta tensors (the full-width state does not fit this
machine's memory: 1.09 B x 16 bytes = 17 GB in one process).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

REDUCED_5B = "num_layers=1,text_dim=64"


def run(cmd, cwd, log):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH", "")) if p))
    env.setdefault("OMP_NUM_THREADS", "1")
    t = time.time()
    with open(log, "w") as fh:
        r = subprocess.run(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT)
    if r.returncode:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}; see {log}")
    return round(time.time() - t, 1)


def torchrun(n):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n)]


def log_of(path):
    with open(os.path.join(path, "train_log.jsonl")) as fh:
        return [json.loads(line) for line in fh]


def summary_of(path):
    with open(os.path.join(path, "train_summary.json")) as fh:
        return json.load(fh)


def tiny(out, steps):
    import torch
    from safetensors.torch import load_file

    from harmony.codecs import load_codecs
    from harmony.train_data import LatentPool

    pool = os.path.join(out, "pool.safetensors")
    torch.manual_seed(0)
    LatentPool(load_codecs(), 1.0, 16, 0).save(pool)
    train = ["-m", "harmony", "train", "--config", "tiny", "--latents", pool, "--batch", "2", "--steps", str(steps),
             "--seconds", "1", "--warmup", "5", "--log-every", "1", "--save-every", "1000"]
    d = lambda name: os.path.join(out, name)  # noqa: E731
    wall = {"single": run([sys.executable] + train + ["--accum", "2", "--out", d("single")], out, d("single.log")),
            "sharded": run(torchrun(2) + train + ["--fsdp", "block", "--out", d("sharded")], out, d("sharded.log"))}
    half = steps // 2
    wall["resume_part1"] = run(torchrun(2) + train + ["--fsdp", "block", "--stop-at", str(half), "--out", d("resumed")],
                               out, d("resumed1.log"))
    wall["resume_part2"] = run(torchrun(2) + train + ["--fsdp", "block", "--out", d("resumed")], out, d("resumed2.log"))
    wall["bf16"] = run(torchrun(2) + train + ["--fsdp", "block", "--mixed-precision", "bf16", "--out", d("bf16")],
                       out, d("bf16.log"))
    clip = d("from_sharded_export.mp4")
    wall["generate"] = run([sys.executable, "-m", "harmony", "generate", "--model", d("sharded/harmony_tiny.safetensors"),
                            "--steps", "4", "--seconds", "1", "-o", clip], out, d("generate.log"))

    one, two, res, bf = log_of(d("single")), log_of(d("sharded")), log_of(d("resumed")), log_of(d("bf16"))
    curve = [{"step": a["step"], "one_process_accum2": a["loss"], "two_processes_fsdp": b["loss"],
              "two_processes_fsdp_bf16": c["loss"]} for a, b, c in zip(one, two, bf)]
    ea, eb = load_file(d("single/harmony_tiny.safetensors")), load_file(d("sharded/harmony_tiny.safetensors"))
    er = load_file(d("resumed/harmony_tiny.safetensors"))
    bytes_one = summary_of(d("single"))["state_bytes_per_process"]
    bytes_two = summary_of(d("sharded"))["state_bytes_per_process"]
    return {
        "command": " ".join(train),
        "loss_curve": curve,
        "max_abs_loss_diff_fp32": max(abs(r["one_process_accum2"] - r["two_processes_fsdp"]) for r in curve),
        "max_abs_loss_diff_bf16": max(abs(r["one_process_accum2"] - r["two_processes_fsdp_bf16"]) for r in curve),
        "export_max_abs_diff_vs_one_process": max(float((ea[k] - eb[k]).abs().max()) for k in ea),
        "state_bytes_one_process": bytes_one[0],
        "state_bytes_per_process_fsdp2": bytes_two,
        "ratio_per_process": [round(b["total"] / bytes_one[0]["total"], 4) for b in bytes_two],
        "resume": {"stopped_at": half, "resumed_steps_equal": [r["loss"] == w["loss"] for r, w in zip(res[half:], two[half:])],
                   "resumed_losses": [r["loss"] for r in res[half:]], "whole_run_losses": [w["loss"] for w in two[half:]],
                   "export_bitwise_equal": all(torch.equal(eb[k], er[k]) for k in eb)},
        "generate_from_export": {"clip": clip, "bytes": os.path.getsize(clip)},
        "wall_s": wall,
    }


def meta_5b_worker(path):
    """One process of the reduced-5B count (under torchrun, or alone with WORLD_SIZE unset)."""
    import torch

    from harmony import distributed as hd
    from harmony.conditioner import Conditioner
    from harmony.config import apply_overrides, get_config
    from harmony.model import HarmonyModel

    cfg = apply_overrides(get_config("5b"), REDUCED_5B)
    with torch.device("meta"):
        model, text = HarmonyModel(cfg), Conditioner(cfg)
    if "WORLD_SIZE" in os.environ:
        hd.init_process_group()
        hd.shard(model, text, torch.device("cpu"))  # the same call as the trainer's, on meta tensors
    rank, n = hd.world()
    params = list(model.parameters()) + list(text.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4)
    for p in params:  # AdamW's state as after a step: two moments per parameter and a step count
        opt.state[p] = {"step": torch.tensor(1.0), "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
    ema = {f"model.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    ema.update({f"text.{k}": v.detach().clone() for k, v in text.state_dict().items()})
    held = hd.state_bytes(params, opt, ema)
    if n > 1:
        every = [None] * n
        torch.distributed.all_gather_object(every, held)
        held = every
        torch.distributed.destroy_process_group()
    if rank == 0:
        with open(path, "w") as fh:
            json.dump({"params_total": sum(p.numel() for p in params), "per_process": held if n > 1 else [held]}, fh)


def reduced_5b(out):
    one, two = os.path.join(out, "meta5b_one.json"), os.path.join(out, "meta5b_two.json")
    run([sys.executable, __file__, "--meta-5b-worker", one], out, os.path.join(out, "meta5b_one.log"))
    run(torchrun(2) + [__file__, "--meta-5b-worker", two], out, os.path.join(out, "meta5b_two.log"))
    with open(one) as fh:
        a = json.load(fh)
    with open(two) as fh:
        b = json.load(fh)
    full = a["per_process"][0]["total"]
    return {"overrides": f"--config 5b --overrides {REDUCED_5B}", "params": a["params_total"],
            "state_bytes_one_process": a["per_process"][0], "state_bytes_per_process_fsdp2": b["per_process"],
            "ratio_per_process": [round(p["total"] / full, 4) for p in b["per_process"]]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/fsdp_proof")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--meta-5b-worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--skip-tiny", action="store_true", help="only the reduced-5B byte count")
    a = ap.parse_args()
    if a.meta_5b_worker:
        return meta_5b_worker(a.meta_5b_worker)
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    result = {"reduced_5b": reduced_5b(out)}
    if not a.skip_tiny:
        result["tiny"] = tiny(out, a.steps)
    path = os.path.join(out, "proof.json")
    with open(path, "w") as fh:
        json.dump(result, fh, indent=1)
    print(json.dumps(result, indent=1))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
