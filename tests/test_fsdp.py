"""Sharded training (issue 24): per-block FSDP2 and its sharded state, at tiny size on CPU.

SPAWNS PROCESSES: the slow tests start ``torchrun --standalone --nproc_per_node 2`` (two gloo
processes) and one plain process, each training a few steps of the tiny model on a saved pool.

* ``-k per_block_fsdp``: every block piece of the dual-tower layer goes through a module call
  (so FSDP2's hooks gather a block's shards), and 2 sharded processes follow the single process
  with the same global batch (``--accum 2``) step for step, each holding about half its
  parameter + optimizer + EMA bytes; the export gathered on rank 0 loads in the CLI's loader.
* ``-k sharded_state``: a run stopped at step 2 and resumed from its torch.distributed.checkpoint
  state repeats the uninterrupted run's next step exactly (loss and every exported weight).
"""
import json
import os
import subprocess
import sys

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from harmony.config import get_config
from harmony.model import HarmonyModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 3
SMALL = "num_layers=2"


def test_per_block_fsdp_units_see_every_use_of_a_block():
    """Hooks on the blocks (what FSDP2 registers) run around every piece that uses a block's
    weights: two calls per block per layer, and no weight is touched outside its block's call."""
    torch.manual_seed(0)
    model = HarmonyModel(get_config("tiny")).eval()
    active, calls, outside = [], [], []

    def pre(block, *_):
        active.append(block)
        calls.append(block)

    def post(block, *_):
        active.remove(block)

    blocks = list(model.video_model.blocks) + list(model.audio_model.blocks)
    for b in blocks:
        b.register_forward_pre_hook(pre)
        b.register_forward_hook(post)
    owner = {id(p): b for b in blocks for p in b.parameters()}

    class Watch(TorchFunctionMode):  # every torch call that reads a block's weight, and whether its block is active
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            for t in tree_flatten((args, kwargs))[0]:
                if id(t) in owner and owner[id(t)] not in active:
                    outside.append(getattr(func, "__name__", str(func)))
            return func(*args, **kwargs)

    from harmony.conditioner import Conditioner

    cond = Conditioner(get_config("tiny"))(["a red ball"], ["a beep"], ["hi"], [None])
    with torch.no_grad(), Watch():
        model(torch.randn(1, 16, 2, 4, 4), torch.randn(1, 10, 20), torch.tensor([500.0]), torch.tensor([500.0]), cond)
    assert outside == []
    n = model.num_layers
    assert len(calls) == 4 * n  # self-attention, then the rest, of each tower's block per layer
    for b in blocks:
        assert calls.count(b) == 2


def test_per_block_fsdp_activation_checkpointing_gives_the_same_gradients():
    """``checkpoint_blocks`` (--checkpoint-activations 1) recomputes each block piece in backward:
    the same loss and gradients, with fewer activations kept (fewer saved tensors)."""
    from harmony.conditioner import Conditioner

    torch.manual_seed(0)
    cfg = get_config("tiny")
    model, text = HarmonyModel(cfg), Conditioner(cfg)
    inputs = (torch.randn(2, 16, 2, 4, 4), torch.randn(2, 10, 20), torch.tensor([300.0, 800.0]),
              torch.tensor([500.0, 100.0]))
    grads, saved = [], []
    for on in (False, True):
        model.checkpoint_blocks = on
        model.zero_grad()
        count = [0]

        def pack(t, count=count):
            count[0] += 1
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            v, a = model(*inputs, text(["a red ball", "rain"], ["a beep", ""], ["hi", ""], [None, None]))
        ((v ** 2).mean() + (a ** 2).mean()).backward()
        grads.append({k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
        saved.append(count[0])
    assert set(grads[0]) == set(grads[1]) and len(grads[0]) == len(list(model.parameters()))
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k], rtol=1e-5, atol=1e-6)
    assert saved[1] < saved[0] / 2  # only each checkpointed piece's inputs are kept


def _run(cmd, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH", "")) if p))
    run = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    return run.stdout + run.stderr


def _train(tmp, out, *extra, procs=1):
    launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs)]
              if procs > 1 else [sys.executable])
    return _run(launch + ["-m", "harmony", "train", "--config", "tiny", "--overrides", SMALL,
                          "--latents", str(tmp / "pool.safetensors"), "--batch", "2", "--steps", str(STEPS),
                          "--seconds", "1", "--warmup", "1", "--log-every", "1", "--save-every", "100",
                          "--out", str(tmp / out), *extra], tmp)


def _log(run_dir):
    return [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    from harmony.codecs import load_codecs
    from harmony.train_data import LatentPool

    tmp = tmp_path_factory.mktemp("fsdp")
    torch.manual_seed(0)
    LatentPool(load_codecs(), 1.0, 4, 0).save(str(tmp / "pool.safetensors"))
    return tmp


@pytest.fixture(scope="module")
def sharded(pool):
    """2 sharded processes with one micro-batch each."""
    _train(pool, "sharded", "--fsdp", "block", procs=2)
    return pool


def _export(path):
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.mark.slow
def test_per_block_fsdp_two_gloo_processes_follow_one_process(sharded):
    tmp = sharded
    _train(tmp, "single", "--accum", "2")  # one process, 2 micro-batches: the same global batch
    single, sharded = _log(tmp / "single"), _log(tmp / "sharded")
    assert [r["step"] for r in sharded] == list(range(1, STEPS + 1))
    for a, b in zip(single, sharded):  # same global batch: same losses, to float tolerance
        for k in ("loss", "joint", "a2v", "v2a"):
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-5), (a, b)
    one = json.loads((tmp / "single" / "train_summary.json").read_text())
    two = json.loads((tmp / "sharded" / "train_summary.json").read_text())
    assert two["sharded"] and two["processes"] == 2 and not one["sharded"]
    full = one["state_bytes_per_process"][0]
    for part in two["state_bytes_per_process"]:  # parameters, AdamW moments and EMA: about half each
        for k in ("params", "optimizer", "ema", "total"):
            assert 0.45 < part[k] / full[k] < 0.55, (k, part, full)
    assert sum(p["params"] for p in two["state_bytes_per_process"]) == full["params"]

    # the EMA gathered on rank 0 equals the single process's, and loads in the CLI's loader
    a, b = _export(tmp / "single" / "harmony_tiny.safetensors"), _export(tmp / "sharded" / "harmony_tiny.safetensors")
    assert set(a) == set(b)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5
    from harmony.pipeline import HarmonyPipeline

    pipe = HarmonyPipeline.from_pretrained(str(tmp / "sharded" / "harmony_tiny.safetensors"))
    state = pipe.model.state_dict()
    assert all(torch.equal(state[k].float(), b[k].float()) for k in b)


@pytest.mark.slow
def test_sharded_state_resume_repeats_the_next_step_exactly(sharded):
    tmp = sharded
    _train(tmp, "resumed", "--fsdp", "block", "--stop-at", "2", procs=2)
    state = tmp / "resumed" / "state_dcp"
    meta = json.loads((state / "meta.json").read_text())
    assert meta["step"] == 2 and meta["world_size"] == 2
    assert sorted(p.name for p in state.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]  # a shard each
    text = _train(tmp, "resumed", "--fsdp", "block", procs=2)
    assert "resumed from" in text and "at step 2 (sharded state, 2 processes)" in text
    whole, resumed = _log(tmp / "sharded"), _log(tmp / "resumed")
    assert [r["step"] for r in resumed] == list(range(1, STEPS + 1))
    for k in ("loss", "joint", "a2v", "v2a"):
        assert resumed[2][k] == whole[2][k]
    a, b = _export(tmp / "sharded" / "harmony_tiny.safetensors"), _export(tmp / "resumed" / "harmony_tiny.safetensors")
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
