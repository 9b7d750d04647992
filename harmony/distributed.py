"""Sharded training (``python -m harmony train --fsdp block``) on several processes, with torch's
own FSDP2 (``torch.distributed.fsdp.fully_shard``) and ``torch.distributed.checkpoint`` (DCP).

* `shard`: every block of both towers is its own FSDP2 unit (`HarmonyModel.layer` runs each
  block's pieces as module calls, so the unit's hooks gather its shards); the time embedding and
  projection of each tower are units that keep float32 under bf16 mixed precision (they compute
  in float32, `harmony.tower.computes_in_fp32`); the rest of the model and the text conditioner
  are one unit each. Mixed precision ``bf16``: bf16 parameters in compute, float32 gradient
  reduction, float32 sharded parameters and optimizer state.
* The EMA is a dict of DTensors sharded like the parameters (``state_dict()`` of a sharded model).
* `save_state` / `load_state`: model, text conditioner, AdamW and EMA through DCP (each process
  writes its shards), plus each process's random-generator states, so a resumed run repeats the
  next step exactly.
* `gather_to_rank0`: the full EMA, one tensor at a time, sent to rank 0 only (the export).

Launch with ``torchrun --nproc_per_node N -m harmony train --fsdp block ...`` or with
``accelerate launch --config_file configs/accelerate/fsdp.yaml -m harmony train ...``
(docs/training/distributed.md says what runs where).
"""
from __future__ import annotations

import json
import os
import shutil
import warnings

import torch
import torch.distributed as dist
import torch.nn as nn

STATE_DIR = "state_dcp"
"""Folder (inside ``--out``) of a sharded run's checkpoint."""

MIXED_PRECISION = ("fp32", "bf16")


def world() -> tuple[int, int]:
    """(rank, world size) of this process (0, 1 without a process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_process_group() -> torch.device:
    """Join the process group a launcher (torchrun, accelerate launch) described in the environment
    (`harmony.parallel.join_process_group`). Returns this process's device."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise RuntimeError("--fsdp block needs a distributed launch: torchrun --nproc_per_node N -m harmony "
                           "train --fsdp block ... (or accelerate launch with configs/accelerate/fsdp.yaml); "
                           "RANK / WORLD_SIZE are not set")
    from .parallel import join_process_group

    return join_process_group()


def shard(model: nn.Module, conditioner: nn.Module, device: torch.device, mixed_precision: str = "fp32",
          checkpoint_blocks: bool = False):
    """Apply FSDP2 in place: one unit per block of each tower, float32 units for the time
    embedding / projection, one unit for the rest of the model and one for the conditioner."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    if mixed_precision not in MIXED_PRECISION:
        raise ValueError(f"mixed precision must be one of {MIXED_PRECISION}, got {mixed_precision!r}")
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    # the blocks return views (modulation chunks, slices); nothing changes them in place afterwards
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")
    # inputs are not cast by FSDP: the timesteps and modulation tables stay float32 (see `_bf16_io`)
    fp32 = MixedPrecisionPolicy(cast_forward_inputs=False)
    mp = fp32 if mixed_precision == "fp32" else MixedPrecisionPolicy(
        param_dtype=torch.bfloat16, reduce_dtype=torch.float32, cast_forward_inputs=False)
    for tower in (model.video_model, model.audio_model):
        for block in tower.blocks:
            fully_shard(block, mesh=mesh, mp_policy=mp)
        fully_shard(tower.time_embedding, mesh=mesh, mp_policy=fp32)
        fully_shard(tower.time_projection, mesh=mesh, mp_policy=fp32)
    model.checkpoint_blocks = bool(checkpoint_blocks)
    if mixed_precision == "bf16":
        _bf16_io(model)
    fully_shard(model, mesh=mesh, mp_policy=mp)
    if any(True for _ in conditioner.parameters()):  # a clip cache's frozen text has none
        fully_shard(conditioner, mesh=mesh, mp_policy=mp)


def _bf16_io(model: nn.Module):
    """Under bf16 parameters the model takes bf16 latents (as in bf16 inference) and float32
    timesteps, and gives float32 outputs to the loss."""
    def cast_in(_module, args):
        return (args[0].to(torch.bfloat16), args[1].to(torch.bfloat16), *args[2:])

    def cast_out(_module, _args, out):
        return tuple(o.float() for o in out)

    model.register_forward_pre_hook(cast_in)
    model.register_forward_hook(cast_out)


def local_bytes(tensors) -> int:
    """Bytes this process holds for `tensors` (a DTensor counts its local shard)."""
    total = 0
    for t in tensors:
        if not torch.is_tensor(t):
            continue
        local = t.to_local() if hasattr(t, "to_local") else t
        total += local.numel() * local.element_size()
    return total


def state_bytes(params, opt: torch.optim.Optimizer, ema: dict) -> dict:
    """This process's parameter, optimizer-state and EMA bytes."""
    opt_tensors = [v for st in opt.state.values() for v in st.values()]
    out = {"params": local_bytes(params), "optimizer": local_bytes(opt_tensors), "ema": local_bytes(ema.values())}
    out["total"] = sum(out.values())
    return out


def _modules(model, conditioner) -> nn.ModuleDict:
    # one module owning both, so that state-dict keys are "model.*" / "text.*" like the EMA's
    return nn.ModuleDict({"model": model, "text": conditioner})


def _rng_file(path: str, rank: int) -> str:
    return os.path.join(path, f"rng.rank{rank}.safetensors")


def save_state(out: str, model, conditioner, ema: dict, opt, generators: list, step: int, meta: dict):
    """Write ``<out>/state_dcp`` with torch.distributed.checkpoint (every process its shards), then
    swap it in for the previous one (rank 0, after all have written)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    from .weightfile import save_safetensors

    rank, _ = world()
    final, tmp = os.path.join(out, STATE_DIR), os.path.join(out, STATE_DIR + ".tmp")
    if rank == 0 and os.path.isdir(tmp):
        shutil.rmtree(tmp)
    dist.barrier()
    msd, osd = get_state_dict(_modules(model, conditioner), opt)
    dcp.save({"model": msd, "optim": osd, "ema": ema}, checkpoint_id=tmp)
    # the random generators (data draws, noise) differ per process: one small file each
    save_safetensors({f"g{i}": g.get_state() for i, g in enumerate(generators)}, _rng_file(tmp, rank))
    dist.barrier()
    if rank == 0:
        with open(os.path.join(tmp, "meta.json"), "w") as fh:
            json.dump({**meta, "step": step, "world_size": dist.get_world_size()}, fh)
        if os.path.isdir(final):
            shutil.rmtree(final)
        os.replace(tmp, final)
    dist.barrier()


def has_state(out: str) -> bool:
    return os.path.isfile(os.path.join(out, STATE_DIR, "meta.json"))


def saved_step(out: str) -> int:
    with open(os.path.join(out, STATE_DIR, "meta.json")) as fh:
        return int(json.load(fh)["step"])


def load_state(out: str, model, conditioner, ema: dict, opt, generators: list) -> int:
    """Load ``<out>/state_dcp`` into the sharded model, conditioner, optimizer, EMA and generators
    (same number of processes as it was saved with); returns the step."""
    import torch.distributed.checkpoint as dcp
    from safetensors.torch import load_file
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    path = os.path.join(out, STATE_DIR)
    with open(os.path.join(path, "meta.json")) as fh:
        meta = json.load(fh)
    rank, n = world()
    if meta["world_size"] != n:
        raise ValueError(f"{path} was saved by {meta['world_size']} processes, this run has {n}: resume with "
                         f"--nproc_per_node {meta['world_size']} (the random generators are per process)")
    modules = _modules(model, conditioner)
    msd, osd = get_state_dict(modules, opt)
    state = {"model": msd, "optim": osd, "ema": ema}
    dcp.load(state, checkpoint_id=path)
    set_state_dict(modules, opt, model_state_dict=state["model"], optim_state_dict=state["optim"])
    rng = load_file(_rng_file(path, rank))
    for i, g in enumerate(generators):
        g.set_state(rng[f"g{i}"])
    return int(meta["step"])


def gather_to_rank0(tensors: dict) -> dict:
    """Full tensors on rank 0 (``{}`` elsewhere), one at a time: each process sends its shard of one
    tensor to rank 0 (a gather, not an all-gather), so no other process ever holds a full copy."""
    rank, n = world()
    full = {}
    for k, t in tensors.items():
        if not hasattr(t, "to_local"):  # a plain tensor is the same on every process
            if rank == 0:
                full[k] = t.detach().cpu()
            continue
        local = t.to_local().detach()
        rows = -(-t.shape[0] // n)  # FSDP2 shards dim 0 as torch.chunk: ceil(rows / n) per process
        padded = local.new_zeros((rows, *t.shape[1:]))
        padded[: local.shape[0]] = local
        parts = [torch.empty_like(padded) for _ in range(n)] if rank == 0 else None
        dist.gather(padded, parts, dst=0)
        if rank == 0:
            full[k] = torch.cat(parts)[: t.shape[0]].cpu()
    return full
