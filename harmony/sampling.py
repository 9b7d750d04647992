"""Flow-matching sampling with SyncCFG.

Flow matching (rectified flow, as Wan and Ovi): ``x_sigma = (1 - sigma) x0 +
sigma * noise``; the velocity is ``noise - x0``; the network time is
``t = 1000 * sigma``. Sigmas are shifted with ``s * sigma / (1 + (s - 1) sigma)``.

Guidance works on the two modalities separately (paper §SyncCFG). With
``D(.)`` the network's clean-sample estimate:

* plain CFG (the baseline): ``D_u + s * (D_c - D_u)`` with ``D_u`` the
  prediction without text, ``sv`` for video and ``sa`` for audio;
* SyncCFG: the video is contrasted with a *driven* prediction whose partner
  audio is the silent anchor (clean, ``t_a = 0``), the audio with one whose
  partner video is the static anchor (clean, ``t_v = 0``)::

      Dv = Dv(zv | silent audio) + sv * (Dv(joint) - Dv(zv | silent audio))
      Da = Da(za | static video) + sa * (Da(joint) - Da(za | static video))

  and optional text CFG on top, ``+ (text_cfg - 1) * (D(joint) - D(no text))``.

All passes of one step go through the network as **one batched forward**
(``batched=False`` runs them one by one; the benchmark compares both).

Null anchors (the paper leaves them open; our rules):

* *silent audio*: the audio codec's latent of digital silence, one token
  repeated over the clip (``silent_audio_token``);
* *static video*: "nothing moves": the first latent frame of the current video
  estimate frozen over all frames. The estimate is the given first frame
  (I2AV) or driving video (V2A) when there is one, else the previous step's
  clean-video estimate; before the first estimate exists it is the codec's
  blank frame (``blank_video_frame``).

Jobs are expressed by which latents are clean: A2V holds the audio at
``sigma = 0``, V2A the video, I2AV the first latent frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .model import Conditioning

GUIDANCE_MODES = ("synccfg", "cfg", "none")
SOLVERS = ("euler", "dpmpp_2m")


class SamplingCancelled(RuntimeError):
    """Raised by a cancel check to stop sampling between steps."""


def shift_sigmas(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """Time shift of flow-matching sigmas (shift > 1 spends more steps at high noise)."""
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def sigma_schedule(steps: int, shift: float = 5.0) -> torch.Tensor:
    """``steps + 1`` shifted sigmas from 1 down to 0 (float64)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    return shift_sigmas(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), shift)


@dataclass
class Guidance:
    """Guidance settings. ``sv``/``sa``: video/audio scales; ``text_cfg`` 1 = off."""

    mode: str = "synccfg"
    sv: float = 3.0
    sa: float = 2.0
    text_cfg: float = 1.0
    batched: bool = True

    def __post_init__(self):
        if self.mode not in GUIDANCE_MODES:
            raise ValueError(f"guidance mode {self.mode!r} is unknown; use one of {GUIDANCE_MODES}")


@dataclass
class Job:
    """What is given. ``clean_audio``/``clean_video``: full latents held fixed
    (A2V / V2A); ``first_frame``: a clean first latent frame ``[B, Cv, 1, h, w]`` (I2AV)."""

    clean_audio: Optional[torch.Tensor] = None
    clean_video: Optional[torch.Tensor] = None
    first_frame: Optional[torch.Tensor] = None

    @property
    def name(self) -> str:
        if self.clean_audio is not None and self.clean_video is not None:
            return "reconstruct"
        if self.clean_audio is not None:
            return "A2V"
        if self.clean_video is not None:
            return "V2A"
        return "I2AV" if self.first_frame is not None else "T2AV"


class AVDenoiser:
    """Guided clean-sample estimates ``(Dv, Da)`` for noisy ``(zv, za)`` at one sigma.

    Wraps a :class:`~harmony.model.HarmonyModel`; builds the guidance passes
    and runs them as one batch (or one by one when ``guidance.batched`` is off).
    """

    def __init__(self, model, cond: Conditioning, guidance: Guidance, job: Job,
                 uncond: Optional[Conditioning] = None,
                 silent_audio_token: Optional[torch.Tensor] = None,
                 blank_video_frame: Optional[torch.Tensor] = None):
        self.model, self.cond, self.uncond = model, cond, uncond
        self.guidance, self.job = guidance, job
        self.prediction = model.cfg.prediction
        need_uncond = guidance.mode == "cfg" or guidance.text_cfg != 1.0
        if need_uncond and uncond is None:
            raise ValueError("plain CFG / text CFG need `uncond` (the conditioning without text)")
        if guidance.mode == "synccfg" and silent_audio_token is None:
            raise ValueError("SyncCFG needs `silent_audio_token` (the silent-audio anchor)")
        self.silent = silent_audio_token
        self.blank = blank_video_frame
        self.video_estimate: Optional[torch.Tensor] = None
        self.forwards = 0  # network evaluations (batched counts once)

    # -- anchors -----------------------------------------------------------
    def static_video(self, zv: torch.Tensor) -> torch.Tensor:
        if self.job.clean_video is not None:
            first = self.job.clean_video[:, :, :1]
        elif self.job.first_frame is not None:
            first = self.job.first_frame
        elif self.video_estimate is not None:
            first = self.video_estimate[:, :, :1]
        elif self.blank is not None:
            first = self.blank.to(zv).expand(zv.shape[0], -1, 1, -1, -1)
        else:
            first = torch.zeros_like(zv[:, :, :1])
        return first.expand_as(zv)

    def silent_audio(self, za: torch.Tensor) -> torch.Tensor:
        return self.silent.to(za).reshape(1, 1, -1).expand_as(za)

    # -- passes ------------------------------------------------------------
    def _passes(self, zv, za, tv, ta):
        """List of (name, zv, za, t_video, t_audio, cond) for this step."""
        g, zero_v, zero_a = self.guidance, torch.zeros_like(tv), torch.zeros_like(ta)
        passes = [("joint", zv, za, tv, ta, self.cond)]
        if g.mode == "synccfg":
            if self.job.clean_video is None:  # video is generated: contrast with silence
                passes.append(("silent", zv, self.silent_audio(za), tv, zero_a, self.cond))
            if self.job.clean_audio is None:  # audio is generated: contrast with stillness
                passes.append(("static", self.static_video(zv), za, zero_v, ta, self.cond))
        if g.mode == "cfg" or g.text_cfg != 1.0:
            passes.append(("uncond", zv, za, tv, ta, self.uncond))
        return passes

    def _run(self, passes):
        if self.guidance.batched and len(passes) > 1:
            self.forwards += 1
            n = passes[0][1].shape[0]
            outs = self.model(
                torch.cat([p[1] for p in passes]), torch.cat([p[2] for p in passes]),
                torch.cat([p[3] for p in passes]), torch.cat([p[4] for p in passes]),
                Conditioning.cat([p[5] for p in passes]))
            vs, as_ = outs[0].split(n), outs[1].split(n)
            return {p[0]: (v, a) for p, v, a in zip(passes, vs, as_)}
        result = {}
        for p in passes:
            self.forwards += 1
            result[p[0]] = self.model(*p[1:])
        return result

    def _to_x0(self, out, z, sigma):
        if self.prediction == "x0":
            return out
        return z - sigma * out  # velocity = noise - x0

    def __call__(self, zv, za, sigma_v, sigma_a):
        """``sigma_v`` ``[B, F]`` (per latent frame), ``sigma_a`` ``[B]`` (float)."""
        dtype = zv.dtype
        tv, ta = (sigma_v * 1000).to(dtype), (sigma_a * 1000).to(dtype)
        outs = self._run(self._passes(zv, za, tv, ta))
        sv_b = sigma_v.to(dtype)[:, None, :, None, None]
        sa_b = sigma_a.to(dtype)[:, None, None]
        x0v = {k: self._to_x0(v, zv if k != "static" else self.static_video(zv), sv_b)
               for k, (v, _) in outs.items()}
        x0a = {k: self._to_x0(a, za if k != "silent" else self.silent_audio(za), sa_b)
               for k, (_, a) in outs.items()}
        g = self.guidance
        if g.mode == "synccfg":
            dv, da = x0v["joint"], x0a["joint"]
            if "silent" in outs:
                dv = x0v["silent"] + g.sv * (x0v["joint"] - x0v["silent"])
            if "static" in outs:
                da = x0a["static"] + g.sa * (x0a["joint"] - x0a["static"])
        elif g.mode == "cfg":
            dv = x0v["uncond"] + g.sv * (x0v["joint"] - x0v["uncond"])
            da = x0a["uncond"] + g.sa * (x0a["joint"] - x0a["uncond"])
        else:
            dv, da = x0v["joint"], x0a["joint"]
        if g.mode != "cfg" and g.text_cfg != 1.0:
            dv = dv + (g.text_cfg - 1) * (x0v["joint"] - x0v["uncond"])
            da = da + (g.text_cfg - 1) * (x0a["joint"] - x0a["uncond"])
        self.video_estimate = dv.detach()
        return dv, da


def _hold_clean(job: Job, zv, za):
    """Put the given (clean) parts back into the state."""
    if job.clean_video is not None:
        zv = job.clean_video.to(zv)
    elif job.first_frame is not None:
        zv = torch.cat([job.first_frame.to(zv), zv[:, :, 1:]], dim=2)
    if job.clean_audio is not None:
        za = job.clean_audio.to(za)
    return zv, za


def _step_sigmas(job: Job, sigma: float, zv, za):
    """Per-sample / per-frame sigmas for the network (0 where the input is clean)."""
    b, f = zv.shape[0], zv.shape[2]
    sv = torch.full((b, f), float(sigma), dtype=torch.float64, device=zv.device)
    sa = torch.full((b,), float(sigma), dtype=torch.float64, device=za.device)
    if job.clean_video is not None:
        sv.zero_()
    elif job.first_frame is not None:
        sv[:, 0] = 0
    if job.clean_audio is not None:
        sa.zero_()
    return sv, sa


def sample_euler(denoise, zv, za, sigmas, job: Job, callback=None):
    """First-order flow-matching Euler: ``x <- x + (sigma_next - sigma) * velocity``."""
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        zv, za = _hold_clean(job, zv, za)
        dv, da = denoise(zv, za, *_step_sigmas(job, s, zv, za))
        # velocity = (x - x0) / sigma; step to sigma_next
        zv = dv + (s_next / s) * (zv - dv)
        za = da + (s_next / s) * (za - da)
        if callback is not None:
            callback(i, len(sigmas) - 1, zv, za)
    return _hold_clean(job, zv, za)


def sample_dpmpp_2m(denoise, zv, za, sigmas, job: Job, callback=None):
    """DPM-Solver++(2M) on the clean-sample estimate, for flow matching
    (alpha = 1 - sigma, lambda = log(alpha / sigma))."""
    def lam(s):
        return math.log((1 - s) / s)

    prev = None  # (dv, da, h) of the previous step
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        zv, za = _hold_clean(job, zv, za)
        dv, da = denoise(zv, za, *_step_sigmas(job, s, zv, za))
        if s_next == 0:
            zv, za = dv, da
        else:
            s_cur = min(s, 1 - 1e-6)
            h = lam(s_next) - lam(s_cur)
            cv, ca = dv, da
            if prev is not None:
                r = prev[2] / h
                cv = (1 + 1 / (2 * r)) * dv - (1 / (2 * r)) * prev[0]
                ca = (1 + 1 / (2 * r)) * da - (1 / (2 * r)) * prev[1]
            ratio, a_next = s_next / s_cur, 1 - s_next
            zv = ratio * zv - a_next * math.expm1(-h) * cv
            za = ratio * za - a_next * math.expm1(-h) * ca
            prev = (dv, da, h)
        if callback is not None:
            callback(i, len(sigmas) - 1, zv, za)
    return _hold_clean(job, zv, za)


_SOLVER_FUNCS = {"euler": sample_euler, "dpmpp_2m": sample_dpmpp_2m}


def sample(model, cond: Conditioning, noise_video: torch.Tensor, noise_audio: torch.Tensor, *,
           steps: int = 40, shift: float = 5.0, guidance: Optional[Guidance] = None,
           job: Optional[Job] = None, uncond: Optional[Conditioning] = None,
           silent_audio_token=None, blank_video_frame=None, solver: str = "dpmpp_2m",
           callback: Optional[Callable] = None, cancel: Optional[Callable] = None):
    """Generate ``(video_latent, audio_latent)`` from the given noise.

    ``callback(step, total)`` runs after every step; ``cancel()`` runs before
    every step and stops sampling by raising (e.g. :class:`SamplingCancelled`
    or the host's interrupt exception, which is never swallowed).
    """
    if solver not in _SOLVER_FUNCS:
        raise ValueError(f"solver {solver!r} is unknown; use one of {SOLVERS}")
    guidance = guidance or Guidance()
    job = job or Job()
    denoiser = AVDenoiser(model, cond, guidance, job, uncond, silent_audio_token, blank_video_frame)

    def step_hooks(denoise):
        def wrapped(*a):
            if cancel is not None:
                cancel()
            return denoise(*a)
        return wrapped

    def cb(i, n, zv, za):
        if callback is not None:
            callback(i + 1, n)

    sigmas = sigma_schedule(steps, shift)
    with torch.no_grad():
        zv, za = noise_video, noise_audio
        return _SOLVER_FUNCS[solver](step_hooks(denoiser), zv, za, sigmas, job, cb)
