"""Guidance arithmetic of every mode, the SyncCFG anchors (latents and timesteps) and the
velocity -> x0 conversion, on a fake network whose outputs are chosen by hand.

The fake's video estimates differ from frame to frame (``FRAME``), so an anchor that is not
static (the moving estimate itself, or another frame than the first) shows."""
import dataclasses

import pytest
import torch

from harmony.config import get_config
from harmony.guidance import (DEFAULT_SA, DEFAULT_SV, Guidance, SyncCFG, default_scales,
                              velocity_to_x0)
from harmony.jobs import Job
from harmony.model import Conditioning

# hand-made clean estimates per pass: (video, audio)
PRED = {"joint": (2.0, -1.0), "silent": (0.5, 7.0), "static": (9.0, 0.25), "uncond": (1.0, 0.0)}
B, CV, F, H, W, LA, CA = 1, 4, 3, 2, 2, 5, 3
SILENT = torch.tensor([0.3, -0.2, 0.1])
FRAME = 0.25 * torch.arange(F, dtype=torch.float32).reshape(1, F, 1, 1)
"""Added to every pass's video estimate per latent frame (0, 0.25, 0.5): the estimates move.
Every guidance mode is an affine combination of passes (weights summing to 1) plus differences
of passes, so the guided video is the hand-computed value + FRAME."""


class PassModel(torch.nn.Module):
    """Recognises each guidance pass from its inputs alone and answers with PRED (video: + FRAME).

    uncond: all-zero text; silent: the audio is the silent token repeated; static: every
    video frame equals the first. Records what every batch row was fed."""

    def __init__(self, prediction="x0"):
        super().__init__()
        self.cfg = dataclasses.replace(get_config("tiny"), prediction=prediction)
        self.rows, self.calls = [], 0

    def kind(self, zv, za, ctx):
        if float(ctx.abs().max()) == 0:
            return "uncond"
        if torch.equal(za, SILENT.to(za.dtype).reshape(1, -1).expand_as(za)):
            return "silent"
        if torch.equal(zv, zv[:, :1].expand_as(zv)):
            return "static"
        return "joint"

    def forward(self, zv, za, tv, ta, cond):
        self.calls += 1
        v, a = torch.empty_like(zv), torch.empty_like(za)
        for i in range(zv.shape[0]):
            k = self.kind(zv[i], za[i], cond.video_context[i])
            self.rows.append(dict(kind=k, zv=zv[i].clone(), za=za[i].clone(), tv=tv[i].clone(),
                                  ta=ta[i].clone(), dtype=zv.dtype, t_dtype=tv.dtype))
            v[i], a[i] = PRED[k][0] + FRAME, PRED[k][1]
        return v, a


def _conds():
    cond = Conditioning(torch.ones(B, 2, 8), torch.ones(B, 2, 8))
    return cond, Conditioning(torch.zeros(B, 2, 8), torch.zeros(B, 2, 8))


def _state(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, CV, F, H, W, generator=g), torch.randn(B, LA, CA, generator=g)


def _sigmas(sigma=0.6):
    return torch.full((B, F), sigma, dtype=torch.float64), torch.full((B,), sigma, dtype=torch.float64)


def _run(mode, sv=3.0, sa=2.0, text_cfg=1.0, job=None, batched=True):
    m = PassModel()
    cond, uncond = _conds()
    den = SyncCFG(m, cond, Guidance(mode, sv, sa, text_cfg, batched), job or Job(), uncond,
                  silent_audio_token=SILENT)
    dv, da = den(*_state(), *_sigmas())
    return m, den, dv, da


# expected values, computed by hand from PRED:
#   synccfg: Dv = 0.5 + 3 (2 - 0.5) = 5.0          Da = 0.25 + 2 (-1 - 0.25) = -2.25
#   text CFG 1.5 on top: Dv += 0.5 (2 - 1) = 5.5    Da += 0.5 (-1 - 0) = -2.75
#   cfg:     Dv = 1 + 3 (2 - 1) = 4.0               Da = 0 + 2 (-1 - 0) = -2.0
#   none:    Dv = 2.0                               Da = -1.0
@pytest.mark.parametrize("mode, text_cfg, want_v, want_a, n_rows", [
    ("synccfg", 1.0, 5.0, -2.25, 3),
    ("synccfg", 1.5, 5.5, -2.75, 4),
    ("cfg", 1.0, 4.0, -2.0, 2),
    ("cfg", 1.5, 4.0, -2.0, 2),  # text_cfg is not used under plain CFG (sv/sa are the text scales)
    ("none", 1.0, 2.0, -1.0, 1),
    ("none", 1.5, 2.5, -1.5, 2),
])
@pytest.mark.parametrize("batched", [True, False])
def test_guidance_arithmetic_of_every_mode(mode, text_cfg, want_v, want_a, n_rows, batched):
    m, den, dv, da = _run(mode, text_cfg=text_cfg, batched=batched)
    assert torch.all(dv == want_v + FRAME) and torch.all(da == want_a), (float(dv.mean()), float(da.mean()))
    assert len(m.rows) == n_rows
    assert m.calls == (1 if batched else n_rows)


def test_unit_scales_are_no_guidance():
    for mode in ("synccfg", "cfg"):
        _, _, dv, da = _run(mode, sv=1.0, sa=1.0)
        assert torch.all(dv == PRED["joint"][0] + FRAME) and torch.all(da == PRED["joint"][1])


def test_sv_is_the_video_scale_and_sa_the_audio_scale():
    _, _, dv, da = _run("synccfg", sv=5.0, sa=1.0)
    assert torch.all(dv == 0.5 + 5.0 * 1.5 + FRAME) and torch.all(da == -1.0)
    _, _, dv, da = _run("synccfg", sv=1.0, sa=5.0)
    assert torch.all(dv == 2.0 + FRAME) and torch.all(da == 0.25 + 5.0 * -1.25)


def _rows(m):
    return {r["kind"]: r for r in m.rows}


def test_synccfg_anchor_latents_and_timesteps_t2av():
    zv, za = _state()
    blank = torch.randn(CV, 1, H, W)
    m = PassModel()
    cond, _ = _conds()
    den = SyncCFG(m, cond, Guidance("synccfg"), Job(), silent_audio_token=SILENT, blank_video_frame=blank)
    den(zv, za, *_sigmas(0.6))
    rows = _rows(m)
    assert set(rows) == {"joint", "silent", "static"}
    j, s, st = rows["joint"], rows["silent"], rows["static"]
    assert torch.equal(j["zv"], zv[0]) and torch.equal(j["za"], za[0])
    assert torch.allclose(j["tv"], torch.full((F,), 600.0)) and torch.allclose(j["ta"], torch.tensor(600.0))
    # silent pass: same noisy video, silent audio fed CLEAN (t_a = 0)
    assert torch.equal(s["zv"], zv[0]) and torch.equal(s["za"], SILENT.expand(LA, CA))
    assert torch.allclose(s["tv"], torch.full((F,), 600.0)) and float(s["ta"]) == 0.0
    # static pass: the blank frame repeated, fed CLEAN (t_v = 0), same noisy audio
    assert torch.equal(st["zv"], blank.expand(CV, F, H, W)) and torch.equal(st["za"], za[0])
    assert torch.all(st["tv"] == 0) and torch.allclose(st["ta"], torch.tensor(600.0))
    # next step: the static anchor is the previous step's clean video estimate (first frame)
    m.rows.clear()
    dv_prev = den.video_estimate.clone()
    assert torch.equal(dv_prev, 5.0 + FRAME.expand(B, CV, F, H, W))  # the guided estimate moves
    den(zv, za, *_sigmas(0.3))
    st = _rows(m)["static"]  # (a moving anchor would be recognised as a joint pass: no "static" row)
    assert torch.equal(st["zv"], dv_prev[0, :, :1].expand(CV, F, H, W)) and torch.all(st["tv"] == 0)
    assert torch.all(st["zv"] == 5.0)  # frame 0 of the previous estimate (5 + 0), held over all frames


def test_synccfg_anchors_per_job():
    zv, za = _state()
    first = torch.randn(B, CV, 1, H, W)
    clean_v, clean_a = torch.randn(B, CV, F, H, W), torch.randn(B, LA, CA)
    cond, _ = _conds()
    # I2AV: static anchor = the given first frame
    m = PassModel()
    SyncCFG(m, cond, Guidance("synccfg"), Job(first_frame=first), silent_audio_token=SILENT)(zv, za, *_sigmas())
    assert torch.equal(_rows(m)["static"]["zv"], first[0].expand(CV, F, H, W))
    # V2A: the video is given -> no silent pass; static anchor = its first frame
    m = PassModel()
    SyncCFG(m, cond, Guidance("synccfg"), Job(clean_video=clean_v), silent_audio_token=SILENT)(zv, za, *_sigmas())
    rows = _rows(m)
    assert set(rows) == {"joint", "static"}
    assert torch.equal(rows["static"]["zv"], clean_v[0, :, :1].expand(CV, F, H, W))
    # A2V: the audio is given -> no static pass
    m = PassModel()
    SyncCFG(m, cond, Guidance("synccfg"), Job(clean_audio=clean_a), silent_audio_token=SILENT)(zv, za, *_sigmas())
    assert set(_rows(m)) == {"joint", "silent"}


def test_sampler_static_anchor_is_frame0_of_the_previous_estimate_held():
    """Through the sampler (T2AV, 3 Euler steps): the static anchor is the blank frame at the
    first step, then frame 0 of the previous step's (moving) clean estimate held over all
    frames, fed clean; the silent anchor is the silence latent at every step."""
    from harmony.sampling import sample

    m = PassModel()
    cond, _ = _conds()
    blank = torch.randn(CV, 1, H, W, generator=torch.Generator().manual_seed(7))
    previews = []
    sample(m, cond, *_state(), steps=3, guidance=Guidance("synccfg"), silent_audio_token=SILENT,
           blank_video_frame=blank, solver="euler", preview=lambda i, n, v, a: previews.append(v.clone()))
    static = [r for r in m.rows if r["kind"] == "static"]
    silent = [r for r in m.rows if r["kind"] == "silent"]
    assert len(static) == len(silent) == len(previews) == 3
    assert torch.equal(static[0]["zv"], blank.expand(CV, F, H, W))
    for k in (1, 2):
        prev = previews[k - 1][0]
        assert not torch.equal(prev[:, 0], prev[:, 1])  # the estimate moves from frame to frame
        assert torch.equal(static[k]["zv"], prev[:, :1].expand(CV, F, H, W))
    for r in static:
        assert torch.all(r["tv"] == 0)
    for r in silent:
        assert torch.equal(r["za"], SILENT.expand(LA, CA)) and float(r["ta"]) == 0


def test_network_gets_fp32_timesteps_and_compute_dtype_latents():
    m = PassModel()
    cond, _ = _conds()
    den = SyncCFG(m, cond, Guidance("synccfg"), Job(), silent_audio_token=SILENT, dtype=torch.bfloat16)
    zv, za = _state()
    sigma = 0.987654321
    dv, da = den(zv, za, *_sigmas(sigma))
    for r in m.rows:
        assert r["dtype"] == torch.bfloat16 and r["t_dtype"] == torch.float32
    assert abs(float(_rows(m)["joint"]["ta"]) - 1000 * sigma) < 1e-4  # bf16 would be off by ~2
    assert dv.dtype == torch.float32 and da.dtype == torch.float32


def test_velocity_to_x0_sign():
    g = torch.Generator().manual_seed(3)
    x0, noise = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    sigma = 0.3
    z = (1 - sigma) * x0 + sigma * noise
    torch.testing.assert_close(velocity_to_x0(noise - x0, z, torch.tensor(sigma)), x0)


class ExactVelocity(torch.nn.Module):
    """Answers the exact velocity noise - x0 of a known (x0, noise) pair at its sigma."""

    def __init__(self, x0v, x0a, nv, na):
        super().__init__()
        self.cfg = dataclasses.replace(get_config("tiny"), prediction="velocity")
        self.x0v, self.x0a, self.nv, self.na = x0v, x0a, nv, na

    def forward(self, zv, za, tv, ta, cond):
        return (self.nv - self.x0v).expand_as(zv), (self.na - self.x0a).expand_as(za)


def test_velocity_model_gives_the_clean_sample():
    g = torch.Generator().manual_seed(4)
    x0v, nv = torch.randn(B, CV, F, H, W, generator=g), torch.randn(B, CV, F, H, W, generator=g)
    x0a, na = torch.randn(B, LA, CA, generator=g), torch.randn(B, LA, CA, generator=g)
    sigma = 0.45
    zv, za = (1 - sigma) * x0v + sigma * nv, (1 - sigma) * x0a + sigma * na
    cond, _ = _conds()
    den = SyncCFG(ExactVelocity(x0v, x0a, nv, na), cond, Guidance("none"), Job())
    dv, da = den(zv, za, *_sigmas(sigma))
    torch.testing.assert_close(dv, x0v)
    torch.testing.assert_close(da, x0a)


def test_defaults_and_errors():
    assert (DEFAULT_SV, DEFAULT_SA) == (3.0, 2.0)  # the paper's scales
    assert Guidance().sv == 3.0 and Guidance().sa == 2.0
    assert default_scales(get_config("tiny")) == (3.0, 2.0)
    tuned = get_config("tiny").replace(meta={"sampling": {"sv": 2.5, "sa": 1.5, "jobs": {"I2AV": {"sv": 2}}}})
    assert default_scales(tuned) == default_scales(tuned, "T2AV") == (2.5, 1.5)
    assert default_scales(tuned, "I2AV") == (2.0, 1.5)  # the job's own entry over the file-wide one
    with pytest.raises(ValueError, match="guidance mode"):
        Guidance("bogus")
    cond, _ = _conds()
    with pytest.raises(ValueError, match="uncond"):
        SyncCFG(PassModel(), cond, Guidance("cfg"), Job())
    with pytest.raises(ValueError, match="silent_audio_token"):
        SyncCFG(PassModel(), cond, Guidance("synccfg"), Job())


def test_sampler_node_widgets_follow_the_one_source():
    from harmony import jobs
    from nodes.sampler import HarmonySyncCFGSampler

    req = HarmonySyncCFGSampler.INPUT_TYPES()["required"]
    assert (req["sv"][1]["default"], req["sa"][1]["default"]) == (DEFAULT_SV, DEFAULT_SA)
    for name in ("sv", "sa"):
        tip = req[name][1]["tooltip"]
        assert "1 = no guidance" in tip and "cfg: the text-CFG scale" in tip
    assert req["seconds"][1]["max"] == jobs.largest_max_seconds() == 6.0  # not 60 s
    assert req["seconds"][1]["min"] == jobs.MIN_SECONDS
    assert jobs.job_name(True, False, False) == "A2V" and jobs.job_name(False, True, True) == "V2A"
    assert jobs.job_name(False, False, True) == "I2AV" and jobs.job_name(False, False, False) == "T2AV"
    assert jobs.job_name(True, True, False) == "A2V+V2A"


# --- the timing anchor (st): the driven modality against its prediction given an early partner ---
FT, LT = 8, 16  # video latent frames, audio tokens: EARLY_FRAMES (3) frames early = round(3 * 16 / 8) = 6 tokens
EARLY = (1.5, 3.0)  # hand-made clean estimates of the early-partner pass (video, audio)


class EarlyPassModel(PassModel):
    """PassModel that also recognises the early-partner pass: its audio (A2V) or video (V2A) is the
    numbered driving latent advanced by hand (``self.early_a`` / ``self.early_v``)."""

    early_a = early_v = None

    def kind(self, zv, za, ctx):
        if self.early_a is not None and torch.equal(za, self.early_a):
            return "early"
        if self.early_v is not None and torch.equal(zv, self.early_v):
            return "early"
        return super().kind(zv, za, ctx)

    def forward(self, zv, za, tv, ta, cond):
        self.calls += 1
        v, a = torch.empty_like(zv), torch.empty_like(za)
        frame = 0.25 * torch.arange(zv.shape[2], dtype=zv.dtype).reshape(1, -1, 1, 1)
        for i in range(zv.shape[0]):
            k = self.kind(zv[i], za[i], cond.video_context[i])
            self.rows.append(dict(kind=k, zv=zv[i].clone(), za=za[i].clone(), tv=tv[i].clone(), ta=ta[i].clone()))
            v[i], a[i] = {**PRED, "early": EARLY}[k][0] + frame, {**PRED, "early": EARLY}[k][1]
        return v, a


def _numbered():
    """Video latent frame f holds the value f; audio token t holds t (so a shift in time is read off)."""
    zv = torch.arange(FT, dtype=torch.float32).reshape(1, 1, FT, 1, 1).expand(B, CV, FT, H, W).clone()
    za = torch.arange(LT, dtype=torch.float32).reshape(1, LT, 1).expand(B, LT, CA).clone()
    return zv, za


def _timing_run(job_kind, st):
    zv, za = _numbered()
    m = EarlyPassModel()
    if job_kind == "A2V":  # the clean audio advanced 6 tokens, its last 6 the silent token
        m.early_a = torch.cat([za[0, 6:], SILENT.expand(6, CA)])
        job = Job(clean_audio=za)
    else:  # V2A: the clean video advanced 3 frames, its last frame held
        m.early_v = torch.cat([zv[0, :, 3:], zv[0, :, -1:].expand(CV, 3, H, W)], dim=1)
        job = Job(clean_video=zv)
    cond, _ = _conds()
    sv_, sa_ = torch.full((B, FT), 0.6, dtype=torch.float64), torch.full((B,), 0.6, dtype=torch.float64)
    if job_kind == "A2V":
        sa_ = torch.zeros_like(sa_)
    else:
        sv_ = torch.zeros_like(sv_)
    den = SyncCFG(m, cond, Guidance("synccfg", 3.0, 2.0, st=st), job, silent_audio_token=SILENT)
    dv, da = den(zv, za, sv_, sa_)
    return m, dv, da


def test_timing_anchor_a2v_contrasts_the_video_with_the_audio_three_frames_early():
    """A2V, st = 2: Dv = silent + 3 (joint - silent) + 2 (joint - early) = 0.5 + 4.5 + 2 (2 - 1.5) = 6;
    the early pass gets the noisy video at its sigma and the advanced audio clean."""
    m, dv, _ = _timing_run("A2V", 2.0)
    rows = _rows(m)
    assert set(rows) == {"joint", "silent", "early"}
    e = rows["early"]
    assert torch.all(e["za"][:10, 0] == torch.arange(6, 16, dtype=torch.float32))  # token t holds t + 6
    assert torch.equal(e["za"][10:], SILENT.expand(6, CA))
    assert torch.equal(e["zv"], rows["joint"]["zv"]) and torch.allclose(e["tv"], torch.full((FT,), 600.0))
    assert float(e["ta"]) == 0.0
    frame = 0.25 * torch.arange(FT, dtype=torch.float32).reshape(1, FT, 1, 1)
    assert torch.allclose(dv, 6.0 + frame.expand_as(dv))


def test_timing_anchor_v2a_contrasts_the_audio_with_the_video_three_frames_early():
    """V2A, st = 2: Da = static + 2 (joint - static) + 2 (joint - early) = -2.25 + 2 (-1 - 3) = -10.25;
    the early pass gets the advanced video clean (last frame held) and the noisy audio."""
    m, _, da = _timing_run("V2A", 2.0)
    rows = _rows(m)
    assert set(rows) == {"joint", "static", "early"}
    e = rows["early"]
    assert [float(x) for x in e["zv"][0, :, 0, 0]] == [3, 4, 5, 6, 7, 7, 7, 7]
    assert torch.all(e["tv"] == 0) and abs(float(e["ta"]) - 600.0) < 1e-3
    assert torch.equal(e["za"], rows["joint"]["za"])
    assert torch.allclose(da, torch.full_like(da, -10.25))


def test_timing_anchor_off_is_the_papers_synccfg_and_only_driven_jobs_get_it():
    for job_kind in ("A2V", "V2A"):
        m, _, _ = _timing_run(job_kind, 0.0)
        assert "early" not in _rows(m)
    # T2AV and I2AV generate both modalities: no early partner exists, the arithmetic is unchanged
    for job in (Job(), Job(first_frame=torch.randn(B, CV, 1, H, W))):
        m = PassModel()
        cond, _ = _conds()
        den = SyncCFG(m, cond, Guidance("synccfg", st=5.0), job, silent_audio_token=SILENT)
        dv, da = den(*_state(), *_sigmas())
        assert len(m.rows) == 3 and torch.all(da == -2.25)
    # plain CFG never adds it
    m = EarlyPassModel()
    cond, uncond = _conds()
    SyncCFG(m, cond, Guidance("cfg", st=1.0), Job(clean_audio=_numbered()[1]), uncond)(*_numbered(),
                                                                                        *_sigmas_ft())
    assert {r["kind"] for r in m.rows} == {"joint", "uncond"}


def _sigmas_ft(sigma=0.6):
    return torch.full((B, FT), sigma, dtype=torch.float64), torch.zeros((B,), dtype=torch.float64)


def test_timing_scale_reader():
    from harmony.guidance import DEFAULT_ST, default_timing

    assert DEFAULT_ST == 0.0 and Guidance().st == 0.0 and default_timing(get_config("tiny"), "A2V") == 0.0
    tuned = get_config("tiny").replace(meta={"sampling": {"jobs": {"A2V": {"st": 1.5}}}})
    assert default_timing(tuned, "A2V") == 1.5 and default_timing(tuned, "V2A") == 0.0


def test_a_late_partner_is_the_other_direction(monkeypatch):
    """EARLY_FRAMES < 0 (the lab's --early-frames): the partner delayed, its start padded (audio: the
    silent token; video: the first frame held)."""
    from harmony import guidance

    monkeypatch.setattr(guidance, "EARLY_FRAMES", -2)  # 2 frames late = round(2 * 16 / 8) = 4 tokens
    zv, za = _numbered()
    den = SyncCFG(PassModel(), _conds()[0], Guidance("synccfg", st=1.0), Job(clean_audio=za), silent_audio_token=SILENT)
    late = den.early_audio(za, FT)
    assert torch.equal(late[0, :4], SILENT.expand(4, CA))
    assert torch.all(late[0, 4:, 0] == torch.arange(0, 12, dtype=torch.float32))  # token t holds t - 4
    assert [float(x) for x in den.early_video(zv)[0, 0, :, 0, 0]] == [0, 0, 0, 1, 2, 3, 4, 5]
