"""Partner use: how much each tower's clean-sample estimate depends on the other modality.

For held-out world clips at fixed noise levels, the network's x0 estimate of one
modality is scored (MSE on normalised latents) twice: with the clip's own partner
latent, and with another clip's (the next clip of the same split). ``gain`` =
MSE(other clip's partner) / MSE(own partner): 1.0 means the partner is ignored;
above 1 means the tower reads its partner, i.e. it has learned the audio-video
correspondence. Three settings:

* ``joint``: both modalities noisy at sigma (T2AV); the partner swapped is the
  noisy partner latent built from the other clip with the same noise;
* ``V2A``: video clean (``t_v = 0``), audio noisy: the audio's gain;
* ``A2V``: audio clean (``t_a = 0``), video noisy: the video's gain;
* ``I2AV``: latent frame 0 clean (``t_v = 0`` there), the rest noisy: the gain of frames
  1..N when frame 0 comes from another clip.

Each setting runs with the model's own weights for its job when it has them
(``harmony.job_weights``), as sampling does.

This is a direct, low-variance measure of what the ablation's architecture and
loss changes are meant to improve; the decoded-media sync metrics
(``harmony.evaluate``) stay the primary result.
"""
from __future__ import annotations

import json

import torch

from .conditioner import Conditioner
from .job_weights import job_weights
from .model import Conditioning, HarmonyModel

SIGMAS = (0.3, 0.6, 0.9)


def x0_estimate(out: torch.Tensor, z: torch.Tensor, sigma, prediction: str) -> torch.Tensor:
    """The network's clean-sample estimate: the output itself (x0 models) or
    ``z - sigma * u`` for a velocity ``u = noise - x0``."""
    return out if prediction == "x0" else z - sigma * out


def _mse(pred, target) -> float:
    return float(((pred - target) ** 2).mean())


@torch.no_grad()
def partner_gains(model, v0: torch.Tensor, a0: torch.Tensor, cond: Conditioning, other: torch.Tensor,
                  sigmas=SIGMAS, seed: int = 0, own_mse: dict | None = None) -> dict:
    """``{setting: {sigma: gain}}`` plus ``{setting: {"mean": ...}}`` (mean over sigmas).
    ``other[i]``: the clip whose partner replaces clip i's (never i itself). ``own_mse``: a dict
    filled with ``{setting: {sigma: MSE with the clip's own partner}}`` (the quality beside the
    reliance: a model that ignores its own noisy input can have a large gain and a poor MSE)."""
    if bool((other == torch.arange(len(other))).any()):
        raise ValueError("partner_gains: `other` must pair every clip with a different clip")
    pred = model.cfg.prediction
    b, f = v0.shape[0], v0.shape[2]
    gen = torch.Generator().manual_seed(seed)
    out = {"joint": {}, "V2A": {}, "A2V": {}, "I2AV": {}}
    mse = {k: {} for k in out}
    for sigma in sigmas:
        nv, na = torch.randn(v0.shape, generator=gen), torch.randn(a0.shape, generator=gen)
        zv, za = (1 - sigma) * v0 + sigma * nv, (1 - sigma) * a0 + sigma * na
        zv_o, za_o = (1 - sigma) * v0[other] + sigma * nv, (1 - sigma) * a0[other] + sigma * na
        tv, ta = torch.full((b, f), sigma * 1000.0), torch.full((b,), sigma * 1000.0)
        tv0, ta0 = torch.zeros(b, f), torch.zeros(b)

        def run(zv_, za_, tv_, ta_, job="T2AV"):  # a model's own weights for the job, if it has them
            with job_weights(model, job):
                ov, oa = model(zv_, za_, tv_, ta_, cond)
            return (x0_estimate(ov.float(), zv_, tv_[:, None, :, None, None] / 1000, pred),
                    x0_estimate(oa.float(), za_, ta_[:, None, None] / 1000, pred))

        dv, da = run(zv, za, tv, ta)
        dv_o, _ = run(zv, za_o, tv, ta)  # video with another clip's (noisy) audio
        _, da_o = run(zv_o, za, tv, ta)  # audio with another clip's (noisy) video
        out["joint"][sigma] = 0.5 * (_mse(dv_o, v0) / _mse(dv, v0) + _mse(da_o, a0) / _mse(da, a0))
        mse["joint"][sigma] = 0.5 * (_mse(dv, v0) + _mse(da, a0))
        _, da = run(v0, za, tv0, ta, "V2A")
        _, da_o = run(v0[other], za, tv0, ta, "V2A")
        out["V2A"][sigma], mse["V2A"][sigma] = _mse(da_o, a0) / _mse(da, a0), _mse(da, a0)
        dv, _ = run(zv, a0, tv, ta0, "A2V")
        dv_o, _ = run(zv, a0[other], tv, ta0, "A2V")
        out["A2V"][sigma], mse["A2V"][sigma] = _mse(dv_o, v0) / _mse(dv, v0), _mse(dv, v0)
        if f > 1:  # I2AV: latent frame 0 clean (t = 0 there), scored on frames 1..N
            tv_i = tv.clone()
            tv_i[:, 0] = 0
            zv_i, zv_io = zv.clone(), zv.clone()
            zv_i[:, :, 0], zv_io[:, :, 0] = v0[:, :, 0], v0[other][:, :, 0]
            dv, _ = run(zv_i, za, tv_i, ta, "I2AV")
            dv_o, _ = run(zv_io, za, tv_i, ta, "I2AV")
            out["I2AV"][sigma] = _mse(dv_o[:, :, 1:], v0[:, :, 1:]) / _mse(dv[:, :, 1:], v0[:, :, 1:])
            mse["I2AV"][sigma] = _mse(dv[:, :, 1:], v0[:, :, 1:])
    if own_mse is not None:
        own_mse.update({k: v for k, v in mse.items() if v})
    out = {k: v for k, v in out.items() if v}
    for setting in out:
        out[setting]["mean"] = sum(out[setting][s] for s in sigmas) / len(sigmas)
    return out


def heldout_clips(n_per_split: int, seconds: float, splits=None):
    """Held-out world clips of every split (or of ``splits``: a name, or a list of names), and
    ``other``: each clip paired with the next one of its split (``n_per_split`` >= 2)."""
    from . import world

    if n_per_split < 2:
        raise ValueError(f"heldout_clips: n_per_split must be >= 2 (a clip needs another of its split), "
                         f"got {n_per_split}")
    splits = world.SPLITS if splits is None else ([splits] if isinstance(splits, str) else list(splits))
    unknown = [s for s in splits if s not in world.SPLITS]
    if unknown:
        raise ValueError(f"heldout_clips: unknown splits {unknown}; expected some of {world.SPLITS}")
    clips, other = [], []
    for split in splits:
        start = len(clips)
        seeds = world.heldout_seeds(split, n_per_split)
        clips += [world.render(world.sample_scene(s, split, seconds)) for s in seeds]
        other += [start + (i + 1) % len(seeds) for i in range(len(seeds))]
    return clips, torch.tensor(other)


@torch.no_grad()
def encode_clips(pipe, clips):
    """``(v0, a0, cond)``: the clips through the pipeline's codecs and its text encoder."""
    v0 = pipe.codecs.video.encode(torch.stack([torch.from_numpy(c.frames) for c in clips]))
    a0 = pipe.codecs.audio.encode(torch.stack([torch.from_numpy(c.wave) for c in clips]))
    refs = [pipe.codecs.audio.encode(torch.from_numpy(c.ref_voice[None]))[0] if c.ref_voice is not None
            else None for c in clips]
    cond = pipe.conditioner([c.prompt for c in clips], [c.audio_caption for c in clips],
                            [c.transcript for c in clips], refs)
    return v0, a0, cond


class PartnerProbe:
    """Partner use of the EMA weights during training (`partner_gains` on held-out
    clips), one JSON line per call in ``path``: step, wall / CPU seconds, gains per setting and sigma."""

    def __init__(self, cfg, codecs, n_clips: int, seconds: float, split: str, path: str):
        self.cfg, self.path = cfg, path
        clips, self.other = heldout_clips(n_clips, seconds, splits=split or None)
        video_codec, audio_codec = codecs
        with torch.no_grad():
            self.v0 = video_codec.encode(torch.stack([torch.from_numpy(c.frames) for c in clips]).to(
                video_codec.latent_mean.device)).cpu()
            self.a0 = audio_codec.encode(torch.stack([torch.from_numpy(c.wave) for c in clips])).cpu()
        self.clips = clips
        self.model, self.text = HarmonyModel(cfg), Conditioner(cfg)

    @torch.no_grad()
    def __call__(self, ema: dict, step: int, wall_s: float, cpu_s: float) -> dict:
        self.model.load_state_dict({k[6:]: v.cpu() for k, v in ema.items() if k.startswith("model.")})
        self.text.load_state_dict({k[5:]: v.cpu() for k, v in ema.items() if k.startswith("text.")})
        self.model.eval(), self.text.eval()
        c = self.clips
        cond = self.text([x.prompt for x in c], [x.audio_caption for x in c], [x.transcript for x in c],
                         [None] * len(c))
        own = {}
        gains = partner_gains(self.model, self.v0, self.a0, cond, self.other, own_mse=own)
        row = {"step": step, "wall_s": round(wall_s, 1), "cpu_s": round(cpu_s, 1),
               **{k: {str(s): round(g, 4) for s, g in v.items()} for k, v in gains.items()},
               "own_mse": {k: {str(s): round(m, 5) for s, m in v.items()} for k, v in own.items()}}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        print("probe step {step}: ".format(step=step) + ", ".join(
            f"{k} {v['0.6']:.3f}" for k, v in row.items() if isinstance(v, dict) and k != "own_mse"), flush=True)
        return row
