"""The training loop's statistics against hand-computed values (issue 22): the text and
reference-voice dropout shares over a few thousand drawn clips, the sigma distribution of
each task, the reference voice each row is conditioned on, and the EMA after one and two
optimizer steps of ``train()``."""
import os

import pytest
import torch
from safetensors.torch import load_file

from harmony.conditioner import Conditioner
from harmony.config import get_config
from harmony.model import Conditioning, HarmonyModel
from harmony.train import TrainConfig, export_default, synergy_loss, train

N = 3000  # clips in one drawn batch: a share p is measured to +-sqrt(p (1 - p) / N) (0.0055 at p = 0.1)


def _clips(n=N, frames=3, n_audio=4, seed=0):
    """A hand-made batch of n tiny clips, each with its own prompt, caption, transcript and voice."""
    g = torch.Generator().manual_seed(seed)
    return dict(video=torch.randn(n, 2, frames, 1, 1, generator=g),
                audio=torch.randn(n, n_audio, 3, generator=g),
                refs=[torch.full((5, 3), float(i + 1)) for i in range(n)],
                prompt=[f"prompt {i}" for i in range(n)], caption=[f"caption {i}" for i in range(n)],
                transcript=[f"words {i}" for i in range(n)])


class RecordingConditioner:
    """Records what the loss asks it to encode; the reference voice rides in ref_audio (zeros
    for none), so the model can see which voice each row got."""

    def __init__(self):
        self.calls = []

    def __call__(self, prompts, captions, transcripts, refs, device=None):
        self.calls.append(dict(prompts=list(prompts), captions=list(captions),
                               transcripts=list(transcripts), refs=list(refs)))
        ref = torch.stack([r if r is not None else torch.zeros(5, 3) for r in refs])
        return Conditioning(torch.ones(len(prompts), 1, 1), torch.ones(len(prompts), 1, 1), ref)


class ZeroNet(torch.nn.Module):
    """Answers zeros; records each forward's timesteps and conditioning."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.seen = []

    def forward(self, zv, za, tv, ta, cond):
        self.seen.append((tv.clone(), ta.clone(), cond))
        return torch.zeros_like(zv) + self.w, torch.zeros_like(za) + self.w


def _draw(tc, seed=1, n=N):
    batch, net, text = _clips(n), ZeroNet(), RecordingConditioner()
    synergy_loss(net, text, batch, tc, torch.Generator().manual_seed(seed), "x0")
    assert len(text.calls) == 1 and len(net.seen) == 1
    return batch, text.calls[0], net.seen[0]


# ------------------------------------------------------------------ dropout shares

def test_text_and_reference_dropout_shares():
    """p_drop_text 0.1: about 10 % of the clips lose their text (prompt, caption and transcript
    together), not 90 %; p_drop_ref 0.3: about 30 % lose their voice; the two draws are
    independent (about 3 % lose both)."""
    tc = TrainConfig(p_drop_text=0.1, p_drop_ref=0.3)
    batch, call, _ = _draw(tc)
    no_text = [p == "" for p in call["prompts"]]
    assert no_text == [c == "" for c in call["captions"]] == [t == "" for t in call["transcripts"]]
    kept = [i for i in range(N) if not no_text[i]]
    assert all(call["prompts"][i] == batch["prompt"][i] and call["captions"][i] == batch["caption"][i]
               and call["transcripts"][i] == batch["transcript"][i] for i in kept)
    no_ref = [r is None for r in call["refs"]]
    assert all(call["refs"][i] is batch["refs"][i] for i in range(N) if not no_ref[i])
    share_text, share_ref = sum(no_text) / N, sum(no_ref) / N
    share_both = sum(a and b for a, b in zip(no_text, no_ref)) / N
    assert abs(share_text - 0.1) < 0.025, share_text
    assert abs(share_ref - 0.3) < 0.035, share_ref
    assert abs(share_both - 0.03) < 0.015, share_both


@pytest.mark.parametrize("p_text, p_ref", [(0.0, 1.0), (1.0, 0.0)])
def test_dropout_rates_zero_and_one(p_text, p_ref):
    _, call, _ = _draw(TrainConfig(p_drop_text=p_text, p_drop_ref=p_ref), n=200)
    assert all((p == "") == (p_text == 1.0) for p in call["prompts"])
    assert all((r is None) == (p_ref == 1.0) for r in call["refs"])


def test_every_task_row_is_conditioned_on_its_own_clips_voice():
    """The conditioning is repeated per task: row k * b + i carries clip i's reference voice
    (zeros where it was dropped) in every task."""
    tc = TrainConfig(p_drop_ref=0.5, lambda_i=0.5)
    b = 40
    batch, call, (_, _, cond) = _draw(tc, n=b)
    assert cond.ref_audio.shape[0] == 4 * b  # joint, A2V, V2A, I2AV
    for k in range(4):
        for i in range(b):
            want = batch["refs"][i] if call["refs"][i] is not None else torch.zeros(5, 3)
            assert torch.equal(cond.ref_audio[k * b + i], want), (k, i)


# ------------------------------------------------------------------ sigma per task

def test_sigma_distribution_of_each_task():
    """sigma = 5u / (1 + 4u), u uniform, one draw per clip shared by its tasks:
    P(sigma <= s) = s / (5 - 4 s). Joint: both modalities at sigma (frame 0 clean in about
    p_first_frame = 20 % of the clips); A2V: video at sigma, audio 0; V2A: video 0, audio at
    sigma; I2AV: frame 0 at 0, the rest and the audio at sigma."""
    tc = TrainConfig(lambda_i=0.5)
    _, _, (tv, ta, _) = _draw(tc)
    b = N
    sigma = ta[:b] / 1000
    for s in (0.3, 0.5, 0.8, 0.9, 0.97):
        share = float((sigma <= s).float().mean())
        assert abs(share - s / (5 - 4 * s)) < 0.03, (s, share)
    assert float(sigma.min()) >= 0 and float(sigma.max()) <= 1
    joint_v, a2v_v, v2a_v, i2av_v = tv[:b], tv[b:2 * b], tv[2 * b:3 * b], tv[3 * b:]
    first_clean = joint_v[:, 0] == 0
    assert abs(float(first_clean.float().mean()) - tc.p_first_frame) < 0.025
    torch.testing.assert_close(joint_v[:, 1:], ta[:b, None].expand(b, joint_v.shape[1] - 1))
    torch.testing.assert_close(joint_v[~first_clean, 0], ta[:b][~first_clean])
    # A2V: video at the clip's sigma in every frame, audio clean
    torch.testing.assert_close(a2v_v, ta[:b, None].expand_as(a2v_v))
    assert torch.all(ta[b:2 * b] == 0)
    # V2A: video clean, audio at the clip's sigma
    assert torch.all(v2a_v == 0)
    torch.testing.assert_close(ta[2 * b:3 * b], ta[:b])
    # I2AV: frame 0 clean, the rest and the audio at the clip's sigma
    assert torch.all(i2av_v[:, 0] == 0)
    torch.testing.assert_close(i2av_v[:, 1:], ta[:b, None].expand(b, i2av_v.shape[1] - 1))
    torch.testing.assert_close(ta[3 * b:], ta[:b])


# ------------------------------------------------------------------ EMA of train()

def _floats(state, prefix):
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and v.is_floating_point()}


@pytest.mark.slow
def test_ema_after_one_and_two_steps_by_hand(tmp_path):
    """train() from known weights W0 (an --init-from file), EMA decay d_k = min(ema, (1 + k) / (10 + k)):

        step 1: d = min(0.15, 1/10) = 0.1    EMA1 = 0.1 W0 + 0.9 W1
        step 2: d = min(0.15, 2/11) = 0.15   EMA2 = 0.15 EMA1 + 0.85 W2

    with W1, W2 the live weights after each step (the checkpoint holds both). The exported
    model file is EMA2: it lags the live weights (a reversed update would export W2)."""
    cfg = get_config("tiny")
    torch.manual_seed(11)
    model, text = HarmonyModel(cfg), Conditioner(cfg)
    w0 = {f"model.{k}": v.clone() for k, v in model.state_dict().items()}
    w0.update({f"text.{k}": v.clone() for k, v in text.state_dict().items()})
    init = str(tmp_path / "init.safetensors")
    export_default(w0, cfg, init, step=0, dtype="fp32")
    out = str(tmp_path / "run")
    tc = TrainConfig(steps=1, batch=2, pool=2, refresh=0, seconds=1.0, lr=1e-2, warmup=1, ema=0.15,
                     save_every=1, log_every=1, out=out, init_from=init)
    train(tc)
    s1 = load_file(os.path.join(out, "state.safetensors"))
    train(TrainConfig(**{**tc.__dict__, "steps": 2}))  # resumes at step 1
    s2 = load_file(os.path.join(out, "state.safetensors"))
    live1, ema1 = _floats(s1, "model."), _floats(s1, "ema.model.")
    live2, ema2 = _floats(s2, "model."), _floats(s2, "ema.model.")
    start = {k[len("model."):]: v for k, v in w0.items() if k.startswith("model.")}
    assert set(live1) == set(ema1) == set(start)
    moved = [k for k in start if (live1[k] - start[k]).abs().max() > 1e-4]
    assert len(moved) > len(start) // 2  # the step really moved the weights
    for k in start:
        torch.testing.assert_close(ema1[k], 0.1 * start[k] + 0.9 * live1[k], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(ema2[k], 0.15 * ema1[k] + 0.85 * live2[k], atol=1e-6, rtol=1e-5)
    text_start = {k[len("text."):]: v for k, v in w0.items() if k.startswith("text.")}
    text_live1, text_ema1 = _floats(s1, "text."), _floats(s1, "ema.text.")
    for k in text_start:  # the text encoders follow the same EMA
        if text_start[k].is_floating_point():
            torch.testing.assert_close(text_ema1[k], 0.1 * text_start[k] + 0.9 * text_live1[k],
                                       atol=1e-6, rtol=1e-5)
    exported = load_file(os.path.join(out, "harmony_tiny.safetensors"))
    for k in start:
        torch.testing.assert_close(exported[k], ema2[k], atol=0, rtol=0)
    assert max(float((exported[k] - live2[k]).abs().max()) for k in moved) > 1e-4
