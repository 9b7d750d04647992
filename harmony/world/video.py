"""Video renderer: a scene's frames, float32 ``[F, 64, 64, 3]`` in 0..1.

Shapes are drawn with anti-aliased edges, vectorised over all frames at
once (per-frame parameters have shape ``[F, 1, 1]``). Every event is
visible on its own frame: a ball touches the floor (squashed) and reverses,
a block touches a wall and reverses, a lamp jumps to full brightness and
decays, a mouth opens at once and relaxes gradually.
"""
from __future__ import annotations

import numpy as np

from .vocab import BACKGROUND_COLOURS, COLOURS, SKIN_TONES

LAMP_DECAY_S = 0.15       # lamp brightness time constant
BALL_MAX_SPEED = 128.0    # px/s at contact
VOWEL_MOUTH = {"a": (1.0, 1.0), "e": (1.15, 0.55), "i": (1.25, 0.38), "o": (0.72, 0.85), "u": (0.55, 0.62)}
MOUTH_COLOUR = np.array([0.22, 0.03, 0.05], np.float32)
WALL_COLOUR = np.array([0.80, 0.80, 0.78], np.float32)
STEM_COLOUR = np.array([0.55, 0.55, 0.55], np.float32)


def _grid(size):
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    return x[None], y[None]


def ellipse_alpha(X, Y, cx, cy, rx, ry):
    """Anti-aliased coverage of an ellipse; cx.. broadcast against the [1,H,W] grids."""
    d = np.sqrt(((X - cx) / rx) ** 2 + ((Y - cy) / ry) ** 2)
    return np.clip((1.0 - d) * np.minimum(rx, ry) + 0.5, 0.0, 1.0)


def box_alpha(X, Y, cx, cy, hx, hy):
    """Anti-aliased coverage of an axis-aligned box with half sizes hx, hy."""
    ax = np.clip(hx - np.abs(X - cx) + 0.5, 0.0, 1.0)
    ay = np.clip(hy - np.abs(Y - cy) + 0.5, 0.0, 1.0)
    return ax * ay


def _paint(frames, alpha, colour):
    """In place: frames = frames * (1 - alpha) + alpha * colour (alpha [F|1,H,W])."""
    a = alpha[..., None]
    frames *= 1.0 - a
    frames += a * colour


def background(scene) -> np.ndarray:
    """The static background image ``[H, W, 3]``."""
    n = scene.size
    base = np.asarray(BACKGROUND_COLOURS[scene.background_colour], np.float32)
    X, Y = _grid(n)
    X, Y = X[0], Y[0]
    ph = scene.background_phase
    if scene.background_pattern == "striped":
        shade = 0.8 + 0.4 * (np.floor((X + ph * 8) / 8) % 2)
    elif scene.background_pattern == "checkered":
        shade = 0.8 + 0.4 * ((np.floor((X + ph * 8) / 8) + np.floor((Y + ph * 8) / 8)) % 2)
    elif scene.background_pattern == "gradient":
        shade = 0.6 + 0.6 * (Y / (n - 1)) * (0.6 + 0.4 * ph) + 0.0 * X
    else:
        shade = np.ones((n, n), np.float32)
    return np.clip(shade[..., None] * base, 0, 1).astype(np.float32)


def _ball_params(o, t, fps, seconds):
    ev = np.asarray(o.event_frames, np.float64) / fps
    if not ev.size:                                      # a quiet scene: the ball rests on the floor
        r = np.full_like(t, o.radius)
        return np.full_like(t, float(np.clip(o.x, o.radius + 1, 62 - o.radius))), o.y - r, r, r
    avail = max(o.y - o.radius - 3.0, 4.0)               # room above the floor
    seg = np.diff(ev)
    t_max = max(seg.max() if seg.size else 0.0, o.lead_in)
    g = min(8.0 * avail / t_max ** 2, 2.0 * BALL_MAX_SPEED / t_max)
    h = np.zeros_like(t)
    # before the first event: held at rest, then dropped so it lands on ev[0]
    h0 = min(avail, 0.5 * g * o.lead_in ** 2)
    fall = np.sqrt(2.0 * h0 / g)
    before = t < ev[0]
    h[before] = h0 - 0.5 * g * np.clip(t[before] - (ev[0] - fall), 0.0, None) ** 2
    for a, b in zip(ev[:-1], ev[1:]):                    # parabolic hops between bounces
        m = (t >= a) & (t < b)
        h[m] = 0.5 * g * (t[m] - a) * (b - t[m])
    # after the last event: it stays on the floor (h = 0)
    h = np.clip(h, 0.0, None)
    x = np.clip(o.x + o.vx * (t - seconds / 2), o.radius + 1, 62 - o.radius)
    contact = np.isin(np.round(t * fps).astype(int), o.event_frames)
    rx = np.where(contact, o.radius * 1.3, o.radius)
    ry = np.where(contact, o.radius * 0.72, o.radius)
    cy = o.y - ry - h
    return x, cy, rx, ry


def _block_params(o, t, fps, seconds):
    """Block centre x per time: slides between two walls, touching one on each event."""
    ev = np.asarray(o.event_frames, np.float64) / fps
    if not ev.size:                                      # a quiet scene: the block stands still
        return np.full_like(t, o.x)
    left = o.x - o.travel / 2                           # centre x when touching the left wall
    right = o.x + o.travel / 2
    walls = [(left, right)[(o.first_wall + i) % 2] for i in range(len(ev))]
    x = np.empty_like(t)
    seg = np.diff(ev)
    v_typ = o.travel / (seg.mean() if seg.size else 0.6)
    # before the first event: moving towards the first wall, never reaching the other one
    v_in = min(v_typ, 0.9 * o.travel / max(ev[0], 1e-3))
    direction = 1.0 if walls[0] == right else -1.0
    m = t < ev[0]
    x[m] = walls[0] - direction * v_in * (ev[0] - t[m])
    for i in range(len(ev) - 1):
        m = (t >= ev[i]) & (t < ev[i + 1])
        x[m] = walls[i] + (walls[i + 1] - walls[i]) * (t[m] - ev[i]) / (ev[i + 1] - ev[i])
    v_out = min(v_typ, 0.9 * o.travel / max(seconds - ev[-1], 1e-3))
    direction = -1.0 if walls[-1] == right else 1.0
    m = t >= ev[-1]
    x[m] = walls[-1] + direction * v_out * (t[m] - ev[-1])
    return x


def _lamp_brightness(o, t, fps):
    ev = np.asarray(o.event_frames, np.float64) / fps
    dt = t[:, None] - ev[None, :]
    b = np.where(dt >= -1e-9, np.exp(-np.clip(dt, 0, None) / LAMP_DECAY_S), 0.0).sum(1)
    return np.clip(b, 0.0, 1.0)


def mouth_opening(face, num_frames) -> np.ndarray:
    """Per-frame mouth opening 0..1: wide open at once on each syllable onset,
    then relaxing gradually through the syllable (only the opening is abrupt)."""
    m = np.zeros(num_frames, np.float32)
    for f, d in zip(face.onsets, face.durations):
        for i in range(d):
            if f + i < num_frames:
                m[f + i] = 1.0 - 0.7 * i / d
        if f + d < num_frames:
            m[f + d] = max(m[f + d], 0.12)
    return m


def render_frames(scene) -> np.ndarray:
    """All frames of ``scene``: float32 ``[F, H, W, 3]`` in 0..1."""
    F, n, fps = scene.num_frames, scene.size, scene.fps
    t = np.arange(F, dtype=np.float64) / fps
    frames = np.broadcast_to(background(scene), (F, n, n, 3)).copy()
    X, Y = _grid(n)
    c = lambda v: np.asarray(v, np.float32)[:, None, None]  # noqa: E731  per-frame -> [F,1,1]

    for o in scene.objects:
        colour = np.asarray(COLOURS[o.colour], np.float32)
        if o.kind == "ball":
            x, cy, rx, ry = _ball_params(o, t, fps, scene.seconds)
            _paint(frames, ellipse_alpha(X, Y, c(x), c(cy), c(rx), c(ry)), colour)
        elif o.kind == "block":
            s = o.radius
            for wx in (o.x - o.travel / 2 - s - 1.5, o.x + o.travel / 2 + s + 1.5):
                _paint(frames, box_alpha(X, Y, wx, o.y, 1.0, s + 3), WALL_COLOUR)
            x = _block_params(o, t, fps, scene.seconds)
            _paint(frames, box_alpha(X, Y, c(x), o.y, s, s), colour)
        else:  # lamp: a stem and a bulb whose brightness jumps on each flash
            _paint(frames, box_alpha(X, Y, o.x, o.y + o.radius + 4, 1.0, 4.0), STEM_COLOUR)
            b = _lamp_brightness(o, t, fps).astype(np.float32)
            glow = ellipse_alpha(X, Y, o.x, o.y, c(o.radius * (1 + 0.8 * b)), c(o.radius * (1 + 0.8 * b)))
            _paint(frames, glow * 0.45 * c(b), colour)
            bulb = colour[None] * (0.5 + 0.5 * b[:, None]) + 0.35 * b[:, None] * (1 - colour[None])
            bulb_alpha = ellipse_alpha(X, Y, o.x, o.y, o.radius, o.radius)
            a = bulb_alpha[..., None]
            frames *= 1 - a
            frames += a * bulb[:, None, None, :]

    face = scene.face
    if face is not None:
        R = face.radius
        skin = np.asarray(SKIN_TONES[face.skin], np.float32)
        hair = np.asarray(COLOURS[face.hair], np.float32)
        _paint(frames, ellipse_alpha(X, Y, face.x, face.y - 0.08 * R, 0.86 * R, 1.02 * R) * (Y < face.y - 0.3 * R), hair)
        _paint(frames, ellipse_alpha(X, Y, face.x, face.y + 0.05 * R, 0.78 * R, 0.92 * R), skin)
        for ex in (face.x - 0.3 * R, face.x + 0.3 * R):
            _paint(frames, ellipse_alpha(X, Y, ex, face.y - 0.12 * R, 0.09 * R + 0.6, 0.09 * R + 0.6), np.float32([0.08, 0.06, 0.06]))
        m = mouth_opening(face, F)
        shape = np.ones((F, 2), np.float32)
        for f, d, syl in zip(face.onsets, face.durations, face.syllables):
            shape[f:f + d + 1] = VOWEL_MOUTH[syl[-1]]
        mw = 0.30 * R * (1 + 0.15 * m * (shape[:, 0] - 1))
        mh = np.maximum(0.22 * R * m * shape[:, 1], 0.6)
        _paint(frames, ellipse_alpha(X, Y, face.x, face.y + 0.5 * R, c(mw * (0.8 + 0.3 * m)), c(mh)), MOUTH_COLOUR)
    return np.clip(frames, 0.0, 1.0)
