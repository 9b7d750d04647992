"""Tiled spatial decoding: a latent decoded in overlapping tiles whose seams cross-fade.

A decoder that is wide at high resolution (the Wan2.2 VAE's is 256..1024 channels at up to half
the output size) needs memory for one tile at a time this way; the pixels are accumulated, with
linear blend weights renormalised inside the shared bands, on a chosen device.
"""
from __future__ import annotations

import torch


def _tile_starts(size: int, tile: int, stride: int) -> list[int]:
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, stride)) + [size - tile]
    return sorted(set(starts))


def _ramp(n: int, lo_overlap: int, hi_overlap: int, device) -> torch.Tensor:
    """Blend weights along one axis of a tile: linear ramps over the overlaps shared with neighbours."""
    w = torch.ones(n, device=device, dtype=torch.float32)
    if lo_overlap > 0:
        w[:lo_overlap] = torch.arange(1, lo_overlap + 1, device=device, dtype=torch.float32) / (lo_overlap + 1)
    if hi_overlap > 0:
        w[n - hi_overlap:] = torch.minimum(
            w[n - hi_overlap:],
            torch.arange(hi_overlap, 0, -1, device=device, dtype=torch.float32) / (hi_overlap + 1))
    return w


def tiled_decode(decode_fn, z: torch.Tensor, scale: int, tile: int, overlap: int,
                 out_device=None) -> torch.Tensor:
    """Decode ``z [B, C, F, h, w]`` in overlapping ``tile x tile`` latent tiles and blend them.

    ``decode_fn`` maps a latent tile ``[B, C, F, th, tw]`` to pixels
    ``[B, 3, T, scale*th, scale*tw]``. Neighbouring tiles share ``overlap`` latent
    rows/columns (``scale * overlap`` pixels); inside a shared band each tile's
    weight falls linearly towards its edge and the weights are renormalised, so
    the seams cross-fade. The result is accumulated on ``out_device`` (default:
    ``z``'s device); only one tile's activations are alive at a time.
    """
    if not 0 <= overlap < tile:
        raise ValueError(f"tiled decode: overlap ({overlap}) must be >= 0 and smaller than the tile ({tile})")
    b, _, _, h, w = z.shape
    stride = tile - overlap
    ys, xs = _tile_starts(h, tile, stride), _tile_starts(w, tile, stride)
    out_device = z.device if out_device is None else torch.device(out_device)
    out = weight = None
    for y0 in ys:
        for x0 in xs:
            th, tw = min(tile, h - y0), min(tile, w - x0)
            pix = decode_fn(z[:, :, :, y0:y0 + th, x0:x0 + tw])
            if out is None:
                out = torch.zeros(b, pix.shape[1], pix.shape[2], h * scale, w * scale, device=out_device,
                                  dtype=torch.float32)
                weight = torch.zeros(h * scale, w * scale, device=out_device, dtype=torch.float32)
            # overlap actually shared with the previous / next tile on each axis
            up = (ys[ys.index(y0) - 1] + tile - y0) if y0 != ys[0] else 0
            down = (y0 + th - ys[ys.index(y0) + 1]) if y0 != ys[-1] else 0
            left = (xs[xs.index(x0) - 1] + tile - x0) if x0 != xs[0] else 0
            right = (x0 + tw - xs[xs.index(x0) + 1]) if x0 != xs[-1] else 0
            wy = _ramp(th * scale, up * scale, down * scale, out_device)
            wx = _ramp(tw * scale, left * scale, right * scale, out_device)
            wt = wy[:, None] * wx[None, :]
            sl = (slice(y0 * scale, (y0 + th) * scale), slice(x0 * scale, (x0 + tw) * scale))
            out[..., sl[0], sl[1]] += pix.to(out_device, torch.float32) * wt
            weight[sl] += wt
            del pix
    return out.div_(weight)
