"""Cross-Task Synergy trainer: the three tasks, a smoke run, resume and export."""
import json
import os

import pytest
import torch

from harmony.conditioner import REF_LATENTS, Conditioner
from harmony.config import get_config
from harmony.model import HarmonyModel
from harmony.train import TrainConfig, synergy_loss, train


def _batch(cfg, b=2, frames=6, n_audio=12):
    g = torch.Generator().manual_seed(0)
    return dict(video=torch.randn(b, cfg.video.in_dim, frames, 4, 4, generator=g),
                audio=torch.randn(b, n_audio, cfg.audio.in_dim, generator=g),
                refs=[torch.randn(REF_LATENTS, cfg.audio.in_dim, generator=g), None][:b],
                prompt=["a red ball bounces twice", "a face says two syllables"][:b],
                caption=["two thuds", "a low voice"][:b], transcript=["", "ka lo"][:b])


class Spy(torch.nn.Module):
    """Wraps the model and records the timesteps each forward sees."""

    def __init__(self, model):
        super().__init__()
        self.model, self.seen = model, []

    def forward(self, zv, za, tv, ta, cond):
        self.seen.append((tv.detach().clone(), ta.detach().clone()))
        return self.model(zv, za, tv, ta, cond)


def test_synergy_batches_joint_a2v_v2a_in_one_forward():
    cfg = get_config("tiny")
    torch.manual_seed(0)
    spy, cond = Spy(HarmonyModel(cfg)), Conditioner(cfg)
    tc = TrainConfig(p_first_frame=0.0, p_drop_text=0.0, p_drop_ref=0.0)
    loss, parts = synergy_loss(spy, cond, _batch(cfg), tc, torch.Generator().manual_seed(1), "x0")
    assert set(parts) == {"joint", "a2v", "v2a"}
    assert len(spy.seen) == 1  # one batched forward for all three tasks
    tv, ta = spy.seen[0]
    b = 2
    assert tv.shape[0] == 3 * b and ta.shape[0] == 3 * b
    assert torch.all(tv[:b] > 0) and torch.all(ta[:b] > 0)          # joint: both noisy
    assert torch.all(tv[b:2 * b] > 0) and torch.all(ta[b:2 * b] == 0)  # A2V: clean audio
    assert torch.all(tv[2 * b:] == 0) and torch.all(ta[2 * b:] > 0)  # V2A: clean video
    expected = parts["joint"] + tc.lambda_v * parts["a2v"] + tc.lambda_a * parts["v2a"]
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    loss.backward()


def test_joint_only_switch_and_first_frame_clean():
    cfg = get_config("tiny")
    spy, cond = Spy(HarmonyModel(cfg)), Conditioner(cfg)
    tc = TrainConfig(tasks="joint", p_first_frame=1.0)
    _, parts = synergy_loss(spy, cond, _batch(cfg), tc, torch.Generator().manual_seed(1), "x0")
    assert set(parts) == {"joint"}
    tv, _ = spy.seen[0]
    assert tv.shape[0] == 2 and torch.all(tv[:, 0] == 0) and torch.all(tv[:, 1:] > 0)


def test_loss_decreases_when_fitting_one_batch():
    cfg = get_config("tiny")
    torch.manual_seed(0)
    model, cond = HarmonyModel(cfg), Conditioner(cfg)
    opt = torch.optim.AdamW(list(model.parameters()) + list(cond.parameters()), lr=2e-3)
    batch, tc = _batch(cfg), TrainConfig(p_drop_text=0.0, p_drop_ref=0.0)
    losses = []
    for step in range(25):
        loss, _ = synergy_loss(model, cond, batch, tc, torch.Generator().manual_seed(step % 3), "x0")
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5, losses


def test_train_smoke_resume_and_export(tmp_path):
    """A few real steps on world clips, then resume; the export loads in the pipeline."""
    from harmony.pipeline import HarmonyPipeline

    out = str(tmp_path / "run")
    tc = TrainConfig(steps=2, batch=2, pool=4, refresh=2, refresh_every=1, save_every=1,
                     log_every=1, out=out, seconds=1.0)
    train(tc)
    log = [json.loads(line) for line in open(os.path.join(out, "train_log.jsonl"))]
    assert [r["step"] for r in log] == [1, 2] and all(r["loss"] > 0 for r in log)
    train(TrainConfig(**{**tc.__dict__, "steps": 3}))  # resumes at step 2
    summary = json.load(open(os.path.join(out, "train_summary.json")))
    assert summary["steps"] == 3
    log = [json.loads(line) for line in open(os.path.join(out, "train_log.jsonl"))]
    assert log[-1]["step"] == 3
    pipe = HarmonyPipeline.from_pretrained(os.path.join(out, "harmony_tiny.safetensors"), log=lambda m: None)
    lat = pipe.sample(pipe.encode_text("a blue lamp flashes once"), seconds=1.0, steps=2)
    frames, wave, sr, fps = pipe.decode(lat)
    assert frames.shape == (16, 64, 64, 3) and wave.shape == (1, 16000)
