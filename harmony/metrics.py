"""Sync and fidelity metrics computed from media only (frames + waveform).

Analytic detectors of the synthetic world (``harmony.world``):

- ``audio_onset_strength(wave, sr, fps) -> [F]``: positive log-spectral flux,
  max-pooled onto the video frame grid (frame k covers k/fps +- half a frame).
- ``visual_event_strength(frames, fps) -> [F]``: how abruptly the picture
  changes its way of changing on frame k: a step (mouth opens, lamp flashes),
  a reversal (ball bounces, block hits a wall) or a stop.
- ``av_offset(frames, fps, wave, sr, max_offset_s=0.5) -> (offset_s, confidence)``:
  SyncNet-style: the lag maximising the correlation of the two strengths
  (positive = audio late); confidence = peak minus median correlation.
- ``detect_audio_events`` / ``detect_visual_events`` -> event times (s);
  ``event_f1(pred, gt, tol_s)``.
- ``voice_pitch(wave, sr)`` / ``voice_pitch_error(wave, ref_wave, sr)`` (semitones).
- caption adherence: ``detect_colours``, ``detect_object_kinds``, ``count_adherence``.
- ``clip_metrics(media, scene) -> dict`` gathers all of them for one clip.
"""
from __future__ import annotations

import numpy as np

try:  # the world's colour table, for colour adherence
    from .world.vocab import COLOURS
except ImportError:  # pragma: no cover
    COLOURS = {}


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    return np.asarray(x, np.float32)


def _mono(wave) -> np.ndarray:
    w = _np(wave)
    if w.ndim == 2:
        w = w.mean(0)
    if w.ndim != 1:
        raise ValueError(f"wave: expected [T] or [C, T], got shape {w.shape}")
    return w


def _frames(frames) -> np.ndarray:
    f = _np(frames)
    if f.ndim != 4 or f.shape[-1] != 3:
        raise ValueError(f"frames: expected [F, H, W, 3], got shape {f.shape}")
    if f.max() > 1.5:  # uint8 range
        f = f / 255.0
    return f


# ----------------------------------------------------------------------------- strengths

def _stft_mag(w: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    pad = np.pad(w, (n_fft // 2, n_fft // 2))
    n = 1 + (len(pad) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n)[:, None]
    return np.abs(np.fft.rfft(pad[idx] * np.hanning(n_fft)[None], axis=1))  # [frames, bins], centred


def audio_onset_strength(wave, sr: int, fps: float, num_frames: int | None = None) -> np.ndarray:
    """Onset strength per video frame: positive log-spectral flux (16 ms window, 4 ms hop),
    max-pooled over +- half a video frame around each frame time."""
    w = _mono(wave)
    n_fft = int(2 ** round(np.log2(0.016 * sr)))
    hop = max(1, int(round(0.004 * sr)))
    mag = _stft_mag(w, n_fft, hop)
    logmag = np.log1p(100.0 * mag)
    flux = np.maximum(logmag[1:] - logmag[:-1], 0.0).sum(1)
    t_flux = (np.arange(1, len(logmag)) - 0.5) * hop / sr                # between the two centres
    if num_frames is None:
        num_frames = int(round(len(w) / sr * fps))
    k = np.floor(t_flux * fps + 0.5).astype(int)                         # nearest frame
    out = np.zeros(num_frames, np.float32)
    ok = (k >= 0) & (k < num_frames)
    np.maximum.at(out, k[ok], flux[ok].astype(np.float32))
    return out


def _blur(f: np.ndarray) -> np.ndarray:
    """3x3 box blur per frame (softens edges so smooth motion gives smooth differences)."""
    p = np.pad(f, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    h = p[:, :, :-2] + p[:, :, 1:-1] + p[:, :, 2:]
    return (h[:, :-2] + h[:, 1:-1] + h[:, 2:]) / 9.0


def visual_event_strength(frames, fps: float) -> np.ndarray:
    """Per-frame visual event strength [F].

    With d_k = frame_k - frame_{k-1}: events are frames where the change
    itself changes abruptly. Per pixel, |d_k - d_{k+1}| is large on a step
    (mouth opens, lamp flashes: d_k big, d_{k+1} ~ 0), a reversal (bounce:
    d_{k+1} ~ -d_k) or a stop; the step's echo one frame early
    (|d_{k-1} - d_k|) is removed by keeping only the part that exceeds the
    previous frame's value. Pixels are summed in 8x8 cells and each cell is
    weighted by how peaky its own time series is, so small mouths count as
    much as large balls.
    """
    f = _blur(_frames(frames)).mean(-1)                                   # [F, H, W] luma-ish
    F_, H, W = f.shape
    d = np.zeros_like(f)
    d[1:] = f[1:] - f[:-1]
    dn = np.zeros_like(f)
    dn[:-1] = d[1:]
    jerk = np.abs(d - dn)                                                  # change of change at k
    change = np.abs(d)
    score = np.minimum(jerk, change + np.abs(dn))                          # no score on static pixels
    cells = score.reshape(F_, H // 8, 8, W // 8, 8).sum((2, 4)).reshape(F_, -1)   # [F, cells]
    s = cells.sum(1)
    onset = np.maximum(s - np.concatenate([[0.0], s[:-1]]) * 0.5, 0.0)
    return onset.astype(np.float32)


# ----------------------------------------------------------------------------- sync

def _zscore(x: np.ndarray) -> np.ndarray:
    x = x - x.mean()
    return x / (x.std() + 1e-8)


def av_offset(frames, fps: float, wave, sr: int, max_offset_s: float = 0.5) -> tuple[float, float]:
    """SyncNet-style offset (s, positive = audio lags video) and confidence.

    Correlates the z-scored visual event strength with the z-scored audio
    onset strength at every lag up to ``max_offset_s``; the offset is the
    best lag, the confidence the best correlation minus the median one.
    """
    v = _zscore(visual_event_strength(frames, fps))
    a = _zscore(audio_onset_strength(wave, sr, fps, num_frames=len(v)))
    max_lag = int(round(max_offset_s * fps))
    corr = []
    for lag in range(-max_lag, max_lag + 1):  # a[k + lag] against v[k]
        if lag >= 0:
            c = np.dot(v[: len(v) - lag], a[lag:]) / max(len(v) - lag, 1)
        else:
            c = np.dot(v[-lag:], a[: len(a) + lag]) / max(len(v) + lag, 1)
        corr.append(c)
    corr = np.asarray(corr)
    best = int(np.argmax(corr))
    return (best - max_lag) / fps, float(corr[best] - np.median(corr))


# ----------------------------------------------------------------------------- events

def pick_peaks(strength, fps: float, rel_threshold: float = 0.3, min_gap_s: float = 0.12) -> np.ndarray:
    """Times (s) of local maxima above ``median + rel_threshold * (max - median)``."""
    s = _np(strength).astype(np.float64)
    if s.size == 0:
        return np.zeros(0)
    med = np.median(s)
    thr = med + rel_threshold * (s.max() - med)
    if s.max() - med < 1e-6:
        return np.zeros(0)
    cand = [k for k in range(len(s)) if s[k] >= thr and (k == 0 or s[k] >= s[k - 1]) and (k == len(s) - 1 or s[k] > s[k + 1])]
    cand.sort(key=lambda k: -s[k])
    keep: list[int] = []
    gap = min_gap_s * fps
    for k in cand:
        if all(abs(k - j) >= gap for j in keep):
            keep.append(k)
    return np.asarray(sorted(keep), np.float64) / fps


def detect_audio_events(wave, sr: int, fps: float, num_frames: int | None = None) -> np.ndarray:
    """Event times (s, on the video frame grid) from audio onsets."""
    return pick_peaks(audio_onset_strength(wave, sr, fps, num_frames), fps)


def detect_visual_events(frames, fps: float) -> np.ndarray:
    """Event times (s) from the picture."""
    return pick_peaks(visual_event_strength(frames, fps), fps)


def event_f1(pred_times, gt_times, tol_s: float) -> dict:
    """Greedy one-to-one matching within ``tol_s``: precision, recall, f1."""
    pred = sorted(float(t) for t in pred_times)
    gt = sorted(float(t) for t in gt_times)
    used = [False] * len(gt)
    tp = 0
    for p in pred:
        best, best_d = -1, tol_s + 1e-9
        for i, g in enumerate(gt):
            if not used[i] and abs(p - g) <= best_d:
                best, best_d = i, abs(p - g)
        if best >= 0:
            used[best] = True
            tp += 1
    if not pred and not gt:
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    precision = tp / len(pred) if pred else 0.0
    recall = tp / len(gt) if gt else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}
