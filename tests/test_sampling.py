"""Flow-matching sampling, SyncCFG and the four jobs."""
import dataclasses

import pytest
import torch

from harmony.config import get_config
from harmony.model import Conditioning, HarmonyModel
from harmony.sampling import (AVDenoiser, Guidance, Job, SamplingCancelled, sample,
                              sigma_schedule)


class ProbeModel(torch.nn.Module):
    """A fake network whose clean-sample estimate is a known function of its inputs,
    so the guidance arithmetic can be checked exactly. Records every call."""

    def __init__(self):
        super().__init__()
        self.cfg = get_config("tiny")  # prediction "x0"
        self.calls = []

    def forward(self, zv, za, tv, ta, cond):
        self.calls.append(zv.shape[0])
        # video estimate depends on the partner audio, audio estimate on the partner video
        v = 0.5 * zv + za.mean(dim=(1, 2))[:, None, None, None, None] + tv.mean(1)[:, None, None, None, None] / 1000
        a = 0.5 * za + zv.mean(dim=(1, 2, 3, 4))[:, None, None] + cond.video_context.mean() * 0
        return v, a


def _cond(b=1, dim=64):
    return Conditioning(torch.randn(b, 5, dim), torch.randn(b, 7, dim), None)


def test_synccfg_formula_matches_paper():
    torch.manual_seed(0)
    m = ProbeModel()
    zv, za = torch.randn(1, 16, 3, 4, 4), torch.randn(1, 10, 20)
    silent = torch.randn(20)
    g = Guidance("synccfg", sv=3.0, sa=2.0)
    den = AVDenoiser(m, _cond(), g, Job(), silent_audio_token=silent)
    sv_, sa_ = torch.full((1, 3), 0.6, dtype=torch.float64), torch.full((1,), 0.6, dtype=torch.float64)
    dv, da = den(zv, za, sv_, sa_)
    tv, ta = torch.full((1, 3), 600.0), torch.full((1,), 600.0)
    joint = m(zv, za, tv, ta, _cond())
    silent_pass = m(zv, silent.reshape(1, 1, -1).expand_as(za), tv, ta * 0, _cond())
    static = torch.zeros_like(zv[:, :, :1]).expand_as(zv)  # no estimate yet, no blank frame: zeros
    static_pass = m(static, za, tv * 0, ta, _cond())
    torch.testing.assert_close(dv, silent_pass[0] + 3.0 * (joint[0] - silent_pass[0]))
    torch.testing.assert_close(da, static_pass[1] + 2.0 * (joint[1] - static_pass[1]))


def test_unit_scales_reduce_to_joint_prediction():
    m = ProbeModel()
    zv, za = torch.randn(1, 16, 3, 4, 4), torch.randn(1, 10, 20)
    den = AVDenoiser(m, _cond(), Guidance("synccfg", 1.0, 1.0), Job(), silent_audio_token=torch.zeros(20))
    s = torch.full((1, 3), 0.5, dtype=torch.float64), torch.full((1,), 0.5, dtype=torch.float64)
    dv, da = den(zv, za, *s)
    jv, ja = m(zv, za, torch.full((1, 3), 500.0), torch.full((1,), 500.0), _cond())
    torch.testing.assert_close(dv, jv)
    torch.testing.assert_close(da, ja)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return HarmonyModel(get_config("tiny")).eval()


def test_batched_synccfg_equals_three_separate_passes(tiny):
    torch.manual_seed(1)
    cfg = tiny.cfg
    zv = torch.randn(1, cfg.video.in_dim, 6, 4, 4)
    za = torch.randn(1, 12, cfg.audio.in_dim)
    cond = Conditioning(torch.randn(1, 8, cfg.video.text_dim), torch.randn(1, 9, cfg.audio.text_dim),
                        torch.randn(1, 5, cfg.audio.in_dim))
    uncond = Conditioning(torch.zeros_like(cond.video_context), torch.zeros_like(cond.audio_context),
                          cond.ref_audio)
    s = torch.full((1, 6), 0.7, dtype=torch.float64), torch.full((1,), 0.7, dtype=torch.float64)
    out = {}
    for batched in (True, False):
        den = AVDenoiser(tiny, cond, Guidance("synccfg", 3.0, 2.0, 1.5, batched), Job(), uncond,
                         silent_audio_token=torch.randn(cfg.audio.in_dim, generator=torch.Generator().manual_seed(2)))
        with torch.no_grad():
            out[batched] = den(zv, za, *s)
        out[(batched, "forwards")] = den.forwards
    torch.testing.assert_close(out[True][0], out[False][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[True][1], out[False][1], atol=1e-5, rtol=1e-5)
    assert out[(True, "forwards")] == 1  # joint + silent + static + uncond as one batch
    assert out[(False, "forwards")] == 4


class ConstantX0(torch.nn.Module):
    """Always predicts the same clean sample: every solver must land on it exactly."""

    def __init__(self, xv, xa):
        super().__init__()
        self.cfg = dataclasses.replace(get_config("tiny"), prediction="x0")
        self.xv, self.xa = xv, xa

    def forward(self, zv, za, tv, ta, cond):
        return self.xv.expand_as(zv), self.xa.expand_as(za)


@pytest.mark.parametrize("solver", ["euler", "dpmpp_2m"])
def test_solvers_reach_the_predicted_clean_sample(solver):
    xv, xa = torch.randn(1, 4, 3, 2, 2), torch.randn(1, 5, 3)
    m = ConstantX0(xv, xa)
    zv, za = sample(m, _cond(), torch.randn(1, 4, 3, 2, 2), torch.randn(1, 5, 3), steps=7,
                    guidance=Guidance("none"), solver=solver)
    torch.testing.assert_close(zv, xv)
    torch.testing.assert_close(za, xa)


def test_jobs_hold_the_given_latents_clean():
    m = ProbeModel()
    clean_a = torch.randn(1, 10, 20)
    clean_v = torch.randn(1, 16, 3, 4, 4)
    first = torch.randn(1, 16, 1, 4, 4)
    nv, na = torch.randn(1, 16, 3, 4, 4), torch.randn(1, 10, 20)
    kw = dict(steps=4, silent_audio_token=torch.zeros(20))
    zv, za = sample(m, _cond(), nv, na, job=Job(clean_audio=clean_a), **kw)
    assert torch.equal(za, clean_a) and not torch.equal(zv, nv)
    zv, za = sample(m, _cond(), nv, na, job=Job(clean_video=clean_v), **kw)
    assert torch.equal(zv, clean_v) and not torch.equal(za, na)
    zv, za = sample(m, _cond(), nv, na, job=Job(first_frame=first), **kw)
    assert torch.equal(zv[:, :, :1], first)
    assert Job(clean_audio=clean_a).name == "A2V" and Job(clean_video=clean_v).name == "V2A"
    assert Job(first_frame=first).name == "I2AV" and Job().name == "T2AV"


def test_a2v_network_sees_clean_audio_at_t0():
    m = ProbeModel()
    seen = []
    orig = m.forward

    def spy(zv, za, tv, ta, cond):
        seen.append(ta.clone())
        return orig(zv, za, tv, ta, cond)

    m.forward = spy
    sample(m, _cond(), torch.randn(1, 16, 3, 4, 4), torch.randn(1, 10, 20), steps=2,
           job=Job(clean_audio=torch.randn(1, 10, 20)), silent_audio_token=torch.zeros(20))
    assert all(float(t.abs().max()) == 0 for t in seen)


def test_callback_every_step_and_cancel_stops():
    m = ProbeModel()
    steps = []
    sample(m, _cond(), torch.randn(1, 16, 3, 4, 4), torch.randn(1, 10, 20), steps=5,
           silent_audio_token=torch.zeros(20), callback=lambda i, n: steps.append((i, n)))
    assert steps == [(i, 5) for i in range(1, 6)]
    count = {"n": 0}

    def cancel():
        count["n"] += 1
        if count["n"] > 2:
            raise SamplingCancelled("stop")

    with pytest.raises(SamplingCancelled):
        sample(m, _cond(), torch.randn(1, 16, 3, 4, 4), torch.randn(1, 10, 20), steps=10,
               silent_audio_token=torch.zeros(20), cancel=cancel)
    assert count["n"] == 3


def test_schedule_and_bad_arguments():
    s = sigma_schedule(10, 5.0)
    assert s[0] == 1 and s[-1] == 0 and torch.all(s[1:] < s[:-1])
    # shift 5 keeps more steps at high noise than no shift
    assert s[5] > sigma_schedule(10, 1.0)[5]
    with pytest.raises(ValueError, match="steps"):
        sigma_schedule(0)
    with pytest.raises(ValueError, match="guidance mode"):
        Guidance("bogus")
    with pytest.raises(ValueError, match="solver"):
        sample(ProbeModel(), _cond(), torch.randn(1, 16, 3, 4, 4), torch.randn(1, 10, 20),
               solver="bogus", silent_audio_token=torch.zeros(20))
    with pytest.raises(ValueError, match="uncond"):
        AVDenoiser(ProbeModel(), _cond(), Guidance("cfg"), Job())
