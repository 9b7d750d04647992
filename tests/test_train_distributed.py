"""Multi-process training through ``accelerate`` (issue 11, item 6), at tiny scale on CPU.

SPAWNS PROCESSES: ``test_accelerate_ddp_two_cpu_processes_fine_tune_from_ovi`` runs
``accelerate launch`` with 2 training processes (gloo) in a temporary folder (about 20-40 s).

accelerate 1.15 starts several CPU processes only through its multi-process launcher
(``--multi_gpu --num_processes 2`` with ``ACCELERATE_USE_CPU=true``, which makes each process a
gloo ``MULTI_CPU`` rank); ``--cpu --num_processes 2`` runs ONE process. FSDP and DeepSpeed need
accelerators in accelerate (on CPU an FSDP config falls back to plain DDP), so their shipped
config files are only checked here to pass accelerate's own config loading and validation.
The trainer's own sharded path (``--fsdp block``, also what an FSDP ``accelerate launch`` runs) is
tested in tests/test_fsdp.py.
"""
import json
import os
import subprocess
import sys

import pytest
import torch

import realfiles as rf
from harmony.config import apply_overrides, get_config
from harmony.model import HarmonyModel

pytest.importorskip("accelerate")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = "dim=64,ffn_dim=128,num_heads=2,num_layers=2,text_dim=64"
CONFIGS = os.path.join(ROOT, "configs", "accelerate")


@pytest.mark.parametrize("name,kind", [("fsdp.yaml", "use_fsdp"), ("deepspeed.yaml", "use_deepspeed")])
def test_shipped_accelerate_configs_pass_accelerates_own_validation(name, kind):
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    args = launch_command_parser().parse_args(["--config_file", os.path.join(CONFIGS, name), "train.py"])
    args, _, _ = _validate_launch_command(args)
    assert getattr(args, kind) is True
    assert args.num_processes >= 2 and args.mixed_precision == "bf16"
    if kind == "use_fsdp":  # one FSDP2 unit per transformer block (HarmonyModel.layer calls the blocks)
        assert args.fsdp_version == 2 and args.fsdp_auto_wrap_policy == "TRANSFORMER_BASED_WRAP"
        assert args.fsdp_transformer_layer_cls_to_wrap == "WanBlock"
    else:
        assert int(args.zero_stage) == 2 and float(args.gradient_clipping) == 1.0


@pytest.mark.slow
def test_accelerate_ddp_two_cpu_processes_fine_tune_from_ovi(tmp_path):
    from safetensors import safe_open

    from harmony.codecs import load_codecs
    from harmony.codecs.wan_vae import WanVAE
    from harmony.train import encode_latent_pool

    # a reduced Ovi fusion file (real key layout, Ovi's video.json / audio.json beside it)
    src = rf.random_model(apply_overrides(get_config("5b-global"), SMALL), seed=3)
    ovi = rf.write_ovi(tmp_path / "model.safetensors", src)
    rf.write_ovi_configs(tmp_path, src.cfg)
    # --config 5b takes 48-channel video latents (Wan2.2 VAE): a pool encoded by a tiny random one
    torch.manual_seed(2)
    with torch.no_grad():
        encode_latent_pool(str(tmp_path / "pool.safetensors"), WanVAE(dim=6, dec_dim=8, z_dim=48).eval(),
                           load_codecs()[1], size=8, seconds=1.0)
    out = tmp_path / "run"
    env = dict(os.environ, ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH", "")) if p))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "harmony", "train", "--config", "5b", "--overrides", SMALL, "--init-from", ovi,
           "--latents", str(tmp_path / "pool.safetensors"), "--pool", "8", "--batch", "2", "--steps", "2",
           "--seconds", "1", "--warmup", "1", "--log-every", "1", "--out", str(out)]
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    text = run.stdout + run.stderr
    assert run.returncode == 0, text[-4000:]

    want_fresh = set(HarmonyModel(apply_overrides(get_config("5b"), SMALL)).state_dict()) - set(src.state_dict())
    for rank in (0, 1):  # both processes ran, each loaded the Ovi file into the GLDI model
        assert f"[rank {rank}/2] init-from Ovi: loaded {len(src.state_dict())} tensors" in text, text[-4000:]
        assert f"[rank {rank}/2] init-from Ovi: model.safetensors: Ovi fusion model" in text
        assert f"initialised fresh ({len(want_fresh)} tensors" in text
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 2
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]  # the main process alone writes the log
    assert all({"joint", "a2v", "v2a"} <= set(r) for r in log)  # Cross-Task Synergy: three task losses

    with safe_open(str(out / "harmony_tiny.safetensors"), "pt") as fh:
        meta = fh.metadata()
        weights = {k: fh.get_tensor(k) for k in fh.keys()}
    cfg = json.loads(meta["harmony_config"])
    assert cfg["interaction"] == "gldi" and cfg["video"]["in_dim"] == 48 and cfg["meta"]["init_family"] == "ovi"
    assert set(weights) == set(HarmonyModel(apply_overrides(get_config("5b"), SMALL)).state_dict())
    assert all(torch.isfinite(t).all() for t in weights.values())
    moved = [k for k, t in src.state_dict().items() if not torch.equal(weights[k], t.to(torch.bfloat16).float())]
    assert len(moved) > len(src.state_dict()) // 2  # two optimizer steps changed the Ovi weights
    assert os.path.isfile(out / "harmony_tiny.text.safetensors")
