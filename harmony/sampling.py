"""Flow-matching ODE solvers and the job wrapper around a guided denoiser.

Flow matching (rectified flow, as Wan and Ovi): ``x_sigma = (1 - sigma) x0 +
sigma * noise``; the velocity is ``noise - x0``; the network time is
``t = 1000 * sigma``. Sigmas are shifted with ``s * sigma / (1 + (s - 1) sigma)``.

The solvers have the k-diffusion shape: ``solver(model, x, sigmas, callback)``
where ``model(x, sigma)`` returns the clean estimate ("denoised") of the state
``x``. Here the state is the pair ``(zv, za)`` packed into one flat fp32 tensor
``[B, N]`` by :class:`JobDenoiser`, which also

* holds the job's clean latents (A2V audio, V2A video, I2AV first frame) in
  every state it is given and every estimate it returns (the solvers know
  nothing about jobs),
* builds the per-frame / per-clip sigmas (0 where the input is clean),
* calls the guided denoiser (:class:`harmony.guidance.SyncCFG`: SyncCFG, plain
  CFG or none, text CFG on top), which runs the network in the compute dtype
  (bf16 on a GPU) while the state stays fp32 and the sigmas float64.

The step callback receives a dict ``{"i", "x", "sigma", "sigma_next", "denoised"}``
(k-diffusion's keys); :func:`sample` turns it into ``callback(step, total)`` and
``preview(step, total, x0_video, x0_audio)`` for hosts.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import torch

from .guidance import (DEFAULT_SA, DEFAULT_SV, GUIDANCE_MODES,  # noqa: F401 (re-exports)
                       Guidance, SyncCFG, default_scales, default_timing)
from .job_weights import job_weights
from .jobs import Job, tuned_settings
from .model import Conditioning

SOLVERS = ("euler", "dpmpp_2m")

DEFAULT_SHIFT = 5.0
"""Default flow-matching schedule shift (paper: 5), the same in training."""
DEFAULT_STEPS = 20
"""Default sampling steps of the pipeline, the CLI and the node (the paper uses 40)."""
DEFAULT_SOLVER = "dpmpp_2m"
"""Default ODE solver of the pipeline, the CLI and the node."""


def default_shift(cfg=None, job: Optional[str] = None) -> float:
    """The schedule shift for a model and a job: the one its file records as tuned for that job
    (jobs.tuned_settings; a low shift spends more steps at low sigma, where a mouth's shape over
    time forms), else the paper's."""
    return (tuned_settings(cfg, job) if cfg is not None else {}).get("shift", DEFAULT_SHIFT)


DEFAULT_RESYNC = 0.0
"""The resync pass is off unless a model file records it (the paper has none)."""
RESYNC_JOBS = ("T2AV", "I2AV")
"""The jobs whose sound is generated, and so can drive a resync pass of their picture."""


def default_resync(cfg=None, job: Optional[str] = None) -> float:
    """The resync pass's share of the schedule for a model and a job: its file's tuned one (T2AV / I2AV),
    else 0 (off)."""
    if job not in RESYNC_JOBS:
        return 0.0
    return (tuned_settings(cfg, job) if cfg is not None else {}).get("resync", DEFAULT_RESYNC)


class JobSettings(NamedTuple):
    """The sampling settings of one run of a job (see :func:`job_settings`)."""

    sv: float
    sa: float
    shift: float
    st: float
    resync: float


def job_settings(cfg, job: str, sv: Optional[float] = None, sa: Optional[float] = None,
                 shift: Optional[float] = None, st: Optional[float] = None,
                 resync: Optional[float] = None) -> JobSettings:
    """``(sv, sa, shift, st, resync)`` of a run of ``job``: each one given, else the model file's tuned
    value for the job, else the paper's (st: 0, no timing anchor; resync: 0, no resync pass); the one
    place a run without settings gets them."""
    tuned_sv, tuned_sa = default_scales(cfg, job)
    return JobSettings(tuned_sv if sv is None else sv, tuned_sa if sa is None else sa,
                       default_shift(cfg, job) if shift is None else shift,
                       default_timing(cfg, job) if st is None else st,
                       default_resync(cfg, job) if resync is None else resync)


class SamplingCancelled(RuntimeError):
    """Raised by a cancel check to stop sampling between steps."""


def shift_sigmas(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """Time shift of flow-matching sigmas (shift > 1 spends more steps at high noise)."""
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def sigma_schedule(steps: int, shift: float = DEFAULT_SHIFT) -> torch.Tensor:
    """``steps + 1`` shifted sigmas from 1 down to 0 (float64)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    return shift_sigmas(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), shift)


# --------------------------------------------------------------------------- solvers

def sample_euler(model, x, sigmas, callback=None):
    """First-order flow-matching Euler: ``x <- x + (sigma_next - sigma) * (x - D) / sigma``."""
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = model(x, sigma)
        x = denoised + (sigma_next / sigma) * (x - denoised)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sigma, "sigma_next": sigma_next, "denoised": denoised})
    return x


def sample_dpmpp_2m(model, x, sigmas, callback=None):
    """DPM-Solver++(2M) on the clean estimate for flow matching (alpha = 1 - sigma,
    lambda = log(alpha / sigma)); the last step (to sigma 0) is the estimate itself."""
    def lam(s):
        return math.log((1 - s) / s)

    old_denoised, h_last = None, None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = model(x, sigma)
        if sigma_next == 0:
            x = denoised
        else:
            s = min(sigma, 1 - 1e-6)  # lambda(1) = -inf: the first step is first order anyway
            h = lam(sigma_next) - lam(s)
            d = denoised
            if old_denoised is not None:
                r = h_last / h
                d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (sigma_next / s) * x - (1 - sigma_next) * math.expm1(-h) * d
            old_denoised, h_last = denoised, h
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sigma, "sigma_next": sigma_next, "denoised": denoised})
    return x


SOLVER_FUNCS = {"euler": sample_euler, "dpmpp_2m": sample_dpmpp_2m}


# --------------------------------------------------------------------------- the job wrapper

class JobDenoiser:
    """``model(x, sigma)`` for the solvers: the flat state ``x`` ``[B, N]`` of one job.

    Unpacks ``x`` into ``(zv, za)``, puts the job's clean latents in, gives the
    guided denoiser per-frame sigmas (0 where the input is clean), and returns
    the flat clean estimate with the clean latents held.
    """

    def __init__(self, guided, job: Job, shape_video, shape_audio):
        self.guided, self.job = guided, job
        self.shape_video, self.shape_audio = tuple(shape_video), tuple(shape_audio)
        self.n_video = math.prod(self.shape_video[1:])
        self.last = None  # (x0_video, x0_audio) of the latest call

    def pack(self, zv, za):
        return torch.cat([zv.reshape(zv.shape[0], -1), za.reshape(za.shape[0], -1)], dim=1)

    def unpack(self, x):
        return (x[:, :self.n_video].reshape(self.shape_video),
                x[:, self.n_video:].reshape(self.shape_audio))

    def hold(self, zv, za):
        """The given (clean) parts put back into ``(zv, za)``."""
        job = self.job
        if job.clean_video is not None:
            zv = job.clean_video.to(zv)
        elif job.first_frame is not None:
            zv = torch.cat([job.first_frame.to(zv), zv[:, :, 1:]], dim=2)
        if job.clean_audio is not None:
            za = job.clean_audio.to(za)
        return zv, za

    def sigmas(self, sigma: float, device):
        """Per-frame video sigmas ``[B, F]`` and per-clip audio sigmas ``[B]`` (float64)."""
        b, f = self.shape_video[0], self.shape_video[2]
        sigma_v = torch.full((b, f), float(sigma), dtype=torch.float64, device=device)
        sigma_a = torch.full((b,), float(sigma), dtype=torch.float64, device=device)
        if self.job.clean_video is not None:
            sigma_v.zero_()
        elif self.job.first_frame is not None:
            sigma_v[:, 0] = 0
        if self.job.clean_audio is not None:
            sigma_a.zero_()
        return sigma_v, sigma_a

    def __call__(self, x, sigma):
        zv, za = self.hold(*self.unpack(x))
        dv, da = self.guided(zv, za, *self.sigmas(sigma, x.device))
        dv, da = self.hold(dv.to(x.dtype), da.to(x.dtype))
        self.last = (dv, da)
        return self.pack(dv, da)


# --------------------------------------------------------------------------- entry point

def sample(model, cond: Conditioning, noise_video: torch.Tensor, noise_audio: torch.Tensor, *,
           steps: int = 40, shift: float = DEFAULT_SHIFT, guidance: Optional[Guidance] = None,
           job: Optional[Job] = None, uncond: Optional[Conditioning] = None,
           silent_audio_token=None, blank_video_frame=None, solver: str = DEFAULT_SOLVER,
           callback: Optional[Callable] = None, cancel: Optional[Callable] = None,
           preview: Optional[Callable] = None, dtype: Optional[torch.dtype] = None,
           log: Optional[Callable[[str], None]] = None, resync: float = 0.0):
    """Generate ``(video_latent, audio_latent)`` (fp32) from the given noise.

    ``callback(step, total)`` runs after every step; ``preview(step, total, x0_video,
    x0_audio)`` too, with the step's clean estimate; ``cancel()`` runs before every
    step and stops sampling by raising (e.g. :class:`SamplingCancelled` or the host's
    interrupt exception, which is never swallowed). ``dtype``: the network's compute
    dtype (default: the noise's dtype); the ODE state stays fp32 whatever it is.
    A model with its own weights for the job (:mod:`harmony.job_weights`) samples with them;
    ``log`` hears whether they are used.

    ``resync`` (0 = off; T2AV and I2AV, ours, not the paper's): the **resync pass**. Once the joint
    sample is done, its picture is re-timed to its own sound: the generated audio latent is held
    clean (with I2AV's first frame), the video is noised back to the sigma ``resync`` of the way
    down an A2V schedule and sampled as A2V from there, ``round(steps * resync)`` more steps at the
    model file's A2V settings and with A2V's own weights. Cross-Task Synergy at sampling time: the
    A2V path follows an audio track better than the joint one makes picture and sound agree.
    """
    if solver not in SOLVER_FUNCS:
        raise ValueError(f"solver {solver!r} is unknown; use one of {SOLVERS}")
    if not 0 <= resync <= 1:
        raise ValueError(f"resync must be in [0, 1] (0 = off), got {resync}")
    guidance = guidance or Guidance()
    job = job or Job()
    state = torch.promote_types(noise_video.dtype, torch.float32)
    zv, za = noise_video.to(state), noise_audio.to(state)
    sigmas = sigma_schedule(steps, shift)
    n_resync = max(1, round(steps * resync)) if resync > 0 and job.name in RESYNC_JOBS else 0
    run = dict(model=model, cond=cond, uncond=uncond, silent_audio_token=silent_audio_token,
               blank_video_frame=blank_video_frame, solver=solver, callback=callback, cancel=cancel,
               preview=preview, dtype=dtype or noise_video.dtype, log=log, total=steps + n_resync)
    zv, za = _solve(zv, za, sigmas, guidance, job, done=0, **run)
    if not n_resync:
        return zv, za
    a2v = job_settings(getattr(model, "cfg", None), "A2V")
    tail = sigma_schedule(steps, a2v.shift)[-(n_resync + 1):]
    s0 = float(tail[0])  # flow matching: x_sigma = (1 - sigma) x0 + sigma noise, the sampling noise again
    zv = (1 - s0) * zv + s0 * noise_video.to(state)
    resync_job = Job(clean_audio=za, first_frame=job.first_frame)
    resync_guidance = Guidance(guidance.mode, a2v.sv, a2v.sa, guidance.text_cfg, guidance.batched, a2v.st)
    return _solve(zv, za, tail, resync_guidance, resync_job, done=steps, **run)


def _solve(zv, za, sigmas, guidance, job, *, model, cond, uncond, silent_audio_token, blank_video_frame,
           solver, callback, cancel, preview, dtype, log, total, done):
    """One solver run of one job over ``sigmas`` from the state ``(zv, za)``; the step callbacks count
    from ``done`` of ``total`` (a resync pass goes on where the joint one stopped)."""
    guided = SyncCFG(model, cond, guidance, job, uncond, silent_audio_token, blank_video_frame, dtype)
    den = JobDenoiser(guided, job, zv.shape, za.shape)

    def model_fn(x, sigma):
        if cancel is not None:
            cancel()
        return den(x, sigma)

    def step_done(info):
        if callback is not None:
            callback(done + info["i"] + 1, total)
        if preview is not None:
            preview(done + info["i"] + 1, total, *den.unpack(info["denoised"]))

    with torch.no_grad(), job_weights(model, job.name, log):
        x = SOLVER_FUNCS[solver](model_fn, den.pack(zv, za), sigmas, step_done)
    return den.hold(*den.unpack(x))
