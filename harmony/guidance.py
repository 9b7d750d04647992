"""Guidance: SyncCFG (the paper), plain CFG and text CFG, as one guided denoiser.

A guided denoiser maps the noisy pair ``(zv, za)`` and per-frame / per-clip
sigmas to clean-sample estimates ``(Dv, Da)``. With ``D(.)`` the network's
clean-sample estimate (a velocity output ``u = noise - x0`` is converted with
``D = z - sigma * u``):

* ``none``: ``D(joint)``;
* ``cfg`` (the baseline): ``D_u + s * (D_c - D_u)`` with ``D_u`` the prediction
  without text, ``s = sv`` for video and ``sa`` for audio (here they are text-CFG
  scales; ``text_cfg`` is not used);
* ``synccfg``: the video is contrasted with a *driven* prediction whose partner
  audio is the silent anchor (clean, ``t_a = 0``), the audio with one whose
  partner video is the static anchor (clean, ``t_v = 0``)::

      Dv = Dv(zv | silent audio) + sv * (Dv(joint) - Dv(zv | silent audio))
      Da = Da(za | static video) + sa * (Da(joint) - Da(za | static video))

* the *timing anchor* on top of ``synccfg`` (ours, not the paper's; ``st`` > 0, A2V and V2A only):
  the generated modality is also pushed away from its prediction given the driving partner
  ``EARLY_FRAMES`` video latent frames early (clean, ``t = 0``)::

      D += st * (D(joint) - D(| partner early))

  what an early partner would give too (a mouth that opens before the syllable, a chime before
  the flash) is weakened; what only the partner's own timing gives is strengthened.
* text CFG on top of ``synccfg`` / ``none``: ``+ (text_cfg - 1) * (D(joint) - D(no text))``.

Scale 1 means no guidance in every mode. All passes of one step go through
the network as **one batched forward** (``batched=False`` runs them one by one).

Null anchors (the paper leaves them open; our rules):

* *silent audio*: the audio codec's latent of digital silence, one token
  repeated over the clip (``silent_audio_token``);
* *static video*: "nothing moves": the first latent frame of the current video
  estimate frozen over all frames. The estimate is the given first frame
  (I2AV) or driving video (V2A) when there is one, else the previous step's
  clean-video estimate; before the first estimate exists it is the codec's
  blank frame (``blank_video_frame``).
* *early partner* (timing anchor): the driving audio advanced by ``EARLY_FRAMES`` video
  frames' worth of audio tokens, its end filled with the silent token (A2V); the driving
  video advanced by ``EARLY_FRAMES`` latent frames, its last frame held (V2A).

Numerics: the caller's latents and sigmas stay as they are (the sampler keeps
them fp32); the network sees the latents in its compute dtype and the
timesteps ``t = 1000 * sigma`` in fp32; its outputs are cast back to fp32
before any arithmetic.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .jobs import Job, tuned_settings
from .model import Conditioning

GUIDANCE_MODES = ("synccfg", "cfg", "none")

DEFAULT_SV = 3.0
"""Default video guidance scale (paper: 3)."""
DEFAULT_SA = 2.0
"""Default audio guidance scale (paper: 2)."""
DEFAULT_ST = 0.0
"""Default timing-anchor scale: 0, the paper's SyncCFG (a model file may record its own per job)."""
EARLY_FRAMES = 3
"""How early the timing anchor's partner is, in video latent frames: 3 (0.19 s at the bundled model's
16 fps) is the lead of the early mouth sway of its A2V (notebook, L1). A negative value is a late partner
(the lab's `scripts/control_sweep.py --early-frames` sets it)."""


def default_scales(cfg=None, job: Optional[str] = None) -> tuple[float, float]:
    """``(sv, sa)`` for a model and a job: the scales its file records as tuned for that job
    (jobs.tuned_settings), else the paper's."""
    tuned = tuned_settings(cfg, job) if cfg is not None else {}
    return tuned.get("sv", DEFAULT_SV), tuned.get("sa", DEFAULT_SA)


def default_timing(cfg=None, job: Optional[str] = None) -> float:
    """The timing-anchor scale ``st`` for a model and a job: its file's tuned one, else 0 (off)."""
    return (tuned_settings(cfg, job) if cfg is not None else {}).get("st", DEFAULT_ST)


@dataclass
class Guidance:
    """Guidance settings. ``sv``/``sa``: video/audio scales (1 = no guidance);
    ``text_cfg``: text CFG on top (1 = off); ``batched``: one forward for all passes;
    ``st``: the timing anchor's scale on top of SyncCFG (0 = off; A2V and V2A)."""

    mode: str = "synccfg"
    sv: float = DEFAULT_SV
    sa: float = DEFAULT_SA
    text_cfg: float = 1.0
    batched: bool = True
    st: float = DEFAULT_ST

    def __post_init__(self):
        if self.mode not in GUIDANCE_MODES:
            raise ValueError(f"guidance mode {self.mode!r} is unknown; use one of {GUIDANCE_MODES}")

    @property
    def needs_uncond(self) -> bool:
        return self.mode == "cfg" or self.text_cfg != 1.0


def velocity_to_x0(out: torch.Tensor, z: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Clean sample from a velocity ``u = noise - x0`` at ``z = (1 - sigma) x0 + sigma noise``."""
    return z - sigma * out


def combine(g: Guidance, x0v: dict, x0a: dict):
    """The guidance arithmetic on the passes' clean estimates (dicts keyed by pass name:
    ``joint``, ``silent``, ``static``, ``early``, ``uncond``) -> ``(Dv, Da)``."""
    if g.mode == "cfg":
        dv = x0v["uncond"] + g.sv * (x0v["joint"] - x0v["uncond"])
        da = x0a["uncond"] + g.sa * (x0a["joint"] - x0a["uncond"])
        return dv, da
    dv, da = x0v["joint"], x0a["joint"]
    if g.mode == "synccfg":
        if "silent" in x0v:
            dv = x0v["silent"] + g.sv * (x0v["joint"] - x0v["silent"])
        if "static" in x0a:
            da = x0a["static"] + g.sa * (x0a["joint"] - x0a["static"])
        if "early" in x0v:  # the timing anchor (the driven modality's term; the given one is held anyway)
            dv = dv + g.st * (x0v["joint"] - x0v["early"])
            da = da + g.st * (x0a["joint"] - x0a["early"])
    if g.text_cfg != 1.0:
        dv = dv + (g.text_cfg - 1) * (x0v["joint"] - x0v["uncond"])
        da = da + (g.text_cfg - 1) * (x0a["joint"] - x0a["uncond"])
    return dv, da


class SyncCFG:
    """Guided clean-sample estimates ``(Dv, Da)`` for noisy ``(zv, za)`` at given sigmas.

    Wraps a :class:`~harmony.model.HarmonyModel` (anything called as
    ``model(zv, za, t_video, t_audio, cond)``); builds the guidance passes of
    ``guidance.mode`` and runs them as one batch. ``dtype``: the network's
    compute dtype (its layers cast their weights to it; default: the dtype of the
    latents given to each call).
    """

    def __init__(self, model, cond: Conditioning, guidance: Guidance, job: Optional[Job] = None,
                 uncond: Optional[Conditioning] = None,
                 silent_audio_token: Optional[torch.Tensor] = None,
                 blank_video_frame: Optional[torch.Tensor] = None,
                 dtype: Optional[torch.dtype] = None):
        self.model, self.cond, self.uncond = model, cond, uncond
        self.guidance, self.job = guidance, job or Job()
        self.prediction = model.cfg.prediction
        if guidance.needs_uncond and uncond is None:
            raise ValueError("plain CFG / text CFG need `uncond` (the conditioning without text)")
        if guidance.mode == "synccfg" and silent_audio_token is None:
            raise ValueError("SyncCFG needs `silent_audio_token` (the silent-audio anchor)")
        self.silent = silent_audio_token
        self.blank = blank_video_frame
        self.dtype = dtype
        self.video_estimate: Optional[torch.Tensor] = None
        self.forwards = 0  # network evaluations (batched counts once)
        self._prepared_conds: dict = {}  # id(cond) -> (cond, prepared): computed once per run
        self._batched_conds: dict = {}

    # -- anchors -----------------------------------------------------------
    def static_video(self, zv: torch.Tensor) -> torch.Tensor:
        """The static-video anchor: one clean latent frame repeated over all frames."""
        if self.job.clean_video is not None:
            first = self.job.clean_video[:, :, :1]
        elif self.job.first_frame is not None:
            first = self.job.first_frame
        elif self.video_estimate is not None:
            first = self.video_estimate[:, :, :1]
        elif self.blank is not None:
            first = self.blank.expand(zv.shape[0], -1, 1, -1, -1)
        else:
            first = torch.zeros_like(zv[:, :, :1])
        return first.to(zv).expand_as(zv)

    def silent_audio(self, za: torch.Tensor) -> torch.Tensor:
        """The silent-audio anchor: the silence token repeated over the clip."""
        return self.silent.to(za).reshape(1, 1, -1).expand_as(za)

    def early_audio(self, za: torch.Tensor, n_frames: int) -> torch.Tensor:
        """The driving audio ``EARLY_FRAMES`` video frames early: ``za`` ``[B, T, C]`` advanced by
        that many frames' worth of tokens, its end silent (late: delayed, its start silent)."""
        n = za.shape[1]
        k = max(-n, min(n, round(EARLY_FRAMES * n / n_frames)))
        pad = self.silent_audio(za[:, :abs(k)])
        return torch.cat([za[:, k:], pad], dim=1) if k >= 0 else torch.cat([pad, za[:, :k]], dim=1)

    @staticmethod
    def early_video(zv: torch.Tensor) -> torch.Tensor:
        """The driving video ``EARLY_FRAMES`` latent frames early: ``zv`` ``[B, C, F, H, W]``
        advanced, its last frame held (late: delayed, its first frame held)."""
        f = zv.shape[2]
        k = max(1 - f, min(f - 1, EARLY_FRAMES))
        if k >= 0:
            return torch.cat([zv[:, :, k:], zv[:, :, -1:].expand(-1, -1, k, -1, -1)], dim=2)
        return torch.cat([zv[:, :, :1].expand(-1, -1, -k, -1, -1), zv[:, :, :k]], dim=2)

    # -- passes ------------------------------------------------------------
    def passes(self, zv, za, sigma_v, sigma_a):
        """List of ``(name, zv, za, sigma_v, sigma_a, cond)`` for this step: what each
        pass feeds the network (the anchors are clean, so their sigma is 0)."""
        g, zero_v, zero_a = self.guidance, torch.zeros_like(sigma_v), torch.zeros_like(sigma_a)
        out = [("joint", zv, za, sigma_v, sigma_a, self.cond)]
        if g.mode == "synccfg":
            if self.job.clean_video is None:  # video is generated: contrast with silence
                out.append(("silent", zv, self.silent_audio(za), sigma_v, zero_a, self.cond))
            if self.job.clean_audio is None:  # audio is generated: contrast with stillness
                out.append(("static", self.static_video(zv), za, zero_v, sigma_a, self.cond))
            if g.st != 0 and (self.job.clean_audio is None) != (self.job.clean_video is None):
                # A2V / V2A: contrast with the driving partner early (za / zv hold the clean input)
                early = ((zv, self.early_audio(za, zv.shape[2]), sigma_v, zero_a) if self.job.clean_audio is not None
                         else (self.early_video(zv), za, zero_v, sigma_a))
                out.append(("early", *early, self.cond))
        if g.needs_uncond:
            out.append(("uncond", zv, za, sigma_v, sigma_a, self.uncond))
        return out

    def run(self, passes, dt: torch.dtype = torch.float32):
        """Network outputs per pass name, in fp32 (one batched forward when allowed);
        the network sees the latents in ``dt`` and the timesteps in fp32."""

        def net(zv, za, sigma_v, sigma_a, cond):  # network time t = 1000 * sigma, in fp32
            v, a = self.model(zv.to(dt), za.to(dt), (sigma_v * 1000).float(), (sigma_a * 1000).float(), cond)
            return v.float(), a.float()

        device = passes[0][1].device
        if self.guidance.batched and len(passes) > 1:
            self.forwards += 1
            n = passes[0][1].shape[0]
            v, a = net(*(torch.cat([p[i] for p in passes]) for i in (1, 2, 3, 4)),
                       self._batched_cond(passes, dt, device))
            return {p[0]: pair for p, pair in zip(passes, zip(v.split(n), a.split(n)))}
        result = {}
        for p in passes:
            self.forwards += 1
            result[p[0]] = net(*p[1:5], self._prepared(p[5], dt, device))
        return result

    def _prepared(self, cond, dt, device):
        """``cond`` with everything that depends only on it (both towers' text embeddings, the
        reference-voice tokens) computed once per sampling run through ``model.prepare``
        (a model without ``prepare`` gets the raw conditioning)."""
        key = (id(cond), dt, device)
        if key not in self._prepared_conds:
            prepare = getattr(self.model, "prepare", None)
            self._prepared_conds[key] = (cond, prepare(cond, dt, device) if prepare is not None else cond)
        return self._prepared_conds[key][1]

    def _batched_cond(self, passes, dt, device):
        """The conditioning of one batched forward; the passes are the same at every step."""
        key = (tuple(p[0] for p in passes), dt, device)
        if key not in self._batched_conds:
            items = [self._prepared(p[5], dt, device) for p in passes]
            self._batched_conds[key] = type(items[0]).cat(items)
        return self._batched_conds[key]

    def __call__(self, zv, za, sigma_v, sigma_a):
        """``sigma_v`` ``[B, F]`` (per latent frame), ``sigma_a`` ``[B]``; returns ``(Dv, Da)``
        in fp32 (or in the latents' dtype when that is wider)."""
        net_dtype = self.dtype or zv.dtype
        work = torch.promote_types(zv.dtype, torch.float32)
        zv, za = zv.to(work), za.to(work)
        sigma_v, sigma_a = torch.as_tensor(sigma_v), torch.as_tensor(sigma_a)
        passes = self.passes(zv, za, sigma_v, sigma_a)
        outs = self.run(passes, net_dtype)
        if self.prediction == "x0":
            x0v = {k: v.to(work) for k, (v, _) in outs.items()}
            x0a = {k: a.to(work) for k, (_, a) in outs.items()}
        else:  # velocity: convert with each pass's own input latents and sigmas
            x0v, x0a = {}, {}
            for name, pass_zv, pass_za, pass_sigma_v, pass_sigma_a, _ in passes:
                v, a = outs[name]
                x0v[name] = velocity_to_x0(v.to(work), pass_zv, pass_sigma_v.to(work)[:, None, :, None, None])
                x0a[name] = velocity_to_x0(a.to(work), pass_za, pass_sigma_a.to(work)[:, None, None])
        dv, da = combine(self.guidance, x0v, x0a)
        self.video_estimate = dv.detach()
        return dv, da

