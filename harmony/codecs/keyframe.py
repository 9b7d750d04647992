"""First-frame detail: the given first frame's own pixels put back where the video still shows it.

I2AV (and A2V from an image) start from a picture the user gave. The video codec codes it at its
rate: the tiny codec keeps 16 numbers per 16x16 patch, enough for the toy world's pictures (about
24 dB) but not for a photo or a logo (6-13 dB). The model then keeps the *latent* of the picture
(frames 1..N within 0.2 dB of the codec's round trip), so what the user sees is the codec's blur.

A video codec that sends a key frame uses it this way: the picture is known exactly, so what the
latent lost of it, ``detail = image - decode(encode(image))``, is added back to every decoded
frame, scaled by a gate that is 1 where the frame still shows the picture and 0 where it shows
something else (an object moved in or away, a flash, a cut). The gate reads the local mean
absolute difference between the decoded frame and the picture's own round trip, ``d``, over a
``(2 radius + 1)^2`` window: full detail for ``d <= DETAIL_KEEP`` (the model's own drift of a
kept picture, well under it), none for ``d >= DETAIL_DROP`` (a red object over white differs by
0.67), linear between. The model and its latents are unchanged; this is decoding with side
information the user gave.

``DETAIL_KEEP`` / ``DETAIL_DROP`` were chosen on the tuning seeds (``scripts/first_frame_detail_lab.py``;
docs/training/experiments.md, entry Q1), before any held-out run: the gate that paints least over
the model's own motion while keeping static PSNR within 0.5 dB and colour F1 within 0.02 of no gate.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

DETAIL_KEEP = 0.1
"""Mean absolute difference (0..1 pixels, over the window) up to which the picture's detail is added in full."""
DETAIL_DROP = 0.2
"""Mean absolute difference from which none of it is added: the frame shows something else there."""
DETAIL_RADIUS = 2
"""Half-width of the square window the difference is averaged over (5x5 pixels)."""


def first_frame_gate(frames: torch.Tensor, image_roundtrip: torch.Tensor, keep: float = DETAIL_KEEP,
                     drop: float = DETAIL_DROP, radius: int = DETAIL_RADIUS) -> torch.Tensor:
    """``frames [F, H, W, 3]``, ``image_roundtrip [H, W, 3]`` -> gate ``[F, H, W, 1]`` in 0..1:
    1 where the decoded frame still shows the picture (locally), 0 where it shows something else."""
    if not 0 <= keep < drop:
        raise ValueError(f"first_frame_gate: need 0 <= keep < drop, got keep={keep}, drop={drop}")
    d = (frames - image_roundtrip).abs().mean(-1, keepdim=True).permute(0, 3, 1, 2)  # [F, 1, H, W]
    k = 2 * radius + 1
    d = F.avg_pool2d(d, k, stride=1, padding=radius, count_include_pad=False)
    return ((drop - d) / (drop - keep)).clamp(0, 1).permute(0, 2, 3, 1)


def first_frame_detail(frames: torch.Tensor, image: torch.Tensor, image_roundtrip: torch.Tensor,
                       keep: float = DETAIL_KEEP, drop: float = DETAIL_DROP,
                       radius: int = DETAIL_RADIUS) -> torch.Tensor:
    """Decoded ``frames [F, H, W, 3]`` (0..1) with the first frame's lost detail added back.

    ``image [H, W, 3]``: the first frame as given (at the frames' size); ``image_roundtrip``: the
    video codec's decode of its encoding. Where a frame still shows the picture the result is
    ``frame + image - image_roundtrip`` (so a kept picture comes back as the picture itself),
    elsewhere the decoded frame; clamped to 0..1."""
    if frames.dim() != 4 or frames.shape[-1] != 3:
        raise ValueError(f"first_frame_detail: frames must be [F, H, W, 3], got {tuple(frames.shape)}")
    for name, t in (("image", image), ("image_roundtrip", image_roundtrip)):
        if tuple(t.shape) != tuple(frames.shape[1:]):
            raise ValueError(f"first_frame_detail: {name} is {tuple(t.shape)} but the frames are "
                             f"{tuple(frames.shape[1:])}; give the first frame at the decoded size")
    image = image.to(frames)
    image_roundtrip = image_roundtrip.to(frames)
    gate = first_frame_gate(frames, image_roundtrip, keep, drop, radius)
    return (frames + gate * (image - image_roundtrip)).clamp(0, 1)
