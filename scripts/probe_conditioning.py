"""Probe: does the generated tower use the given (clean) modality?

For a Harmony model file and held-out world clips, at fixed noise levels, this
measures for each job how much the network's clean-sample estimate depends on
the driving input:

* **loss with the true input vs with another clip's input** (x0 MSE on the
  generated part): a model that uses its input has a clearly lower loss with
  the true one (``gain`` = shuffled / true, 1.0 = input ignored);
* **sensitivity**: ``||D(true) - D(shuffled)|| / ||D(true)||``;
* **gradient RMS** of the generated part's loss w.r.t. the driving latent,
  divided by the RMS w.r.t. the generated tower's own noisy input;
* **partner/text output ratio**: in every cross-attention of the generated
  tower, ``||o(partner attention)|| / ||o(text attention)||`` (o's weight only),
  averaged over layers and tokens.

Jobs: V2A (video clean, t_v = 0), A2V (audio clean, t_a = 0), I2AV (latent
frame 0 clean, t = 0 on that frame; loss on frames 1..N), and the joint
setting for reference (both noisy at the same sigma).

    python scripts/probe_conditioning.py [--model FILE] [--n 4] > docs/training/probe_before.txt
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harmony import world  # noqa: E402
from harmony.model import Conditioning  # noqa: E402
from harmony.pipeline import HarmonyPipeline  # noqa: E402

SIGMAS = (0.3, 0.6, 0.9)


def load_clips(pipe, n_per_split: int, seconds: float = 3.0):
    clips = []
    for split in world.SPLITS:
        for seed in world.heldout_seeds(split, n_per_split):
            clips.append(world.render(world.sample_scene(seed, split, seconds)))
    frames = torch.stack([torch.from_numpy(c.frames) for c in clips])
    waves = torch.stack([torch.from_numpy(c.wave) for c in clips])
    with torch.no_grad():
        v0 = pipe.codecs.video.encode(frames)
        a0 = pipe.codecs.audio.encode(waves)
        refs = [pipe.codecs.audio.encode(torch.from_numpy(c.ref_voice[None]))[0]
                if c.ref_voice is not None else None for c in clips]
        cond = pipe.conditioner([c.prompt for c in clips], [c.audio_caption for c in clips],
                                [c.transcript for c in clips], refs)
    return clips, v0, a0, cond


class CrossRecorder:
    """Record ``||o(partner attention)|| / ||o(text attention)||`` (o's weight only, per query
    token, averaged) in every cross-attention with the partner, by wrapping
    ``harmony.interaction.cross_attention_with_partner`` (the one place the towers meet)."""

    def __init__(self):
        self.records = []  # (tower, ratio)
        self.tower_of = {}
        from harmony import interaction
        self._module = interaction
        self._orig = interaction.cross_attention_with_partner

    def __enter__(self):
        rec, orig = self, self._orig
        from harmony.rope import apply_rope

        def wrapped(block, x, context, partner, q_rope, k_rope, mask=None, q_start=0):
            with torch.no_grad():
                ca = block.cross_attn
                q = ca.queries(block.norm3(x))
                text = ca.text_attention(q, context)[:, q_start:]
                k, v = ca.partner_keys_values(partner, k_rope)
                part = ca.attend(apply_rope(q[:, q_start:], q_rope), k, v, mask)
                w = ca.o.weight
                nt = (text.flatten(2) @ w.t()).norm(dim=-1)
                npart = (part.flatten(2) @ w.t()).norm(dim=-1)
                rec.records.append((rec.tower_of.get(id(ca), "?"),
                                    float((npart / nt.clamp(min=1e-8)).mean())))
            return orig(block, x, context, partner, q_rope, k_rope, mask, q_start)

        self._module.cross_attention_with_partner = wrapped
        return self

    def __exit__(self, *exc):
        self._module.cross_attention_with_partner = self._orig

    def paused(self):
        import contextlib

        @contextlib.contextmanager
        def cm():
            current = self._module.cross_attention_with_partner
            self._module.cross_attention_with_partner = self._orig
            try:
                yield
            finally:
                self._module.cross_attention_with_partner = current
        return cm()


def x0_mse(pred, target, frames=None):
    if frames is not None:
        pred, target = pred[:, :, frames], target[:, :, frames]
    return float(((pred - target) ** 2).mean())


def probe(model, v0, a0, cond: Conditioning, sigma: float, gen: torch.Generator, recorder: CrossRecorder):
    b, f = v0.shape[0], v0.shape[2]
    nv = torch.randn(v0.shape, generator=gen)
    na = torch.randn(a0.shape, generator=gen)
    zv = (1 - sigma) * v0 + sigma * nv
    za = (1 - sigma) * a0 + sigma * na
    shuf = torch.roll(torch.arange(b), 1)  # another clip's input (different scene)
    tvn = torch.full((b, f), sigma * 1000)
    tan = torch.full((b,), sigma * 1000)
    tv0, ta0 = torch.zeros(b, f), torch.zeros(b)
    rows = {}

    def run(zv_, za_, tv_, ta_, tag):
        recorder.records.clear()
        with torch.no_grad():
            ov, oa = model(zv_, za_, tv_, ta_, cond)
        ratios = {t: [r for tw, r in recorder.records if tw == t] for t in ("video", "audio")}
        return ov, oa, {t: sum(r) / max(1, len(r)) for t, r in ratios.items()}

    # joint
    ov_j, oa_j, rj = run(zv, za, tvn, tan, "joint")
    rows["joint"] = dict(video_mse=x0_mse(ov_j, v0), audio_mse=x0_mse(oa_j, a0),
                         v_partner_ratio=rj["video"], a_partner_ratio=rj["audio"])
    # V2A
    _, oa_t, rt = run(v0, za, tv0, tan, "v2a")
    _, oa_s, _ = run(v0[shuf], za, tv0, tan, "v2a-shuf")
    static = v0[:, :, :1].expand_as(v0)
    _, oa_st, _ = run(static, za, tv0, tan, "v2a-static")
    rows["V2A"] = dict(mse_true=x0_mse(oa_t, a0), mse_shuffled=x0_mse(oa_s, a0), mse_static=x0_mse(oa_st, a0),
                       mse_joint=rows["joint"]["audio_mse"],
                       sensitivity=float((oa_t - oa_s).norm() / oa_t.norm()),
                       a_partner_ratio=rt["audio"])
    # A2V
    ov_t, _, rt = run(zv, a0, tvn, ta0, "a2v")
    ov_s, _, _ = run(zv, a0[shuf], tvn, ta0, "a2v-shuf")
    rows["A2V"] = dict(mse_true=x0_mse(ov_t, v0), mse_shuffled=x0_mse(ov_s, v0),
                       mse_joint=rows["joint"]["video_mse"],
                       sensitivity=float((ov_t - ov_s).norm() / ov_t.norm()),
                       v_partner_ratio=rt["video"])
    # I2AV: frame 0 clean
    tvi = tvn.clone()
    tvi[:, 0] = 0
    zvi = torch.cat([v0[:, :, :1], zv[:, :, 1:]], 2)
    zvs = torch.cat([v0[shuf][:, :, :1], zv[:, :, 1:]], 2)
    ov_t, _, _ = run(zvi, za, tvi, tan, "i2av")
    ov_s, _, _ = run(zvs, za, tvi, tan, "i2av-shuf")
    rest = slice(1, None)
    copy = v0[:, :, :1].expand_as(v0)
    rows["I2AV"] = dict(mse_true=x0_mse(ov_t, v0, rest), mse_shuffled=x0_mse(ov_s, v0, rest),
                        mse_joint=x0_mse(ov_j, v0, rest), mse_copy_frame0=x0_mse(copy, v0, rest),
                        sensitivity=float((ov_t[:, :, rest] - ov_s[:, :, rest]).norm() / ov_t[:, :, rest].norm()))

    # gradients: generated part's loss w.r.t. the driving latent vs its own noisy input
    def grad_ratio(job):
        dv = v0.clone().requires_grad_(True)
        da = a0.clone().requires_grad_(True)
        zvg, zag = zv.clone().requires_grad_(True), za.clone().requires_grad_(True)
        if job == "V2A":
            _, oa = model(dv, zag, tv0, tan, cond)
            loss = ((oa - a0) ** 2).mean()
            loss.backward()
            return float(dv.grad.pow(2).mean().sqrt() / zag.grad.pow(2).mean().sqrt())
        if job == "A2V":
            ov, _ = model(zvg, da, tvn, ta0, cond)
            loss = ((ov - v0) ** 2).mean()
            loss.backward()
            return float(da.grad.pow(2).mean().sqrt() / zvg.grad.pow(2).mean().sqrt())
        zin = torch.cat([dv[:, :, :1], zvg[:, :, 1:]], 2)
        ov, _ = model(zin, za, tvi, tan, cond)
        loss = ((ov[:, :, 1:] - v0[:, :, 1:]) ** 2).mean()
        loss.backward()
        return float(dv.grad[:, :, :1].pow(2).mean().sqrt() / zvg.grad[:, :, 1:].pow(2).mean().sqrt())

    with recorder.paused():
        for job in ("V2A", "A2V", "I2AV"):
            rows[job]["grad_ratio"] = grad_ratio(job)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="model file (default: the bundled tiny model)")
    ap.add_argument("--n", type=int, default=4, help="held-out clips per split")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    pipe = HarmonyPipeline.from_pretrained(args.model, dtype="fp32", device="cpu", log=lambda m: None)
    model = pipe.model.float().eval()
    clips, v0, a0, cond = load_clips(pipe, args.n)
    rec = CrossRecorder()
    for name, tower in (("video", model.video_model), ("audio", model.audio_model)):
        for blk in tower.blocks:
            rec.tower_of[id(blk.cross_attn)] = name
    print(f"model: {args.model or 'bundled harmony_tiny.safetensors'}; {len(clips)} held-out clips "
          f"({args.n} per split), x0 MSE on normalised latents; noise seed {args.seed}")
    print("gain = mse_shuffled / mse_true (1.00 = the driving input is ignored)")
    gen = torch.Generator().manual_seed(args.seed)
    with rec:
        for sigma in SIGMAS:
            rows = probe(model, v0, a0, cond, sigma, gen, rec)
            print(f"\nsigma = {sigma}")
            j = rows["joint"]
            print(f"  joint : video_mse {j['video_mse']:.4f}  audio_mse {j['audio_mse']:.4f}  "
                  f"partner/text out: video {j['v_partner_ratio']:.3f} audio {j['a_partner_ratio']:.3f}")
            r = rows["V2A"]
            print(f"  V2A   : audio_mse true {r['mse_true']:.4f}  shuffled video {r['mse_shuffled']:.4f}  "
                  f"static video {r['mse_static']:.4f}  (joint {r['mse_joint']:.4f})  "
                  f"gain {r['mse_shuffled'] / r['mse_true']:.3f}  sensitivity {r['sensitivity']:.3f}  "
                  f"grad(driving)/grad(own) {r['grad_ratio']:.3f}  partner/text out {r['a_partner_ratio']:.3f}")
            r = rows["A2V"]
            print(f"  A2V   : video_mse true {r['mse_true']:.4f}  shuffled audio {r['mse_shuffled']:.4f}  "
                  f"(joint {r['mse_joint']:.4f})  gain {r['mse_shuffled'] / r['mse_true']:.3f}  "
                  f"sensitivity {r['sensitivity']:.3f}  grad(driving)/grad(own) {r['grad_ratio']:.3f}  "
                  f"partner/text out {r['v_partner_ratio']:.3f}")
            r = rows["I2AV"]
            print(f"  I2AV  : video_mse frames 1.. true frame0 {r['mse_true']:.4f}  other clip's frame0 "
                  f"{r['mse_shuffled']:.4f}  noisy frame0 (joint) {r['mse_joint']:.4f}  "
                  f"copy-frame0 baseline {r['mse_copy_frame0']:.4f}  gain {r['mse_shuffled'] / r['mse_true']:.3f}  "
                  f"sensitivity {r['sensitivity']:.3f}  grad(frame0)/grad(own) {r['grad_ratio']:.3f}")


if __name__ == "__main__":
    main()
