"""Out-of-world still images: what I2AV must keep when the first frame is not a world scene.

The world's scenes are a few shapes on patterned walls; a user's first frame is a photo,
a logo, a screenshot. ``foreign_stills(n, seed)`` draws ``n`` 64x64 RGB images of three
families, none of which the world renders:

- ``photo``: smooth random colour fields (low-frequency noise, several octaves), like the
  soft gradients and textures of a photograph;
- ``shapes``: flat-colour discs, rectangles and triangles on a flat or two-tone background;
- ``screen``: a screenshot-like layout: bars, panels and rows of thin "text" strokes.

The trainer's I2AV task shows some of these as static clips (frame 0 repeated), so the model
learns to keep whatever frame 0 holds. Deterministic from ``seed``; no seed range is shared
with the world (these images are not scenes).
"""
from __future__ import annotations

import numpy as np

FAMILIES = ("photo", "shapes", "screen")


def _photo(rng, size):
    import torch
    import torch.nn.functional as F

    img = torch.zeros(1, 3, size, size)
    for octave, weight in ((2, 1.0), (4, 0.5), (8, 0.25), (16, 0.12)):
        coarse = torch.from_numpy(rng.random((1, 3, octave, octave)).astype(np.float32))
        img += weight * F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    img = img[0].permute(1, 2, 0).numpy()
    img = img - img.min()
    return img / max(float(img.max()), 1e-6)


def _shapes(rng, size):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    img = np.empty((size, size, 3), np.float32)
    img[:] = rng.random(3)
    if rng.random() < 0.5:  # two-tone background
        img[: int(rng.integers(size // 4, 3 * size // 4))] = rng.random(3)
    for _ in range(int(rng.integers(1, 5))):
        colour = rng.random(3)
        cx, cy, r = rng.uniform(8, size - 8), rng.uniform(8, size - 8), rng.uniform(4, size / 3)
        kind = rng.integers(3)
        if kind == 0:
            inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        elif kind == 1:
            inside = (abs(xx - cx) <= r) & (abs(yy - cy) <= rng.uniform(0.3, 1.0) * r)
        else:
            inside = (yy >= cy - r) & (yy <= cy + r) & (abs(xx - cx) <= (yy - (cy - r)) / 2)
        img[inside] = colour
    return img


def _screen(rng, size):
    img = np.empty((size, size, 3), np.float32)
    img[:] = 0.9 + 0.1 * rng.random() if rng.random() < 0.7 else 0.1 * rng.random()
    ink = 1.0 - img[0, 0, 0]
    top = int(rng.integers(4, 12))
    img[:top] = rng.random(3)  # title bar
    if rng.random() < 0.6:  # side panel
        w = int(rng.integers(8, 20))
        img[top:, :w] = rng.random(3) * 0.5 + 0.25
        left = w + 3
    else:
        left = 3
    y = top + 3
    while y < size - 3:  # rows of "text": short strokes of ink
        x = left
        while x < size - 4:
            n = int(rng.integers(2, 8))
            img[y:y + 2, x:min(x + n, size - 2)] = ink
            x += n + int(rng.integers(1, 3))
        y += int(rng.integers(4, 7))
    return img


def foreign_stills(n: int, seed: int, size: int = 64) -> tuple[np.ndarray, list[str]]:
    """``(images [n, size, size, 3] float32 0..1, family of each)``, deterministic from ``seed``."""
    rng = np.random.default_rng([int(seed), 4242])
    make = {"photo": _photo, "shapes": _shapes, "screen": _screen}
    families = [FAMILIES[int(i)] for i in rng.integers(0, len(FAMILIES), n)]
    images = np.stack([make[f](rng, size) for f in families]) if n else np.zeros((0, size, size, 3), np.float32)
    return np.clip(images, 0, 1).astype(np.float32), families
