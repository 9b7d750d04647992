"""Cross-Task Synergy trainer: the three tasks, a smoke run, resume and export."""
import json
import os

import pytest
import torch

from harmony.conditioner import REF_LATENTS, Conditioner
from harmony.config import get_config
from harmony.model import Conditioning, HarmonyModel
from harmony.sampling import shift_sigmas
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


# ------------------------------------------------------------------ the loss, by construction

class FakeConditioner:
    def __call__(self, prompts, captions, transcripts, refs, device=None):
        return Conditioning(torch.ones(len(prompts), 2, 4), torch.ones(len(prompts), 2, 4))


# error the fake network makes, per task it recognises and per modality; the clean
# first frame of a row gets error FIRST instead (the loss must not see it)
ERR = {"joint": (1.0, 2.0), "a2v": (3.0, 5.0), "v2a": (7.0, 11.0)}
FIRST = 100.0


class TaskRecognisingNet(torch.nn.Module):
    """Knows the clean batch; recognises each row's task from its timesteps alone (t_a = 0:
    A2V, t_v = 0: V2A, else joint) and answers target + ERR[task], so each loss term can be
    told from its value. Records every row's inputs."""

    def __init__(self, v0, a0, prediction):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))
        self.v0, self.a0, self.prediction, self.rows = v0, a0, prediction, []

    def forward(self, zv, za, tv, ta, cond):
        b = self.v0.shape[0]
        out_v, out_a = torch.empty_like(zv), torch.empty_like(za)
        for i in range(zv.shape[0]):
            v0, a0 = self.v0[i % b], self.a0[i % b]
            task = "a2v" if float(ta[i]) == 0 else ("v2a" if float(tv[i].max()) == 0 else "joint")
            sv, sa = tv[i] / 1000, ta[i] / 1000
            self.rows.append(dict(task=task, i=i % b, zv=zv[i].clone(), za=za[i].clone(), sv=sv, sa=sa))
            if self.prediction == "x0":
                tgt_v, tgt_a = v0, a0
            else:  # velocity noise - x0 = (z - x0) / sigma where noisy (clean parts get no loss)
                s = sv.clamp(min=1e-12)[None, :, None, None]
                tgt_v = (zv[i] - v0) / s
                tgt_a = (za[i] - a0) / sa.clamp(min=1e-12)
            ev, ea = ERR[task]
            out_v[i] = tgt_v + ev
            out_a[i] = tgt_a + ea
            clean_first = float(tv[i, 0]) == 0 and float(tv[i, 1:].min()) > 0
            if clean_first:
                out_v[i, :, 0] = tgt_v[:, 0] + FIRST
        return out_v + 0 * self.dummy, out_a + 0 * self.dummy


@pytest.mark.parametrize("prediction", ["x0", "velocity"])
@pytest.mark.parametrize("p_first_frame", [0.0, 1.0])
def test_cross_task_losses_by_construction(prediction, p_first_frame):
    cfg = get_config("tiny")
    batch = _batch(cfg, b=2, frames=3, n_audio=5)
    v0, a0 = batch["video"], batch["audio"]
    net = TaskRecognisingNet(v0, a0, prediction)
    tc = TrainConfig(p_first_frame=p_first_frame, p_drop_text=0.0, p_drop_ref=0.0)
    total, parts = synergy_loss(net, FakeConditioner(), batch, tc, torch.Generator().manual_seed(3),
                                prediction)
    # each term sees the error of its own task on its own modality only:
    #   joint = video + audio error, A2V = video error only, V2A = audio error only;
    #   the clean first frame's error (FIRST) never enters the joint video loss
    want = {"joint": 1.0 ** 2 + 2.0 ** 2, "a2v": 3.0 ** 2, "v2a": 11.0 ** 2}
    assert parts == pytest.approx(want, rel=1e-4), parts
    assert float(total.detach()) == pytest.approx(want["joint"] + 0.1 * want["a2v"] + 0.3 * want["v2a"], rel=1e-4)
    assert (tc.lambda_v, tc.lambda_a) == (0.1, 0.3)  # the paper's weights

    rows = net.rows
    assert [r["task"] for r in rows] == ["joint"] * 2 + ["a2v"] * 2 + ["v2a"] * 2
    for i in range(2):
        j, a2v, v2a = rows[i], rows[2 + i], rows[4 + i]
        sigma = float(j["sa"])
        assert 0 < sigma <= 1
        # joint: both modalities noisy at the same sigma (frame 0 clean when p_first_frame = 1)
        frames_noisy = slice(1, None) if p_first_frame else slice(None)
        assert torch.allclose(j["sv"][frames_noisy], torch.tensor(sigma))
        nv = (j["zv"][:, frames_noisy] - (1 - sigma) * v0[i][:, frames_noisy]) / sigma
        na = (j["za"] - (1 - sigma) * a0[i]) / sigma
        assert float(nv.std()) > 0.5 and float(na.std()) > 0.5  # really noisy, not the clean latent
        if p_first_frame:
            assert float(j["sv"][0]) == 0 and torch.equal(j["zv"][:, 0], v0[i][:, 0])
        # A2V: audio clean at t_a = 0, video noisy with the same sigma and noise
        assert float(a2v["sa"]) == 0 and torch.equal(a2v["za"], a0[i])
        assert torch.allclose(a2v["sv"], torch.tensor(sigma))
        torch.testing.assert_close(a2v["zv"][:, frames_noisy], j["zv"][:, frames_noisy])
        # V2A: video clean at t_v = 0, audio noisy with the same sigma and noise
        assert float(v2a["sv"].abs().max()) == 0 and torch.equal(v2a["zv"], v0[i])
        assert float(v2a["sa"]) == pytest.approx(sigma) and torch.allclose(v2a["za"], j["za"])


def test_training_sigmas_are_shifted():
    """sigma = 5u / (1 + 4u) with u uniform: P(sigma < 0.5) = P(u < 1/6) = 1/6, not 1/2."""
    cfg = get_config("tiny")
    batch = _batch(cfg, b=2, frames=3, n_audio=5)
    sig = []
    for seed in range(150):
        net = TaskRecognisingNet(batch["video"], batch["audio"], "x0")
        synergy_loss(net, FakeConditioner(), batch, TrainConfig(tasks="joint", p_first_frame=0.0),
                     torch.Generator().manual_seed(seed), "x0")
        sig += [float(r["sa"]) for r in net.rows]
    frac = sum(s < 0.5 for s in sig) / len(sig)
    assert abs(frac - 1 / 6) < 0.06, frac
    assert float(shift_sigmas(torch.tensor(1 / 6), 5.0)) == pytest.approx(0.5)


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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_trainable_pattern_trains_only_the_matching_parameters(tmp_path):
    """--trainable 'audio_model\\..*fusion': two steps move the audio tower's partner keys / values
    and leave every other weight (video tower, rest of the audio tower, text) exactly as it was."""
    from safetensors.torch import load_file

    first = str(tmp_path / "first")
    train(TrainConfig(steps=1, batch=2, pool=4, refresh=2, refresh_every=1, save_every=1, log_every=1,
                      out=first, seconds=1.0, ema=0.0))
    out = str(tmp_path / "run")
    train(TrainConfig(steps=2, batch=2, pool=4, refresh=2, refresh_every=1, save_every=1, log_every=1,
                      out=out, seconds=1.0, ema=0.0, lr=1e-2, warmup=1, weight_decay=0.0,
                      init_from=os.path.join(first, "harmony_tiny.safetensors"), trainable=r"audio_model\..*fusion"))
    before = load_file(os.path.join(first, "harmony_tiny.safetensors"))
    after = load_file(os.path.join(out, "harmony_tiny.safetensors"))
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(k.startswith("audio_model.") and "fusion" in k for k in moved), sorted(moved)[:5]
    with pytest.raises(ValueError, match="matches no model parameter"):
        train(TrainConfig(steps=1, batch=2, pool=4, out=str(tmp_path / "none"), seconds=1.0, trainable="no_such"))


def test_quiet_share_reaches_the_rendered_pool(capsys):
    """--p-quiet: the pool renders that share of its clips as world.quiet (still, no events)."""
    from harmony.codecs import load_codecs
    from harmony.train import main as train_main
    from harmony.train_data import LatentPool

    codecs = load_codecs()
    quiet_pool = LatentPool(codecs, 2.0, 6, seed=3, p_quiet=1.0)
    plain_pool = LatentPool(codecs, 2.0, 6, seed=3)
    assert all("zero" in p for p in quiet_pool.data["prompt"])
    assert not any("zero" in p for p in plain_pool.data["prompt"])
    assert all(t == "" for t in quiet_pool.data["transcript"])
    assert all(quiet_pool.data["quiet"]) and not any(plain_pool.data["quiet"])
    assert quiet_pool.batch(3)["quiet"].tolist() == [True] * 3
    # a still video: every latent frame after the first (the codec's own first-frame rule) is one value
    v = quiet_pool.data["video"]
    assert torch.allclose(v[:, :, 1:], v[:, :, 1:2].expand_as(v[:, :, 1:]), atol=1e-5)
    with pytest.raises(SystemExit):
        train_main(["--p-quiet", "0.2", "--latents", "pool.safetensors"])
    assert "--p-quiet changes the rendered world clips" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_main(["--p-quiet", "1.5"])
    assert "--p-quiet=1.5: must be a finite number between 0 and 1" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["running", "connected"])
def test_speech_variant_share_reaches_the_rendered_pool(capsys, flag):
    """--p-running / --p-connected: that share of the pool's clips is world.running speech (more
    syllables said) / world.connected speech (other syllables, in the second synthesiser's voice)."""
    from harmony.codecs import load_codecs
    from harmony.train import main as train_main
    from harmony.train_data import LatentPool
    from harmony.world import scene as world_scene

    codecs = load_codecs()
    varied = LatentPool(codecs, 2.0, 4, seed=3, split="speech", **{f"p_{flag}": 1.0})
    plain = LatentPool(codecs, 2.0, 4, seed=3, split="speech")
    said, plain_said = varied.data["transcript"], plain.data["transcript"]
    if flag == "running":
        assert all(len(a.split()) > len(b.split()) for a, b in zip(said, plain_said))
    else:
        assert all(a != b for a, b in zip(said, plain_said))
        assert not torch.allclose(varied.data["audio"], plain.data["audio"], atol=1e-2)
    drawn = getattr(world_scene, f"is_{flag}_seed")
    share = sum(drawn(s, 0.3) for s in range(2000)) / 2000
    assert 0.27 < share < 0.33 and not any(drawn(s, 0.0) for s in range(100))
    with pytest.raises(SystemExit):
        train_main([f"--p-{flag}", "0.2", "--latents", "pool.safetensors"])
    assert f"--p-{flag} changes the rendered world clips" in capsys.readouterr().err


def test_colour_pool_keeps_each_latent_positions_colour_share(capsys):
    """--colour-weight: the pool keeps, beside each clip's latents, its patches' share of world-colour
    pixels (train_data.colour_share of the rendered frames), through batches and refreshes."""
    from harmony.codecs import load_codecs
    from harmony.train import main as train_main
    from harmony.train_data import LatentPool, colour_share

    codecs = load_codecs()
    pool = LatentPool(codecs, 1.0, 3, seed=5, colour=True)
    assert "colour" not in LatentPool(codecs, 1.0, 1, seed=5).data
    v, c = pool.data["video"], pool.data["colour"]
    assert c.shape == (v.shape[0], v.shape[2], v.shape[3], v.shape[4])
    from harmony import world
    clip = world.sample_batch(list(range(pool.next_seed - 3, pool.next_seed - 2)), 1.0, None, 0.0)
    assert torch.equal(c[:1], colour_share(clip.frames, 16))  # the same seed's frames, read again
    assert 0 < float(c.mean()) < 0.5  # the world's objects cover some of each frame, not most
    pool.refresh(2)
    assert pool.data["colour"].shape[0] == 3 and torch.equal(pool.data["colour"][0], c[2])
    assert pool.batch(4)["colour"].shape == (4,) + tuple(c.shape[1:])
    with pytest.raises(SystemExit):
        train_main(["--colour-weight", "2", "--latents", "pool.safetensors"])
    assert "--colour-weight reads the rendered world frames' colours" in capsys.readouterr().err


def test_distillation_tethers_the_joint_rows_to_the_teacher():
    """--distill-from: the teacher sees exactly the joint rows (same noisy inputs, its own text
    encoders) and the term is the squared distance of the student's joint prediction to its."""
    cfg = get_config("tiny")
    batch = _batch(cfg)
    student = TaskRecognisingNet(batch["video"], batch["audio"], "x0")

    class Teacher(torch.nn.Module):  # answers the student's answer shifted by known amounts
        def __init__(self):
            super().__init__()
            self.net, self.rows = TaskRecognisingNet(batch["video"], batch["audio"], "x0"), 0

        def forward(self, zv, za, tv, ta, cond):
            self.rows += zv.shape[0]
            assert torch.all(tv > 0) and torch.all(ta > 0)  # joint rows only
            ov, oa = self.net(zv, za, tv, ta, cond)
            return ov - 0.5, oa + 2.0

    teacher = Teacher()
    tc = TrainConfig(p_first_frame=0.0, lambda_distill=0.25)
    loss, parts = synergy_loss(student, FakeConditioner(), batch, tc, torch.Generator().manual_seed(1), "x0",
                               teacher=(teacher, FakeConditioner()))
    assert teacher.rows == batch["video"].shape[0]
    assert parts["distill"] == pytest.approx(0.5 ** 2 + 2.0 ** 2)
    expected = parts["joint"] + tc.lambda_v * parts["a2v"] + tc.lambda_a * parts["v2a"] + 0.25 * parts["distill"]
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    # a quiet clip (world.quiet) is never the teacher's to score: it never saw one
    teacher.net.forward = lambda zv, za, tv, ta, cond: (  # noqa: E731  off by 10 on the first row only
        zv * 0 + torch.tensor([10.0, 0.0]).view(2, 1, 1, 1, 1), za * 0 + torch.tensor([10.0, 0.0]).view(2, 1, 1))
    own = TaskRecognisingNet(batch["video"], batch["audio"], "x0")
    own.forward = lambda zv, za, tv, ta, cond: (zv * 0, za * 0)  # noqa: E731
    for quiet, want in (([True, False], 0.5 ** 2 + 2.0 ** 2), ([False, False], (9.5 ** 2 + 0.5 ** 2 + 12.0 ** 2
                                                                                 + 2.0 ** 2) / 2),
                        ([True, True], 0.0)):
        _, parts = synergy_loss(own, FakeConditioner(), {**batch, "quiet": torch.tensor(quiet)}, tc,
                                torch.Generator().manual_seed(1), "x0", teacher=(teacher, FakeConditioner()))
        assert parts["distill"] == pytest.approx(want), quiet
    no_joint = TrainConfig(p_first_frame=0.0, lambda_joint=0.0)  # no joint rows: nothing to tether
    _, parts = synergy_loss(student, FakeConditioner(), batch, no_joint, torch.Generator().manual_seed(1), "x0",
                            teacher=(teacher, FakeConditioner()))
    assert "distill" not in parts
