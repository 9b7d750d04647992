"""The ablation runner (harmony/ablate.py), the trainer options it relies on
(config overrides, a shared latent pool, EMA snapshots), and its report maths."""
import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open

from harmony import ablate
from harmony.config import apply_overrides, get_config
from harmony.train import LatentPool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------ config overrides

def test_overrides_change_model_keys_and_both_towers():
    cfg = apply_overrides(get_config("tiny"), "interaction=global, audio_rope=ovi,local_window=2.5,dim=64,"
                                              "ffn_dim=192,num_heads=2,num_layers=3")
    assert (cfg.interaction, cfg.audio_rope, cfg.local_window) == ("global", "ovi", 2.5)
    for tower in (cfg.video, cfg.audio):
        assert (tower.dim, tower.ffn_dim, tower.num_heads, tower.num_layers) == (64, 192, 2, 3)
    # untouched fields stay
    assert cfg.video.in_dim == 16 and cfg.audio.in_dim == 20 and cfg.prediction == "x0"
    assert apply_overrides(get_config("tiny"), "") == get_config("tiny")


@pytest.mark.parametrize("text, words", [
    ("colour=red", "key one of"),
    ("dim", "key=value"),
    ("num_layers=two", "needs a int"),
    ("interaction=sideways", "interaction must be one of"),
    ("dim=60,num_heads=7", "not divisible"),
])
def test_overrides_refuse_bad_input(text, words):
    with pytest.raises(ValueError, match=words):
        apply_overrides(get_config("tiny"), text)


# ------------------------------------------------------------------ shared latent pool

def _hand_pool():
    g = torch.Generator().manual_seed(0)
    refs = [torch.randn(5, 20, generator=g), None, torch.randn(5, 20, generator=g)]
    return {"video": torch.randn(3, 16, 4, 4, 4, generator=g), "audio": torch.randn(3, 8, 20, generator=g),
            "refs": refs, "prompt": ["a", "b", "c"], "caption": ["x", "", "z"], "transcript": ["", "ba", ""]}


def test_latent_pool_round_trip(tmp_path):
    data = _hand_pool()
    pool = LatentPool((None, None), 2.0, 0, seed=0, data=data)
    path = str(tmp_path / "pool.safetensors")
    pool.save(path, {"clips": 3})
    back = LatentPool.load(path, (None, None), seed=0)
    assert back.size == 3 and back.seconds == 2.0
    assert torch.equal(back.data["video"], data["video"]) and torch.equal(back.data["audio"], data["audio"])
    assert back.data["refs"][1] is None and torch.equal(back.data["refs"][2], data["refs"][2])
    for k in ("prompt", "caption", "transcript"):
        assert back.data[k] == data[k]
    batch = back.batch(5)  # draws stay inside the 3 saved clips
    assert batch["video"].shape[0] == 5 and set(batch["prompt"]) <= {"a", "b", "c"}


def test_latent_pool_load_refuses_other_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="--latents"):
        LatentPool.load(str(tmp_path / "missing.safetensors"), (None, None), 0)
    from safetensors.torch import save_file
    other = str(tmp_path / "weights.safetensors")
    save_file({"w": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match="not a saved latent pool"):
        LatentPool.load(other, (None, None), 0)


# ------------------------------------------------------------------ report maths

def test_mean_sd_closed_form():
    assert ablate.mean_sd([1.0, 3.0]) == (2.0, math.sqrt(2.0))
    assert ablate.mean_sd([5.0]) == (5.0, 0.0)
    m, sd = ablate.mean_sd([2.0, float("nan"), 4.0, 6.0])
    assert m == 4.0 and sd == 2.0
    assert all(math.isnan(x) for x in ablate.mean_sd([float("nan")]))


def _write_eval(path, values):
    """values: {(split, mode): (confidence, abs_offset_s, f1_av)}"""
    rows = [{"split": sp, "kind": "model", "name": f"T2AV {mode}", "n": 2, "confidence": c,
             "abs_offset_s": o, "f1_av": f} for (sp, mode), (c, o, f) in values.items()]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        json.dump({"rows": rows}, fh)


def test_collect_groups_rows_seeds_and_splits(tmp_path):
    s = ablate.Settings(out=str(tmp_path), variants=("A", "D"), seeds=(0, 1))
    for v, base in (("A", 0.1), ("D", 0.3)):
        for seed in (0, 1):
            _write_eval(str(tmp_path / "eval" / f"{v}_s{seed}.json"), {
                ("speech", "cfg"): (base + seed, 0.5, 0.2), ("ambient", "cfg"): (base, 0.1, 0.4),
                ("complex", "cfg"): (base, 0.3, 0.6), ("speech", "synccfg"): (base + 0.05 + seed, 0.0, 0.9),
                ("ambient", "synccfg"): (base, 0.0, 0.9), ("complex", "synccfg"): (base, 0.0, 0.9)})
    t = ablate.collect(s)
    assert t[("A", "speech", "confidence")] == [0.1, 1.1]
    assert t[("A", "complex", "f1_av")] == [0.6, 0.6]
    # "all" is the mean of the three splits, per training seed
    assert t[("A", "all", "confidence")] == pytest.approx([0.1, (1.1 + 0.1 + 0.1) / 3])
    assert t[("A", "all", "abs_offset_s")] == pytest.approx([0.3, 0.3])
    # row E is D's models under SyncCFG; every variant also gets its +SyncCFG row
    assert t[("E", "speech", "confidence")] == pytest.approx([0.35, 1.35])
    assert t[("E", "speech", "f1_av")] == [0.9, 0.9]
    assert ("A+SyncCFG", "speech", "confidence") in t and ("D", "speech", "confidence") in t
    text = ablate.format_report(s, t, None)
    assert "| E | + SyncCFG at inference (D's models) | 2 | 0.850 ± 0.707 |" in text  # (0.35, 1.35)


# ------------------------------------------------------------------ the task runner

@pytest.mark.slow
def test_run_tasks_skips_done_and_propagates_failure(tmp_path):
    done = tmp_path / "done.txt"
    done.write_text("x")
    py = sys.executable
    tasks = [
        ablate.Task("kept", [py, "-c", "raise SystemExit(9)"], str(done)),  # done already: never run
        ablate.Task("bad", [py, "-c", "raise SystemExit(3)"], str(tmp_path / "bad.txt")),
        ablate.Task("after bad", [py, "-c", f"open({str(tmp_path / 'ab.txt')!r}, 'w')"], str(tmp_path / "ab.txt"),
                    deps=("bad",)),
        ablate.Task("after kept", [py, "-c", f"open({str(tmp_path / 'ak.txt')!r}, 'w')"], str(tmp_path / "ak.txt"),
                    deps=("kept",)),
    ]
    failed = ablate.run_tasks(tasks, 2, str(tmp_path / "logs"), say=lambda m: None)
    assert sorted(failed) == ["after bad", "bad"]
    assert (tmp_path / "ak.txt").exists() and not (tmp_path / "ab.txt").exists()


def test_plan_gives_each_variant_its_training():
    s = ablate.Settings(variants=("A", "C", "D", "W4", "L1"), seeds=(0, 1), steps=10, drift_every=5)
    tasks = {t.name: t.cmd for t in ablate.plan(s)}
    arg = lambda cmd, flag: cmd[cmd.index(flag) + 1]  # noqa: E731
    assert "interaction=global,audio_rope=ovi" in arg(tasks["train A_s0"], "--overrides")
    assert arg(tasks["train A_s0"], "--tasks") == "joint"
    assert "interaction=gldi,audio_rope=ovi" in arg(tasks["train C_s1"], "--overrides")
    assert arg(tasks["train D_s0"], "--tasks") == "synergy"
    assert (arg(tasks["train D_s0"], "--lambda-v"), arg(tasks["train D_s0"], "--lambda-a")) == ("0.1", "0.3")
    assert "local_window=4" in arg(tasks["train W4_s0"], "--overrides")
    assert (arg(tasks["train L1_s1"], "--lambda-v"), arg(tasks["train L1_s1"], "--lambda-a")) == ("1", "1")
    # the same clips and steps for every row; snapshots only for the drift pair
    assert len({arg(c, "--latents") for n, c in tasks.items() if n.startswith("train")}) == 1
    assert len({arg(c, "--steps") for n, c in tasks.items() if n.startswith("train")}) == 1
    assert arg(tasks["train D_s0"], "--export-every") == "5" and arg(tasks["train A_s0"], "--export-every") == "0"
    assert "drift D_s1 5" in tasks and not any(n.startswith("drift A") for n in tasks)


# ------------------------------------------------------------------ end to end, tiny

@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                    reason="needs matplotlib (pip install matplotlib): the run ends with the drift plot")
def test_ablate_end_to_end_tiny(tmp_path):
    """Two variants, one seed, two steps: the runs, evaluations, table and plot all appear,
    and each exported model has its variant's architecture and losses."""
    out, docs = tmp_path / "abl", tmp_path / "docs"
    cmd = [sys.executable, "-m", "harmony", "ablate", "--out", str(out), "--docs", str(docs),
           "--variants", "A,D", "--seeds", "0", "--steps", "2", "--batch", "2", "--clips", "8",
           "--eval-n", "1", "--eval-steps", "1", "--drift-every", "1", "--drift-n", "1", "--parallel", "2"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "5/5 tasks done" in r.stdout
    for v, interaction, rope in (("A", "global", "ovi"), ("D", "gldi", "aligned")):
        with safe_open(str(out / "runs" / f"{v}_s0" / "harmony_tiny.safetensors"), "pt") as fh:
            cfg = json.loads(fh.metadata()["harmony_config"])
        assert (cfg["interaction"], cfg["audio_rope"], cfg["video"]["dim"]) == (interaction, rope, 64)
        logged = [json.loads(x) for x in open(out / "runs" / f"{v}_s0" / "train_log.jsonl")]
        assert ("a2v" in logged[0]) == (v == "D")  # A trains the joint loss only
    assert (out / "runs" / "D_s0" / "ema_step1.safetensors").exists()
    table = (docs / "table.md").read_text()
    for row in ("| A |", "| D |", "| E |", "| A+SyncCFG |", "real+codec"):
        assert row in table
    assert (docs / "drift.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_run_tasks_waits_for_a_task_another_command_runs(tmp_path):
    """A task whose marker names a live process is not started again; its dependents run once
    that process has written the task's output."""
    py = sys.executable
    done = tmp_path / "train.done"
    other = subprocess.Popen([py, "-c", f"import time; time.sleep(2); open({str(done)!r}, 'w')"])
    (tmp_path / "train.done.running").write_text(str(other.pid))
    runs = tmp_path / "runs.txt"
    tasks = [
        ablate.Task("train", [py, "-c", f"open({str(runs)!r}, 'a').write('again')"], str(done)),
        ablate.Task("eval", [py, "-c", f"open({str(tmp_path / 'eval.done')!r}, 'w')"], str(tmp_path / "eval.done"),
                    deps=("train",)),
    ]
    failed = ablate.run_tasks(tasks, 2, str(tmp_path / "logs"), say=lambda m: None)
    other.wait()
    assert failed == [] and (tmp_path / "eval.done").exists()
    assert not runs.exists()  # the other command's task was never run a second time


@pytest.mark.slow
def test_train_refuses_latents_of_other_codecs(tmp_path):
    """A 5b-layout model (48 video channels) cannot train on the tiny codecs' 16-channel clips."""
    from harmony.train import TrainConfig, train

    path = str(tmp_path / "pool.safetensors")
    LatentPool((None, None), 2.0, 0, seed=0, data=_hand_pool()).save(path)
    tc = TrainConfig(config="5b", overrides="dim=64,ffn_dim=128,num_heads=2,num_layers=1,text_dim=64",
                     latents=path, steps=1, batch=2, out=str(tmp_path / "run"))
    with pytest.raises(ValueError, match="16 video latent channels but --config 5b expects 48"):
        train(tc)
