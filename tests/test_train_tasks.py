"""Trainer task mix and fine-tuning start (issue 10): the I2AV task and --init-from."""
import math

import pytest
import torch

from harmony.conditioner import Conditioner
from harmony.config import get_config
from harmony.model import HarmonyModel
from harmony.train import TrainConfig, export_default, init_from_file, synergy_loss
from test_train import _batch  # the same hand-made batch as the Cross-Task Synergy tests


class Oracle(torch.nn.Module):
    """Predicts the clean target exactly, except latent frame 0 which is off by 10;
    records the timesteps it is given."""

    def __init__(self, batch):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.v0, self.a0, self.seen = batch["video"], batch["audio"], []

    def forward(self, zv, za, tv, ta, cond):
        self.seen.append((tv.clone(), ta.clone()))
        n = zv.shape[0] // self.v0.shape[0]
        v = self.v0.repeat(n, 1, 1, 1, 1).clone()
        v[:, :, 0] += 10.0
        return v + 0 * self.w, self.a0.repeat(n, 1, 1) + 0 * self.w


def test_i2av_task_holds_frame0_clean_and_scores_frames_1_on():
    cfg = get_config("tiny")
    batch = _batch(cfg)
    model = Oracle(batch)
    tc = TrainConfig(lambda_i=0.5, lambda_v=0.25, lambda_a=2.0, p_first_frame=0.0, p_drop_text=0.0, p_drop_ref=0.0)
    loss, parts = synergy_loss(model, Conditioner(cfg), batch, tc, torch.Generator().manual_seed(1), "x0")
    assert set(parts) == {"joint", "a2v", "v2a", "i2av"}
    assert len(model.seen) == 1
    tv, ta = model.seen[0]
    b, f = 2, batch["video"].shape[2]
    i2av_tv, i2av_ta = tv[3 * b:], ta[3 * b:]
    assert torch.all(i2av_tv[:, 0] == 0) and torch.all(i2av_tv[:, 1:] > 0) and torch.all(i2av_ta > 0)
    # frame 0 is off by 10 everywhere: the joint and A2V losses see it (mean over all frames),
    # the I2AV loss does not (frame 0 is the given frame) and V2A scores audio only
    assert parts["i2av"] == pytest.approx(0.0, abs=1e-10)
    assert parts["v2a"] == pytest.approx(0.0, abs=1e-10)
    assert parts["joint"] == pytest.approx(100.0 / f, rel=1e-5)
    assert parts["a2v"] == pytest.approx(100.0 / f, rel=1e-5)
    expected = parts["joint"] + 0.25 * parts["a2v"] + 2.0 * parts["v2a"] + 0.5 * parts["i2av"]
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-6)


def test_no_i2av_task_by_weight_zero_or_joint_only():
    cfg = get_config("tiny")
    batch = _batch(cfg)
    for tc in (TrainConfig(lambda_i=0.0), TrainConfig(tasks="joint", lambda_i=1.0)):
        model = Oracle(batch)
        _, parts = synergy_loss(model, Conditioner(cfg), batch, tc, torch.Generator().manual_seed(1), "x0")
        assert "i2av" not in parts


def _export(tmp_path, cfg, seed):
    torch.manual_seed(seed)
    model, cond = HarmonyModel(cfg), Conditioner(cfg)
    ema = {f"model.{k}": v for k, v in model.state_dict().items()}
    ema.update({f"text.{k}": v for k, v in cond.state_dict().items()})
    path = str(tmp_path / f"m{seed}.safetensors")
    export_default(ema, cfg, path, step=7, dtype="fp16")
    return path, model, cond


@pytest.mark.slow
def test_init_from_loads_weights_and_checks_architecture_and_codecs(tmp_path):
    cfg = get_config("tiny").replace(meta={"codecs_sha256": "a" * 64, "guidance": {"sv": 2.0, "sa": 4.0}})
    path, src_model, src_cond = _export(tmp_path, cfg, seed=1)
    torch.manual_seed(2)
    model, cond = HarmonyModel(cfg), Conditioner(cfg)
    run_cfg = get_config("tiny").replace(meta={"codecs_sha256": "a" * 64})
    out = init_from_file(path, model, cond, run_cfg)
    for k, v in src_model.state_dict().items():  # fp16 file: equal to fp16 precision
        assert torch.allclose(model.state_dict()[k], v.half().float()), k
    for k, v in src_cond.state_dict().items():
        assert torch.allclose(cond.state_dict()[k].float(), v.float().half().float()), k
    assert out.meta["init_step"] == 7 and out.meta["guidance"] == {"sv": 2.0, "sa": 4.0}
    other_codecs = get_config("tiny").replace(meta={"codecs_sha256": "b" * 64})
    with pytest.raises(ValueError, match="codec"):
        init_from_file(path, HarmonyModel(cfg), Conditioner(cfg), other_codecs)
    # a move to a new codec says so: the weights load, the run keeps its own codecs' sha256
    moved = HarmonyModel(cfg)
    out = init_from_file(path, moved, Conditioner(cfg), other_codecs, other_codecs=True)
    assert out.meta["codecs_sha256"] == "b" * 64
    assert all(torch.equal(moved.state_dict()[k], model.state_dict()[k]) for k in model.state_dict())
    with pytest.raises(ValueError, match="architecture"):
        init_from_file(path, HarmonyModel(cfg), Conditioner(cfg), get_config("tiny-global"))
    with pytest.raises(FileNotFoundError, match="init-from"):
        init_from_file(str(tmp_path / "missing.safetensors"), model, cond, run_cfg)


def test_driven_tasks_alone_and_their_own_sigma_schedule():
    """--lambda-joint 0 drops the joint rows; --driven-shift gives the generated side of A2V / V2A
    its own sigma (shift 1000: sigma near 1) while the joint task keeps --shift's."""
    cfg = get_config("tiny")
    batch = _batch(cfg)
    model = Oracle(batch)
    tc = TrainConfig(lambda_joint=0.0, lambda_v=0.0, lambda_a=1.0, driven_shift=1000.0, p_first_frame=0.0)
    loss, parts = synergy_loss(model, Conditioner(cfg), batch, tc, torch.Generator().manual_seed(1), "x0")
    assert set(parts) == {"v2a"} and float(loss.detach()) == pytest.approx(parts["v2a"])
    tv, ta = model.seen[0]
    assert tv.shape[0] == 2 and torch.all(tv == 0) and torch.all(ta > 900)
    model = Oracle(batch)
    tc = TrainConfig(lambda_v=1.0, lambda_a=1.0, driven_shift=1000.0, shift=1.0, p_first_frame=0.0)
    synergy_loss(model, Conditioner(cfg), batch, tc, torch.Generator().manual_seed(1), "x0")
    tv, ta = model.seen[0]
    u_sigma = ta[:2] / 1000  # joint rows: shift 1 = the uniform draw itself
    assert torch.allclose(tv[:2, 0], ta[:2]) and torch.all(ta[2:4] == 0)  # A2V rows: audio clean
    assert torch.all(tv[2:4] > 900) and torch.all(ta[4:] > 900)  # driven rows near sigma 1
    assert torch.all(u_sigma < tv[2:4, 0] / 1000 + 1e-6)  # same u, larger shift: never lower


def test_a2v_rows_may_hold_a_first_frame_too():
    """--p-first-frame-a2v 1: every A2V row also holds latent frame 0 clean (A2V from an image, as I2AV's
    resync pass samples it), and the A2V loss leaves that frame out (the oracle is off by 10 only there);
    at 0 (the default) no A2V row does and frame 0 is scored."""
    cfg = get_config("tiny")
    batch = _batch(cfg)
    plain = dict(lambda_joint=0.0, lambda_v=1.0, lambda_a=0.0, p_first_frame=0.0, p_drop_text=0.0, p_drop_ref=0.0)
    model = Oracle(batch)
    loss, parts = synergy_loss(model, Conditioner(cfg), batch, TrainConfig(p_first_frame_a2v=1.0, **plain),
                               torch.Generator().manual_seed(1), "x0")
    tv, ta = model.seen[0]
    assert set(parts) == {"a2v"} and torch.all(ta == 0) and torch.all(tv[:, 0] == 0) and torch.all(tv[:, 1:] > 0)
    assert parts["a2v"] == pytest.approx(0.0, abs=1e-10)
    model = Oracle(batch)
    loss, parts = synergy_loss(model, Conditioner(cfg), batch, TrainConfig(**plain),
                               torch.Generator().manual_seed(1), "x0")
    tv, _ = model.seen[0]
    assert torch.all(tv > 0) and parts["a2v"] == pytest.approx(100.0 / batch["video"].shape[2], rel=1e-5)


def test_each_driven_task_may_have_its_own_sigma_schedule():
    """--shift-v2a 1000 puts the V2A rows near sigma 1 while A2V keeps --driven-shift (1 here:
    the uniform draw itself, so the same u gives a lower sigma than the shifted one)."""
    cfg = get_config("tiny")
    batch = _batch(cfg)
    model = Oracle(batch)
    tc = TrainConfig(lambda_joint=0.0, lambda_v=1.0, lambda_a=1.0, driven_shift=1.0, shift_v2a=1000.0,
                     p_first_frame=0.0)
    synergy_loss(model, Conditioner(cfg), batch, tc, torch.Generator().manual_seed(3), "x0")
    tv, ta = model.seen[0]
    a2v_sigma, v2a_sigma = tv[:2, 0] / 1000, ta[2:4] / 1000  # rows: A2V then V2A, same u each
    assert torch.all(ta[:2] == 0) and torch.all(tv[2:4] == 0)
    assert torch.all(v2a_sigma > 0.9) and torch.all(a2v_sigma < v2a_sigma)
    u = a2v_sigma.double()  # shift 1000 of the same u, in closed form
    assert torch.allclose(v2a_sigma.double(), 1000 * u / (1 + 999 * u), atol=1e-3)


def test_fusion_parameters_are_the_cross_tower_ones():
    from harmony.train import is_fusion_parameter

    names = [n for n, _ in HarmonyModel(get_config("tiny")).named_parameters()]
    fusion = [n for n in names if is_fusion_parameter(n)]
    assert fusion and all("cross_attn" in n or "style" in n for n in fusion)
    assert {"k_fusion", "v_fusion", "norm_k_fusion", "pre_attn_norm_fusion", "style_attn"} <= {
        part for n in fusion for part in n.split(".")}
    assert not any(is_fusion_parameter(n) for n in names if ".self_attn." in n or ".ffn." in n)


def test_foreign_stills_replace_the_i2av_clip_and_drop_its_audio_loss():
    """--p-foreign-still 1: every I2AV row is a static clip of the still (its target), and its
    audio is not scored (the oracle's audio is off by 1 everywhere, yet the I2AV loss has none of it)."""
    cfg = get_config("tiny")
    batch = _batch(cfg)

    class OffAudio(Oracle):
        def forward(self, zv, za, tv, ta, cond):
            v, a = super().forward(zv, za, tv, ta, cond)
            return v, a + 1.0

    model = OffAudio(batch)
    b, c, f, h, w = batch["video"].shape
    batch["stills"] = torch.full((b, c, 1, h, w), 0.5)
    tc = TrainConfig(lambda_i=1.0, p_foreign_still=1.0, p_first_frame=0.0)
    _, parts = synergy_loss(model, Conditioner(cfg), batch, tc, torch.Generator().manual_seed(1), "x0")
    want = float(((batch["video"][:, :, 1:] - 0.5) ** 2).mean())
    assert parts["i2av"] == pytest.approx(want, rel=1e-5)
    assert parts["v2a"] == pytest.approx(1.0, rel=1e-6)  # other tasks keep the clip and its audio
    tv, _ = model.seen[0]
    assert torch.all(tv[3 * b:, 0] == 0)


def test_foreign_stills_are_deterministic_images_of_three_families():
    import numpy as np

    from harmony.world.stills import FAMILIES, foreign_stills

    a, fam = foreign_stills(30, 1)
    b, _ = foreign_stills(30, 1)
    assert a.shape == (30, 64, 64, 3) and a.dtype == np.float32 and np.array_equal(a, b)
    assert set(fam) == set(FAMILIES) and 0 <= a.min() and a.max() <= 1
    assert not np.array_equal(a, foreign_stills(30, 2)[0])
    assert all(a[i].std() > 0.02 for i in range(30))  # none is blank


class OffAtOnePosition(torch.nn.Module):
    """Predicts the clean target exactly, except latent frame 1, position (0, 0), off by 2 in every channel."""

    def __init__(self, batch):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.v0, self.a0 = batch["video"], batch["audio"]

    def forward(self, zv, za, tv, ta, cond):
        n = zv.shape[0] // self.v0.shape[0]
        v = self.v0.repeat(n, 1, 1, 1, 1).clone()
        v[:, :, 1, 0, 0] += 2.0
        return v + 0 * self.w, self.a0.repeat(n, 1, 1) + 0 * self.w


def test_colour_weight_weighs_the_coloured_patches_in_the_video_loss():
    # --colour-weight W: a latent position weighs 1 + W x its patch's share of world-colour pixels,
    # as a weighted mean; by hand: error 4 (per channel) at one of F*h*w positions
    cfg = get_config("tiny")
    batch = _batch(cfg)
    b, _, f, h, w = batch["video"].shape
    colour = torch.zeros(b, f, h, w)
    colour[:, 1, 0, 0] = 1.0  # the off position is all object
    model, cond = OffAtOnePosition(batch), Conditioner(cfg)
    plain = dict(lambda_v=0, lambda_a=0, lambda_i=0, p_first_frame=0.0, p_drop_text=0.0, p_drop_ref=0.0)
    for weight, want in ((0.0, 4 / (f * h * w)), (3.0, 4 * 4 / (f * h * w + 3))):
        tc = TrainConfig(colour_weight=weight, **plain)
        _, parts = synergy_loss(model, cond, {**batch, "colour": colour}, tc, torch.Generator().manual_seed(1), "x0")
        assert parts["joint"] == pytest.approx(want, rel=1e-5)
    # no colour in the batch (a saved pool): plain MSE
    _, parts = synergy_loss(model, cond, batch, TrainConfig(colour_weight=3.0, **plain), torch.Generator().manual_seed(1), "x0")
    assert parts["joint"] == pytest.approx(4 / (f * h * w), rel=1e-5)


def test_colour_share_is_each_latent_patchs_share_of_world_colour_pixels():
    import numpy as np

    from harmony.train_data import colour_share
    from harmony.world.vocab import COLOURS

    frames = np.zeros((1, 2, 64, 64, 3), np.float32)                 # black: no colour
    frames[0, 0, 16:32, 32:48] = COLOURS["red"]                       # one whole patch
    frames[0, 1, 0:8, 0:16] = COLOURS["blue"]                         # half a patch
    frames[0, 1, 48:64, 48:64] = 0.5                                  # grey: not a world colour
    share = colour_share(frames, 16)
    want = torch.zeros(1, 2, 4, 4)
    want[0, 0, 1, 2], want[0, 1, 0, 0] = 1.0, 0.5
    assert torch.equal(share, want)


def test_temporal_term_weighs_the_estimates_frame_to_frame_change():
    # --lambda-temporal L: + L x MSE of the x0 error's change between consecutive noisy latent frames.
    # By hand (x0 network): error 2 per channel at frame 1, position (0, 0): it changes by +2 into frame 1
    # and by -2 out of it, at one of h*w positions of the f - 1 frame pairs
    cfg = get_config("tiny")
    batch = _batch(cfg)
    b, _, f, h, w = batch["video"].shape
    assert f >= 3
    model, cond = OffAtOnePosition(batch), Conditioner(cfg)
    plain = dict(lambda_v=0, lambda_a=0, lambda_i=0, p_first_frame=0.0, p_drop_text=0.0, p_drop_ref=0.0)
    for lam in (0.0, 0.5):
        tc = TrainConfig(lambda_temporal=lam, **plain)
        _, parts = synergy_loss(model, cond, batch, tc, torch.Generator().manual_seed(1), "x0")
        assert parts["joint"] == pytest.approx(4 / (f * h * w) + lam * 8 / ((f - 1) * h * w), rel=1e-5)

    class Steady(torch.nn.Module):  # the same error in every frame: nothing changes between frames
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, zv, za, tv, ta, cond):
            n = zv.shape[0] // batch["video"].shape[0]
            return batch["video"].repeat(n, 1, 1, 1, 1) + 3.0 + 0 * self.w, batch["audio"].repeat(n, 1, 1) + 0 * self.w

    _, parts = synergy_loss(Steady(), cond, batch, TrainConfig(lambda_temporal=5.0, **plain),
                            torch.Generator().manual_seed(1), "x0")
    assert parts["joint"] == pytest.approx(9.0, rel=1e-5)


def test_temporal_term_reads_a_velocity_network_through_its_clean_estimate():
    # a velocity network that outputs 0 estimates x0 = z - sigma * 0 = z: its x0 error is z - x0, and the
    # term is the MSE of that error's change between consecutive frames (all noisy on joint rows)
    cfg = get_config("tiny")
    batch = _batch(cfg)

    class Zero(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))
            self.seen = []

        def forward(self, zv, za, tv, ta, cond):
            self.seen.append((zv.clone(), tv.clone()))
            return torch.zeros_like(zv) + 0 * self.w, torch.zeros_like(za) + 0 * self.w

    plain = dict(lambda_v=0, lambda_a=0, lambda_i=0, p_first_frame=0.0, p_drop_text=0.0, p_drop_ref=0.0)
    base, with_term = Zero(), Zero()
    _, p0 = synergy_loss(base, Conditioner(cfg), batch, TrainConfig(**plain), torch.Generator().manual_seed(2),
                         "velocity")
    _, p1 = synergy_loss(with_term, Conditioner(cfg), batch, TrainConfig(lambda_temporal=2.0, **plain),
                         torch.Generator().manual_seed(2), "velocity")
    zv, tv = with_term.seen[0]
    assert bool((tv > 0).all())
    err = zv - batch["video"]
    want = ((err[:, :, 1:] - err[:, :, :-1]) ** 2).mean()
    assert p1["joint"] - p0["joint"] == pytest.approx(2.0 * float(want), rel=1e-4)


def test_voice_augment_moves_the_voice_and_keeps_the_timing():
    # --voice-aug S: per clip one move of loudness (<= S nats), pitch (<= S octaves) and spectral envelope
    # (tilt <= 1.5 S end to end, each band <= 0.75 S), in the tiny audio codec's normalised units; the
    # loudness envelope's shape over time (the syllables' timing) and the voicing are the clip's own
    from harmony.codecs.toy_audio import AudioCodec
    from harmony.train import voice_augment

    _, std = AudioCodec.default_stats()
    a0 = torch.randn(4, 12, 20)
    out = voice_augment(a0, torch.Generator().manual_seed(3), 1.0)
    d = (out - a0) * std  # back to the codec's own units
    assert torch.allclose(d, d[:, :1].expand_as(d), atol=1e-5)                   # one move per clip, all times
    assert torch.allclose(d[..., 0:4], d[..., :1].expand(-1, -1, 4), atol=1e-5)  # one gain for the 4 sub-frames
    assert torch.equal(out[..., 5], a0[..., 5])                                   # voicing kept
    assert d[..., 0:4].abs().max() <= 1.0 + 1e-5 and d[..., 4].abs().max() <= math.log(2.0) + 1e-5
    assert d[..., 6:].abs().max() <= 1.5 + 1e-5 and d[..., 6:].abs().max() > 0.1
    assert len({round(float(x), 4) for x in d[:, 0, 4]}) == 4                      # each clip its own voice
    assert torch.equal(voice_augment(a0, torch.Generator().manual_seed(3), 0.0), a0)


def test_voice_augment_reaches_only_the_a2v_rows():
    cfg = get_config("tiny")
    batch = _batch(cfg)
    seen = {}

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, zv, za, tv, ta, cond):
            seen["za"] = za.detach().clone()
            return zv * self.w, za * self.w

    common = dict(lambda_v=1, lambda_a=0, lambda_i=0, p_first_frame=0.0, p_drop_text=0.0, p_drop_ref=0.0)
    runs = {}
    for s in (0.0, 1.0):
        synergy_loss(Recorder(), Conditioner(cfg), batch, TrainConfig(voice_aug=s, **common),
                     torch.Generator().manual_seed(1), "x0")
        runs[s] = seen["za"].chunk(2)  # (joint rows, A2V rows)
    assert torch.equal(runs[0.0][0], runs[1.0][0])            # the joint rows hear the clip's own audio
    assert torch.equal(runs[0.0][1], batch["audio"])          # A2V's clean driving audio...
    moved = runs[1.0][1] - batch["audio"]
    assert moved.abs().max() > 0.05 and torch.allclose(moved, moved[:, :1].expand_as(moved), atol=1e-5)
