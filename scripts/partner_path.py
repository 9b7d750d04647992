"""Is the cross-tower path used? For a model file, on held-out clips of a split (V2A or A2V,
the driven side at one sigma): per layer, the partner attention's output norm against the text
attention's, the entropy of the queries' attention over their window against the uniform
entropy, and the gradient of the driven side's x0 loss with respect to the clean partner latent
against the gradient with respect to the driven side's own noisy input.

    python scripts/partner_path.py MODEL --job V2A --split ambient --sigma 0.9
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import harmony.interaction as interaction  # noqa: E402
from harmony.pipeline import HarmonyPipeline  # noqa: E402
from harmony.probe import encode_clips, heldout_clips  # noqa: E402
from harmony.rope import apply_rope  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--job", choices=("V2A", "A2V"), default="V2A")
    ap.add_argument("--split", default="ambient")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--sigma", type=float, default=0.9)
    ap.add_argument("-n", type=int, default=8)
    a = ap.parse_args()
    pipe = HarmonyPipeline.from_pretrained(a.model)
    model = pipe.model.float().eval()
    clips, _ = heldout_clips(a.n, a.seconds, splits=a.split)
    v0, a0, cond = encode_clips(pipe, clips)
    b, f = v0.shape[0], v0.shape[2]
    layers = []
    original = interaction.cross_attention_with_partner

    def recorded(block, x, context, partner, q_rope, k_rope, mask=None, q_start=0):
        ca = block.cross_attn
        with torch.no_grad():
            q = ca.queries(block.norm3(x))
            text = ca.text_attention(q, context)
            k, v = ca.partner_keys_values(partner, k_rope)
            qq = apply_rope(q[:, q_start:], q_rope)
            part = ca.attend(qq, k, v, mask)
            logits = torch.einsum("blhd,bmhd->bhlm", qq, k) / qq.shape[-1] ** 0.5
            if mask is not None:
                logits = logits.masked_fill(~mask, float("-inf"))
            p = logits.softmax(-1)
            ent = -(p.clamp_min(1e-12).log() * p).sum(-1).mean()
            n_keys = mask.sum(-1).float() if mask is not None else torch.tensor(float(k.shape[1]))
            layers.append({"queries": "audio" if q_start else "video", "partner_over_text":
                           round(float(part.norm() / text[:, q_start:].norm()), 3),
                           "entropy_over_uniform": round(float(ent / n_keys.log().mean()), 3)})
        return original(block, x, context, partner, q_rope, k_rope, mask, q_start)

    interaction.cross_attention_with_partner = recorded
    gen = torch.Generator().manual_seed(0)
    s = a.sigma
    if a.job == "V2A":
        clean, noisy = v0.clone().requires_grad_(True), ((1 - s) * a0 + s * torch.randn(a0.shape, generator=gen))
        noisy.requires_grad_(True)
        _, out = model(clean, noisy, torch.zeros(b, f), torch.full((b,), s * 1000), cond)
        loss = ((out - a0) ** 2).mean()
    else:
        noisy = ((1 - s) * v0 + s * torch.randn(v0.shape, generator=gen)).requires_grad_(True)
        clean = a0.clone().requires_grad_(True)
        out, _ = model(noisy, clean, torch.full((b, f), s * 1000), torch.zeros(b), cond)
        loss = ((out - v0) ** 2).mean()
    loss.backward()
    interaction.cross_attention_with_partner = original
    rms = lambda t: float(t.grad.pow(2).mean().sqrt())  # noqa: E731
    res = {"model": a.model, "job": a.job, "split": a.split, "sigma": s, "loss": round(float(loss.detach()), 4),
           "grad_partner_over_own": round(rms(clean) / rms(noisy), 4), "layers": layers}
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
