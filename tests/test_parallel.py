"""Sequence-parallel inference (issue 24, item 5): ``harmony.parallel``.

SPAWNS PROCESSES: the slow tests start 2 gloo processes (torch.multiprocessing, and
``torchrun`` for the CLI) and compare against one process; select with
``pytest -k sequence_parallel``.
"""
import os
import socket
import subprocess
import sys

import pytest
import torch

from harmony.config import apply_overrides, get_config
from harmony.parallel import shard_groups

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_sequence_parallel_shard_groups_slices_groups_or_expands_per_token():
    # 3 groups of 4 tokens; a table whose rows are the group index
    t = torch.arange(3.0).view(1, 3, 1).expand(2, 3, 5)
    per_token = torch.arange(12) // 4
    for start, end in ((0, 12), (4, 8), (0, 6), (6, 12), (5, 7)):
        got = shard_groups(t, 12, start, end)
        aligned = start % 4 == 0 and end % 4 == 0
        assert got.shape[1] == ((end - start) // 4 if aligned else end - start)
        # whatever the form, token j of the piece reads its own group's row
        rows = got[0, :, 0].repeat_interleave(4) if aligned else got[0, :, 0]
        assert torch.equal(rows, per_token[start:end].float())
    one = torch.randn(2, 1, 6, 8)
    assert shard_groups(one, 12, 5, 7) is one  # one group: every token shares it


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _randomize(model, seed):
    """Every parameter random (the style path's zero-initialised output projection included)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model


def _worker(rank, world, port, results):
    import torch.distributed as dist

    from harmony import parallel
    from harmony.model import Conditioning, HarmonyModel

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    sp = parallel.SequenceParallel()
    try:
        diffs = {}
        # GLDI with a reference voice (style alignment on), per-frame video timesteps, 3x3x3 = 27 video
        # tokens (not divisible by 2, and the split cuts a frame: timestep groups per token on the ranks)
        for name, grid, n_ref, t_frames in (("gldi", (3, 3, 3), 5, True), ("gldi", (2, 2, 4), 0, False),
                                            ("global", (3, 2, 3), 4, False)):
            cfg = get_config("tiny" if name == "gldi" else "tiny-global")
            model = _randomize(HarmonyModel(cfg).eval(), seed=1)
            g = torch.Generator().manual_seed(2)
            B, (f, h, w) = 2, grid
            video = torch.randn(B, cfg.video.in_dim, f, 2 * h, 2 * w, generator=g)
            audio = torch.randn(B, 11, cfg.audio.in_dim, generator=g)
            cond = Conditioning(torch.randn(B, 7, cfg.video.text_dim, generator=g),
                                torch.randn(B, 5, cfg.audio.text_dim, generator=g),
                                torch.randn(B, n_ref, cfg.audio.in_dim, generator=g) if n_ref else None)
            t_v = torch.tensor([[0.0] + [700.0] * (f - 1), [300.0] * f]) if t_frames else torch.tensor([700.0, 300.0])
            t_a = torch.tensor([650.0, 250.0])
            with torch.no_grad():
                one = model(video, audio, t_v, t_a, cond)
                parallel.apply(model, sp)
                split = model(video, audio, t_v, t_a, cond)
                parallel.apply(model, None)
            diffs[f"{name} {grid} ref {n_ref}"] = max((x - y).abs().max().item() for x, y in zip(one, split))
        # heads that do not divide by the process count: a clear error before any compute
        odd = HarmonyModel(apply_overrides(get_config("tiny"), "num_heads=1"))
        try:
            parallel.apply(odd, sp)
            diffs["heads error"] = "no error"
        except ValueError as e:
            diffs["heads error"] = str(e)
        print(rank, diffs, flush=True)
        results[rank] = diffs
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_sequence_parallel_forward_on_two_gloo_processes_matches_one_process():
    import torch.multiprocessing as mp

    manager = mp.Manager()
    results = manager.dict()
    mp.spawn(_worker, args=(2, _free_port(), results), nprocs=2, join=True)
    for rank in (0, 1):
        got = dict(results[rank])
        err = got.pop("heads error")
        assert "torchrun --nproc_per_node 2" in err and "1 attention heads" in err, err
        assert len(got) == 3
        for case, diff in got.items():
            assert diff < 1e-5, (rank, case, diff)


@pytest.mark.slow
def test_sequence_parallel_generate_under_torchrun_matches_one_process(tmp_path):
    from safetensors.torch import load_file

    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH", "")) if p))
    env.pop("WORLD_SIZE", None)
    args = ["generate", "a red ball bounces", "--caption", "thuds", "--seconds", "1", "--steps", "3",
            "--seed", "4"]
    one = subprocess.run([sys.executable, "-m", "harmony", *args, "-o", str(tmp_path / "one.mp4"),
                          "--save-latents", str(tmp_path / "one.safetensors")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, (one.stdout + one.stderr)[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", str(_free_port()), "-m", "harmony", *args,
                          "-o", str(tmp_path / "two.mp4"), "--save-latents", str(tmp_path / "two.safetensors")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    text = two.stdout + two.stderr
    assert two.returncode == 0, text[-3000:]
    assert "sequence parallel over 2 processes" in text
    assert text.count("wrote ") == 1 and (tmp_path / "two.mp4").stat().st_size > 0  # rank 0 alone writes
    a, b = load_file(str(tmp_path / "one.safetensors")), load_file(str(tmp_path / "two.safetensors"))
    for key in ("video", "audio"):
        assert a[key].shape == b[key].shape
        diff = (a[key] - b[key]).abs().max().item()
        print(f"sequence parallel {key} latent: max abs diff {diff:.3g}")
        assert diff < 1e-5, (key, diff)
