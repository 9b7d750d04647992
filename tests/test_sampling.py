"""Flow-matching solvers against closed forms and hand-computed steps; the job wrapper;
the sampler's numerics (fp32 state, fp32 timesteps) and its hooks."""
import dataclasses
import math

import pytest
import torch

from harmony.config import get_config
from harmony.guidance import Guidance, SyncCFG
from harmony.jobs import Job
from harmony.model import Conditioning, HarmonyModel
from harmony.sampling import (SamplingCancelled, sample, sample_dpmpp_2m, sample_euler,
                              shift_sigmas, sigma_schedule)

# ---------------------------------------------------------------- closed form
# Data x0 ~ N(mu, s^2) per element, x_sigma = (1 - sigma) x0 + sigma * noise. Then
#   exact denoiser  D(x, sigma) = mu + (1-sigma) s^2 / ((1-sigma)^2 s^2 + sigma^2) * (x - (1-sigma) mu)
#   exact ODE path  x(sigma)    = (1-sigma) mu + sqrt((1-sigma)^2 s^2 + sigma^2) * x(1)
# so the flow started at noise x(1) ends at mu + s * x(1).
MU, S = 0.7, 0.5


def gauss_denoiser(mu, s):
    def D(x, sigma):
        a = 1 - sigma
        return mu + a * s * s / (a * a * s * s + sigma * sigma) * (x - a * mu)
    return D


def gauss_endpoint(x1, mu, s):
    return mu + s * x1


X1 = torch.linspace(-2.0, 2.0, 9, dtype=torch.float64)[None]


def endpoint_error(solver, steps, shift):
    x = solver(gauss_denoiser(MU, S), X1.clone(), sigma_schedule(steps, shift))
    return float((x - gauss_endpoint(X1, MU, S)).abs().max())


def test_schedule_values_by_hand():
    # shift 5: 5 s / (1 + 4 s) at s = 1, .75, .5, .25, 0
    want = torch.tensor([1.0, 3.75 / 4.0, 2.5 / 3.0, 1.25 / 2.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(sigma_schedule(4, 5.0), want, rtol=0, atol=1e-15)
    torch.testing.assert_close(sigma_schedule(4, 1.0), torch.tensor([1, .75, .5, .25, 0], dtype=torch.float64))
    assert sigma_schedule(4).dtype == torch.float64
    torch.testing.assert_close(shift_sigmas(torch.tensor([0.2]), 3.0), torch.tensor([0.6 / 1.4]))
    with pytest.raises(ValueError, match="steps"):
        sigma_schedule(0)
    with pytest.raises(ValueError, match="shift"):
        sigma_schedule(4, 0.0)


def test_euler_steps_by_hand():
    D = gauss_denoiser(MU, S)
    sig = [0.9, 0.6, 0.35]
    x = X1.clone()
    for a, b in zip(sig, sig[1:]):  # x + (sigma_next - sigma) * velocity, velocity = (x - D) / sigma
        x = x + (b - a) * (x - D(x, a)) / a
    torch.testing.assert_close(sample_euler(D, X1.clone(), torch.tensor(sig, dtype=torch.float64)), x,
                               rtol=0, atol=1e-12)


def test_dpmpp_2m_steps_by_hand():
    D = gauss_denoiser(MU, S)
    sig = [0.9, 0.6, 0.35, 0.1]
    lam = [math.log((1 - s) / s) for s in sig]
    x0 = X1.clone()
    # step 1 (first order): x1 = (s1/s0) x0 + (1 - s1) (1 - e^{-h0}) D0
    h0 = lam[1] - lam[0]
    d0 = D(x0, sig[0])
    x1 = sig[1] / sig[0] * x0 + (1 - sig[1]) * (1 - math.exp(-h0)) * d0
    # step 2 (second order): D' = (1 + 1/(2r)) D1 - 1/(2r) D0 with r = h0 / h1
    h1 = lam[2] - lam[1]
    d1 = D(x1, sig[1])
    r = h0 / h1
    x2 = sig[2] / sig[1] * x1 + (1 - sig[2]) * (1 - math.exp(-h1)) * ((1 + 0.5 / r) * d1 - 0.5 / r * d0)
    # step 3, r = h1 / h2
    h2 = lam[3] - lam[2]
    d2 = D(x2, sig[2])
    r = h1 / h2
    x3 = sig[3] / sig[2] * x2 + (1 - sig[3]) * (1 - math.exp(-h2)) * ((1 + 0.5 / r) * d2 - 0.5 / r * d1)
    got = sample_dpmpp_2m(D, X1.clone(), torch.tensor(sig, dtype=torch.float64))
    torch.testing.assert_close(got, x3, rtol=0, atol=1e-12)
    # the step to sigma 0 returns the clean estimate
    got0 = sample_dpmpp_2m(D, X1.clone(), torch.tensor([0.9, 0.6, 0.0], dtype=torch.float64))
    torch.testing.assert_close(got0, D(x1, 0.6), rtol=0, atol=1e-12)


@pytest.mark.parametrize("solver", [sample_euler, sample_dpmpp_2m])
def test_point_mass_lands_exactly(solver):
    target = torch.tensor([[0.3, -1.2, 2.0]], dtype=torch.float64)
    x = solver(lambda x, s: target.expand_as(x), torch.randn(1, 3, dtype=torch.float64), sigma_schedule(7))
    torch.testing.assert_close(x, target, rtol=0, atol=1e-12)


# measured orders (log2 of the error ratio when the steps double), see docs/ARCHITECTURE.md:
#   Euler,    shift 5: N = 40 -> 80 -> 160: errors 1.06e-1, 5.44e-2, 2.75e-2 (order 0.97, 0.98)
#   DPM++2M,  shift 1: N = 80 -> 160 -> 320: errors 1.61e-3, 4.85e-4, 1.42e-4 (order 1.73, 1.77)
#   DPM++2M,  shift 5: N = 160 -> 320 -> 640: errors 4.98e-3, 1.87e-3, 6.09e-4 (order 1.41, 1.62)
@pytest.mark.parametrize("shift", [1.0, 5.0])
def test_euler_is_first_order_on_the_gaussian(shift):
    e = [endpoint_error(sample_euler, n, shift) for n in (40, 80, 160)]
    orders = [math.log2(e[i] / e[i + 1]) for i in range(2)]
    assert all(0.9 < p < 1.1 for p in orders), (e, orders)
    assert e[-1] < 0.03


@pytest.mark.parametrize("shift, ns, min_order, max_err", [(1.0, (80, 160, 320), 1.7, 2e-4),
                                                          (5.0, (160, 320, 640), 1.55, 7e-4)])
def test_dpmpp_2m_is_second_order_on_the_gaussian(shift, ns, min_order, max_err):
    e = [endpoint_error(sample_dpmpp_2m, n, shift) for n in ns]
    order = math.log2(e[1] / e[2])
    assert order > min_order and e[2] < max_err, (e, order)
    # and much better than Euler at the same number of steps
    assert e[2] < endpoint_error(sample_euler, ns[2], shift) / 10


# ---------------------------------------------------------------- through sample()

class GaussNet(torch.nn.Module):
    """The exact Gaussian denoiser as a network: reads sigma = t / 1000 and answers the
    velocity noise - x0 = (z - D) / sigma (prediction "velocity") or D ("x0")."""

    def __init__(self, prediction="velocity", video=(0.7, 0.5), audio=(-0.4, 1.5)):
        super().__init__()
        self.cfg = dataclasses.replace(get_config("tiny"), prediction=prediction)
        self.video, self.audio = video, audio
        self.seen = []

    def forward(self, zv, za, tv, ta, cond):
        self.seen.append((tv.clone(), ta.clone()))
        sv = tv.double()[:, None, :, None, None] / 1000
        sa = ta.double()[:, None, None] / 1000
        dv = gauss_denoiser(*self.video)(zv.double(), sv)
        da = gauss_denoiser(*self.audio)(za.double(), sa)
        if self.cfg.prediction == "x0":
            return dv.to(zv.dtype), da.to(za.dtype)
        return ((zv - dv) / sv).to(zv.dtype), ((za - da) / sa).to(za.dtype)


def _cond(b=1, dim=8):
    return Conditioning(torch.ones(b, 2, dim), torch.ones(b, 2, dim))


@pytest.mark.parametrize("prediction", ["velocity", "x0"])
@pytest.mark.parametrize("solver, fn", [("euler", sample_euler), ("dpmpp_2m", sample_dpmpp_2m)])
def test_sample_follows_the_exact_flow(prediction, solver, fn):
    """sample(): shift-5 schedule, t = 1000 sigma, velocity -> x0, both modalities on one
    clock; equals the float64 solver on the closed form (fp32 state) and ends near the exact
    endpoint."""
    g = torch.Generator().manual_seed(0)
    nv, na = torch.randn(1, 2, 3, 2, 2, generator=g), torch.randn(1, 4, 3, generator=g)
    net = GaussNet(prediction)
    zv, za = sample(net, _cond(), nv, na, steps=40, shift=5.0, guidance=Guidance("none"), solver=solver)
    assert zv.dtype == torch.float32 and za.dtype == torch.float32
    ref_v = fn(gauss_denoiser(0.7, 0.5), nv.double(), sigma_schedule(40, 5.0))
    ref_a = fn(gauss_denoiser(-0.4, 1.5), na.double(), sigma_schedule(40, 5.0))
    torch.testing.assert_close(zv.double(), ref_v, rtol=0, atol=2e-4)
    torch.testing.assert_close(za.double(), ref_a, rtol=0, atol=2e-4)
    # 40 steps: error per unit of |noise| ~0.053 (Euler) / ~0.0054 (DPM++2M), see above
    tol = (0.07 if solver == "euler" else 0.008) * float(nv.abs().max())
    assert float((zv.double() - gauss_endpoint(nv.double(), 0.7, 0.5)).abs().max()) < tol
    sig = sigma_schedule(40, 5.0)
    torch.testing.assert_close(torch.stack([t[1][0] for t in net.seen]).double(), 1000 * sig[:-1],
                               rtol=0, atol=1e-3)


def test_jobs_hold_the_given_latents_and_sigmas():
    g = torch.Generator().manual_seed(1)
    nv, na = torch.randn(1, 2, 3, 2, 2, generator=g), torch.randn(1, 4, 3, generator=g)
    clean_v, clean_a = torch.randn(1, 2, 3, 2, 2, generator=g), torch.randn(1, 4, 3, generator=g)
    first = torch.randn(1, 2, 1, 2, 2, generator=g)
    kw = dict(steps=4, shift=5.0, guidance=Guidance("none"), solver="dpmpp_2m")
    sig = sigma_schedule(4, 5.0)[:-1].float() * 1000

    net = GaussNet("x0")  # A2V: audio clean at t_a = 0 in every pass; video noisy
    zv, za = sample(net, _cond(), nv, na, job=Job(clean_audio=clean_a), **kw)
    assert torch.equal(za, clean_a) and not torch.equal(zv, nv)
    assert all(float(ta.abs().max()) == 0 for _, ta in net.seen)
    torch.testing.assert_close(torch.stack([tv[0, 0] for tv, _ in net.seen]), sig)

    net = GaussNet("x0")  # V2A: video clean at t_v = 0; audio noisy
    zv, za = sample(net, _cond(), nv, na, job=Job(clean_video=clean_v), **kw)
    assert torch.equal(zv, clean_v) and not torch.equal(za, na)
    assert all(float(tv.abs().max()) == 0 for tv, _ in net.seen)
    torch.testing.assert_close(torch.stack([ta[0] for _, ta in net.seen]), sig)

    net = GaussNet("x0")  # I2AV: first latent frame clean at t = 0, the other frames noisy
    zv, za = sample(net, _cond(), nv, na, job=Job(first_frame=first), **kw)
    assert torch.equal(zv[:, :, :1], first)
    for k, (tv, ta) in enumerate(net.seen):
        assert float(tv[0, 0]) == 0
        torch.testing.assert_close(tv[0, 1:], sig[k].expand(2))
        torch.testing.assert_close(ta[0], sig[k])


def test_jobs_names():
    t = torch.zeros(1)
    assert Job().name == "T2AV" and Job(first_frame=t).name == "I2AV"
    assert Job(clean_audio=t).name == "A2V" and Job(clean_video=t).name == "V2A"


def test_callback_preview_every_step_and_cancel_stops():
    net = GaussNet("x0")
    nv, na = torch.randn(1, 2, 3, 2, 2), torch.randn(1, 4, 3)
    steps, previews = [], []
    sample(net, _cond(), nv, na, steps=5, guidance=Guidance("none"), solver="euler",
           callback=lambda i, n: steps.append((i, n)),
           preview=lambda i, n, xv, xa: previews.append((i, xv.clone(), xa.clone())))
    assert steps == [(i, 5) for i in range(1, 6)]
    assert [p[0] for p in previews] == [1, 2, 3, 4, 5]
    # the preview is the step's clean estimate: the exact denoiser at that step's sigma
    sig = sigma_schedule(5, 5.0)
    x = nv.double()
    for k in range(2):
        d = gauss_denoiser(0.7, 0.5)(x, float(sig[k]))
        torch.testing.assert_close(previews[k][1].double(), d, rtol=0, atol=1e-5)
        x = d + float(sig[k + 1] / sig[k]) * (x - d)
    count = {"n": 0}

    def cancel():
        count["n"] += 1
        if count["n"] > 2:
            raise SamplingCancelled("stop")

    with pytest.raises(SamplingCancelled):
        sample(net, _cond(), nv, na, steps=10, guidance=Guidance("none"), cancel=cancel)
    assert count["n"] == 3


def _resync_net():
    """GaussNet whose file records A2V's shift (1) and sv: the resync pass must read them."""
    net = GaussNet("x0")
    net.cfg = dataclasses.replace(net.cfg, meta={"sampling": {"jobs": {"A2V": {"shift": 1.0, "sv": 2.5}}}})
    return net


@pytest.mark.parametrize("with_image", [False, True])
def test_resync_pass_resamples_the_video_as_a2v_from_its_own_audio(with_image):
    """T2AV / I2AV with resync r: the joint run, then round(steps * r) A2V steps (the file's A2V shift) from
    the joint video noised back with the sampling noise to that tail's first sigma, the generated audio held
    clean (t_a = 0) and I2AV's first frame too; callbacks count on over both runs."""
    g = torch.Generator().manual_seed(3)
    nv, na = torch.randn(1, 2, 3, 2, 2, generator=g), torch.randn(1, 4, 3, generator=g)
    first = torch.randn(1, 2, 1, 2, 2, generator=g) if with_image else None
    kw = dict(steps=5, shift=5.0, guidance=Guidance("none"), solver="euler", job=Job(first_frame=first))
    ref_v, ref_a = sample(GaussNet("x0"), _cond(), nv, na, **kw)  # the joint run alone
    net, steps = _resync_net(), []
    zv, za = sample(net, _cond(), nv, na, resync=0.4, callback=lambda i, n: steps.append((i, n)), **kw)
    assert steps == [(i, 7) for i in range(1, 8)]  # 5 joint steps + round(5 * 0.4) = 2 resync steps
    torch.testing.assert_close(za, ref_a, rtol=0, atol=0)  # the generated sound is kept as it is
    tail = sigma_schedule(5, 1.0)[-3:]  # A2V's shift, not the joint run's
    x = (1 - float(tail[0])) * ref_v.double() + float(tail[0]) * nv.double()
    want = sample_euler(gauss_denoiser(0.7, 0.5), x, tail)
    if with_image:
        want[:, :, :1] = first.double()
    torch.testing.assert_close(zv.double(), want, rtol=0, atol=1e-5)
    assert not torch.allclose(zv, ref_v, atol=1e-3)
    resync_calls = net.seen[5:]
    assert len(resync_calls) == 2
    for k, (tv, ta) in enumerate(resync_calls):
        assert float(ta.abs().max()) == 0
        torch.testing.assert_close(tv[0, 1:], (1000 * tail[k]).float().expand(2))
        assert float(tv[0, 0]) == (0.0 if with_image else float((1000 * tail[k]).float()))


def test_resync_leaves_driven_jobs_alone_and_checks_its_range():
    """A2V / V2A have no generated partner to follow: resync changes nothing there; out of [0, 1] it is refused."""
    nv, na = torch.randn(1, 2, 3, 2, 2), torch.randn(1, 4, 3)
    kw = dict(steps=3, guidance=Guidance("none"), solver="euler")
    for job in (Job(clean_audio=torch.randn(1, 4, 3)), Job(clean_video=torch.randn(1, 2, 3, 2, 2))):
        a, b = _resync_net(), _resync_net()
        out_a = sample(a, _cond(), nv, na, job=job, **kw)
        out_b = sample(b, _cond(), nv, na, job=job, resync=0.5, **kw)
        assert len(a.seen) == len(b.seen) == 3 and all(torch.equal(x, y) for x, y in zip(out_a, out_b))
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="resync"):
            sample(_resync_net(), _cond(), nv, na, resync=bad, **kw)


def test_resync_setting_is_read_from_the_model_file_for_t2av_and_i2av_only():
    from harmony.sampling import default_resync, job_settings
    cfg = dataclasses.replace(get_config("tiny"), meta={"sampling": {"resync": 0.3, "jobs": {"I2AV": {"resync": 0.5}}}})
    assert default_resync(cfg, "T2AV") == 0.3 and default_resync(cfg, "I2AV") == 0.5
    assert default_resync(cfg, "A2V") == default_resync(cfg, "V2A") == 0.0
    assert default_resync(get_config("tiny"), "T2AV") == default_resync(None, "T2AV") == 0.0
    assert job_settings(cfg, "I2AV").resync == 0.5 and job_settings(cfg, "I2AV", resync=0.0).resync == 0.0


def test_unknown_solver():
    with pytest.raises(ValueError, match="solver"):
        sample(GaussNet(), _cond(), torch.randn(1, 2, 3, 2, 2), torch.randn(1, 4, 3), solver="bogus",
               guidance=Guidance("none"))


# ---------------------------------------------------------------- real tiny model

@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return HarmonyModel(get_config("tiny")).eval()


def _tiny_inputs(cfg, seed=1):
    g = torch.Generator().manual_seed(seed)
    zv = torch.randn(1, cfg.video.in_dim, 2, 4, 4, generator=g)
    za = torch.randn(1, 6, cfg.audio.in_dim, generator=g)
    cond = Conditioning(torch.randn(1, 8, cfg.video.text_dim, generator=g),
                        torch.randn(1, 9, cfg.audio.text_dim, generator=g))
    uncond = Conditioning(torch.zeros_like(cond.video_context), torch.zeros_like(cond.audio_context))
    return zv, za, cond, uncond


def test_batched_synccfg_equals_separate_passes(tiny):
    zv, za, cond, uncond = _tiny_inputs(tiny.cfg)
    s = torch.full((1, 2), 0.7, dtype=torch.float64), torch.full((1,), 0.7, dtype=torch.float64)
    out, forwards = {}, {}
    for batched in (True, False):
        den = SyncCFG(tiny, cond, Guidance("synccfg", 3.0, 2.0, 1.5, batched), Job(), uncond,
                      silent_audio_token=torch.randn(tiny.cfg.audio.in_dim, generator=torch.Generator().manual_seed(2)))
        with torch.no_grad():
            out[batched] = den(zv, za, *s)
        forwards[batched] = den.forwards
    torch.testing.assert_close(out[True][0], out[False][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[True][1], out[False][1], atol=1e-5, rtol=1e-5)
    assert forwards == {True: 1, False: 4}  # joint + silent + static + uncond


class Bf16Net(torch.nn.Module):
    """A network with bf16 parameters (one channel-mixing layer per modality, cast on use
    like harmony's ops) that records what it is fed; predicts x0."""

    def __init__(self, cv, ca):
        super().__init__()
        self.cfg = dataclasses.replace(get_config("tiny"), prediction="x0")
        self.v = torch.nn.Linear(cv, cv).to(torch.bfloat16)
        self.a = torch.nn.Linear(ca, ca).to(torch.bfloat16)
        self.seen = []

    def forward(self, zv, za, tv, ta, cond):
        self.seen.append((zv.dtype, za.dtype, tv.clone(), ta.clone()))
        v = self.v(zv.movedim(1, -1).to(self.v.weight.dtype)).movedim(-1, 1)
        return 0.5 * v, 0.5 * self.a(za.to(self.a.weight.dtype))


def test_bf16_model_keeps_fp32_state_and_exact_timesteps():
    """A bf16 network at 40 steps, shift 5: it sees bf16 latents, fp32 timesteps equal to
    1000 sigma (bf16 timesteps would be up to 2.0 off near t = 1000, where steps are ~1.3
    apart), and the ODE state and result stay fp32."""
    net = Bf16Net(2, 3)
    g = torch.Generator().manual_seed(5)
    nv, na = torch.randn(1, 2, 3, 2, 2, generator=g), torch.randn(1, 4, 3, generator=g)
    states = []
    # noise handed over in bf16 (as a host computing in bf16 does): the network gets bf16,
    # the ODE state is fp32 from the first step on
    out_v, out_a = sample(net, _cond(), nv.to(torch.bfloat16), na.to(torch.bfloat16), steps=40,
                          shift=5.0, guidance=Guidance("none"), solver="dpmpp_2m",
                          preview=lambda i, n, xv, xa: states.append((xv.dtype, xa.dtype)))
    exact = 1000 * sigma_schedule(40, 5.0)[:-1]
    assert len(net.seen) == 40
    assert all((s[0], s[1]) == (torch.bfloat16, torch.bfloat16) for s in net.seen)
    tv = torch.stack([s[2][0, 0] for s in net.seen])
    ta = torch.stack([s[3][0] for s in net.seen])
    assert tv.dtype == torch.float32 and ta.dtype == torch.float32
    assert float((tv.double() - exact).abs().max()) < 1e-3
    assert float((ta.double() - exact).abs().max()) < 1e-3
    bf16_error = float((exact.to(torch.bfloat16).double() - exact).abs().max())
    assert bf16_error > 1.0  # what bf16 timesteps would have cost
    assert out_v.dtype == torch.float32 and out_a.dtype == torch.float32
    assert states == [(torch.float32, torch.float32)] * 40


def test_real_bf16_model_runs_a_guided_step(tiny):
    model = HarmonyModel(get_config("tiny")).eval()
    model.load_state_dict(tiny.state_dict())
    model.to(torch.bfloat16)
    zv, za, cond, _ = _tiny_inputs(tiny.cfg)
    den = SyncCFG(model, cond, Guidance("synccfg"), Job(), silent_audio_token=torch.zeros(tiny.cfg.audio.in_dim),
                  dtype=torch.bfloat16)
    with torch.no_grad():
        dv, da = den(zv, za, torch.full((1, 2), 0.9, dtype=torch.float64), torch.full((1,), 0.9, dtype=torch.float64))
    assert dv.dtype == torch.float32 and torch.isfinite(dv).all() and torch.isfinite(da).all()


@pytest.mark.parametrize("batched", [True, False])
def test_text_embeddings_computed_once_per_run(tiny, batched, monkeypatch):
    """Issue 15: what depends only on the conditioning is prepared once per sampling run,
    and the result equals running every step on the raw conditioning."""
    zv, za, cond, uncond = _tiny_inputs(tiny.cfg)
    calls = {"n": 0}
    embed = type(tiny.video_model).embed_text

    def counting(self, context):
        calls["n"] += 1
        return embed(self, context)

    monkeypatch.setattr(type(tiny.video_model), "embed_text", counting)
    kw = dict(steps=4, shift=5.0, guidance=Guidance("synccfg", 3.0, 2.0, 1.5, batched), uncond=uncond,
              silent_audio_token=torch.zeros(tiny.cfg.audio.in_dim), solver="euler")
    got = sample(tiny, cond, zv, za, **kw)
    # two distinct conditionings (prompt, no text) x two towers, once each - not once per step
    assert calls["n"] == 4

    class Raw(torch.nn.Module):  # the same network without `prepare`: every step embeds again
        def __init__(self, m):
            super().__init__()
            self.m, self.cfg = m, m.cfg

        def forward(self, *a):
            return self.m(*a)

    calls["n"] = 0
    ref = sample(Raw(tiny), cond, zv, za, **kw)
    assert calls["n"] == 4 * 2 * (1 if batched else 4)  # steps x towers x forwards per step
    torch.testing.assert_close(got[0], ref[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[1], ref[1], atol=1e-5, rtol=1e-5)
