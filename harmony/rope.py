"""Rotary position embeddings (RoPE) for the two towers.

A RoPE table here is a pair ``(cos, sin)`` of float32 tensors ``[L, head_dim/2]``:
one angle per token and complex pair of channels ``(x[2i], x[2i+1])``. Angles
are computed in float64 (as Wan does) and stored in float32.

- Video (Wan): 3-D. Each head's pairs are split (t, h, w) =
  ``d-4*(d//6), 2*(d//6), 2*(d//6)`` real channels; the t pairs turn with the
  latent-frame position, h with the row, w with the column.
- Audio (Ovi): 1-D. Only the first ``d-4*(d//6)`` channels (the same pairs and
  frequencies as the video t axis) turn, with the audio token's *position on the
  time axis*; the rest pass unrotated. Ovi uses position ``j * 0.19676``; the
  paper's RoPE alignment uses ``j * F_video / L_audio`` (``interaction.audio_time``,
  the one timeline mapping), so audio token j sits where its time falls on the
  video latent-frame timeline.

Tables are pure functions of shapes: `TableCache` keeps them per (shape, device)
(``HarmonyModel.plan``, ``WanTower.forward``) instead of rebuilding them in
float64 on the CPU at every forward.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Hashable, NamedTuple, Sequence

import torch


class Rope(NamedTuple):
    cos: torch.Tensor  # [L, head_dim/2] float32
    sin: torch.Tensor

    def __getitem__(self, idx):  # row slice of the table, e.g. rope[ref:]
        if isinstance(idx, int):
            return tuple.__getitem__(self, idx)
        return Rope(self.cos[idx], self.sin[idx])


class TableCache:
    """A small least-recently-used cache of tables built from shapes (RoPE tables, window masks).

    Keys must name everything a table depends on (shape, device, ...). Tables are built with
    autograd off and outside inference mode, so one built during sampling can be used in training.
    """

    def __init__(self, size: int = 8):
        self.size, self._tables = size, OrderedDict()

    def get(self, key: Hashable, build: Callable[[], object]):
        if key in self._tables:
            self._tables.move_to_end(key)
            return self._tables[key]
        with torch.inference_mode(False), torch.no_grad():
            table = build()
        self._tables[key] = table
        while len(self._tables) > self.size:
            self._tables.popitem(last=False)
        return table

    def clear(self):
        self._tables.clear()

    def __len__(self):
        return len(self._tables)


def axis_frequencies(channels: int, theta: float = 10000.0) -> torch.Tensor:
    """Wan's per-pair frequencies for an axis of `channels` real channels: theta^(-2i/channels), float64."""
    return 1.0 / theta ** (torch.arange(0, channels, 2, dtype=torch.float64) / channels)


def rope_split(head_dim: int) -> tuple:
    """Complex pairs per head for the (t, h, w) axes."""
    d = head_dim
    return ((d - 4 * (d // 6)) // 2, d // 6, d // 6)


def _table(angles: torch.Tensor) -> Rope:
    return Rope(torch.cos(angles).float(), torch.sin(angles).float())


def video_rope(grid: Sequence[int], head_dim: int, theta: float = 10000.0, device=None) -> Rope:
    """3-D RoPE for an (f, h, w) patch grid, tokens in (f, h, w) order."""
    f, h, w = (int(g) for g in grid)
    nt, nh, nw = rope_split(head_dim)
    at = torch.outer(torch.arange(f, dtype=torch.float64), axis_frequencies(2 * nt, theta))  # [f, nt]
    ah = torch.outer(torch.arange(h, dtype=torch.float64), axis_frequencies(2 * nh, theta))
    aw = torch.outer(torch.arange(w, dtype=torch.float64), axis_frequencies(2 * nw, theta))
    angles = torch.cat([
        at[:, None, None, :].expand(f, h, w, nt),
        ah[None, :, None, :].expand(f, h, w, nh),
        aw[None, None, :, :].expand(f, h, w, nw),
    ], dim=-1).reshape(f * h * w, nt + nh + nw)
    return _table(angles.to(device) if device is not None else angles)


def audio_rope(positions: torch.Tensor, head_dim: int, theta: float = 10000.0, device=None) -> Rope:
    """1-D RoPE (Ovi): the first t-axis pairs turn with `positions` (float, one per token); the rest stay."""
    nt = rope_split(head_dim)[0]
    pos = positions.to(torch.float64).cpu()
    angles = torch.zeros(pos.numel(), head_dim // 2, dtype=torch.float64)
    angles[:, :nt] = torch.outer(pos, axis_frequencies(2 * nt, theta))
    return _table(angles.to(device) if device is not None else angles)


def apply_rope(x: torch.Tensor, rope: Rope) -> torch.Tensor:
    """Rotate ``x [B, L, heads, head_dim]`` by a table of L rows (computed in float32, cast back)."""
    if rope.cos.shape[0] != x.shape[1] or 2 * rope.cos.shape[1] != x.shape[-1]:
        raise ValueError(f"RoPE table {tuple(rope.cos.shape)} does not fit tokens {tuple(x.shape)}")
    cos = rope.cos.to(x.device)[None, :, None, :]
    sin = rope.sin.to(x.device)[None, :, None, :]
    xf = x.float().unflatten(-1, (-1, 2))
    x0, x1 = xf[..., 0], xf[..., 1]
    out = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1).flatten(-2)
    return out.type_as(x)
