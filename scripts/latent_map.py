"""How far is a new video codec's latent space from the shipped one? (issue 19 item 3; notebook Q5)

A new encoder means a retrained DiT. If the new normalised latents are (nearly) a rotation of the
shipped ones, the DiT can start where it is: its patch embedding and output head composed with the
rotation sample today's clips in the new space, and training only has to add what the new latents
hold beyond the old (here: the objects' colours). This fits, on world frames of the training seeds,

- an orthogonal map ``Q`` (Procrustes; keeps white noise white, so the sampler's noise stays valid) and
- a general linear map ``A`` (least squares),

from the shipped codec's normalised latents to the new one's, and reports on held-out world frames and
tuning clips: the share of the new latents' variance each map explains, and what the NEW decoder draws
from the mapped SHIPPED latents (PSNR, colour F1, visual-event F1 through it): what a DiT that still
produces today's latents would show through the new codec before any training.

    python scripts/latent_map.py NEW_CODECS.safetensors [--old harmony/assets/tiny_codecs.safetensors]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from decoder_finetune import frames_of, psnr, tuning_clips  # noqa: E402


def latents(codec, frames: torch.Tensor) -> torch.Tensor:
    """``[N, H, W, 3]`` -> normalised latents as rows ``[N * h * w, C]``."""
    with torch.no_grad():
        z = codec.encode(frames[:, None])[:, :, 0]                          # [N, C, h, w]
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])


def mapped_decode(new, old, frames: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """The new decoder's picture of the OLD codec's latents of ``frames``, mapped by ``m`` [C, C]."""
    with torch.no_grad():
        z = old.encode(frames[:, None])                                     # [N, C, 1, h, w]
        z = torch.einsum("nckhw,dc->ndkhw", z, m)
        return new.decode(z)[:, 0]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("new", help="the new codec pair file")
    ap.add_argument("--old", default=None, help="the shipped codec pair file (default: the bundled one)")
    ap.add_argument("-o", "--output", default=None, help="also write the numbers as JSON here")
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    from harmony.codecs.tiny import load_codecs
    from harmony.metrics import colour_f1, detect_visual_events, event_f1
    from harmony.world import is_heldout
    from harmony.world.scene import heldout_seeds

    old, new = load_codecs(a.old)[0].eval(), load_codecs(a.new)[0].eval()
    fit_frames = frames_of([s for s in range(300) if not is_heldout(s)][:120], 2.0)
    test_frames = frames_of([s for split in ("speech", "ambient", "complex") for s in heldout_seeds(split, 4)], 2.0, 4)
    zo, zn = latents(old, fit_frames), latents(new, fit_frames)
    u, _, vt = torch.linalg.svd(zn.T @ zo)
    maps = {"identity": torch.eye(zo.shape[1]), "orthogonal": u @ vt,
            "linear": torch.linalg.lstsq(zo, zn).solution.T}
    to, tn = latents(old, test_frames), latents(new, test_frames)
    clips = tuning_clips()
    out = {}
    for name, m in maps.items():
        resid = tn - to @ m.T
        row = {"new_latent_variance_explained": float(1 - resid.pow(2).mean() / tn.var(0).mean()),
               "world_heldout_db": psnr(mapped_decode(new, old, test_frames, m), test_frames)}
        colour, events = [], []
        for c in clips:
            rt = mapped_decode(new, old, torch.from_numpy(c.frames), m).numpy()
            want = {o.colour for o in c.scene.objects} | ({c.scene.face.hair} if c.scene.face else set())
            colour.append(colour_f1(rt, want))
            events.append(event_f1(detect_visual_events(rt, c.fps), [t for t, _, _ in c.scene.events()],
                                   1.0 / c.fps + 1e-6))
        row.update(tuning_colour_f1=float(np.mean(colour)), tuning_visual_event_f1=float(np.mean(events)))
        out[name] = row
        print(f"{name:10s}", " ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
    if a.output:
        with open(a.output, "w") as f:
            json.dump({"command": "python scripts/latent_map.py " + " ".join(argv or sys.argv[1:]), **out}, f, indent=1)


if __name__ == "__main__":
    main()
