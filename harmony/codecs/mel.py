"""Log-mel front end of MMAudio's 16 kHz audio codec (pure torch, no librosa).

The 16 kHz MMAudio VAE and its BigVGAN vocoder work on 80-bin log10 mel
spectrograms at 62.5 frames/s. This module computes them the way MMAudio's
16 kHz mel converter does:

1. clamp the waveform to [-1, 1];
2. reflect-pad ``(n_fft - hop) / 2 = 384`` samples on each side;
3. STFT with ``n_fft = win = 1024``, ``hop = 256``, a periodic Hann window and
   no further centring (``center=False``), one-sided;
4. magnitude ``sqrt(re^2 + im^2 + 1e-9)`` (magnitude, not power);
5. project onto the Slaney-style mel filterbank (80 bands, 0..8000 Hz,
   area-normalised triangles), built here by :func:`slaney_mel_filterbank`;
6. ``log10(max(x, 1e-5))``, so digital silence maps to exactly -5.

A clip of ``N`` samples gives ``(N + 768 - 1024) // 256 + 1`` frames, which is
``N // 256`` whenever ``N >= 256`` (a trailing partial hop is dropped).

The buffers keep the upstream names (``mel_basis`` [80, 513], ``hann_window``
[1024]) so a state dict holding them (ComfyUI's ``mel_converter.*``) loads by key.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .contract import MMAUDIO_16K

SAMPLE_RATE = MMAUDIO_16K.sample_rate
N_FFT = 1024
HOP = 256
N_MELS = 80
FMIN = 0.0
FMAX = 8000.0
LOG_FLOOR = 1e-5
MAG_EPS = 1e-9


# ------------------------------------------------------------------ Slaney mel scale

_F_SP = 200.0 / 3          # Hz per mel in the linear part (below 1 kHz)
_MIN_LOG_HZ = 1000.0       # start of the log part
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP  # = 15 mel
_LOG_STEP = math.log(6.4) / 27.0    # 27 mels per factor 6.4 above 1 kHz


def hz_to_mel_slaney(hz: np.ndarray) -> np.ndarray:
    """Slaney's Auditory Toolbox mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    lin = hz / _F_SP
    log = _MIN_LOG_MEL + np.log(np.maximum(hz, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOG_STEP
    return np.where(hz >= _MIN_LOG_HZ, log, lin)


def mel_to_hz_slaney(mel: np.ndarray) -> np.ndarray:
    """Inverse of :func:`hz_to_mel_slaney`."""
    mel = np.asarray(mel, dtype=np.float64)
    lin = mel * _F_SP
    log = _MIN_LOG_HZ * np.exp(_LOG_STEP * (np.maximum(mel, _MIN_LOG_MEL) - _MIN_LOG_MEL))
    return np.where(mel >= _MIN_LOG_MEL, log, lin)


def slaney_mel_filterbank(sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS,
                          fmin: float = FMIN, fmax: float | None = FMAX) -> torch.Tensor:
    """Mel filterbank ``[n_mels, n_fft // 2 + 1]`` (float32), Slaney scale and area normalisation.

    Band ``m`` is a triangle over the FFT bin frequencies with corners at the
    mel-spaced frequencies ``f[m], f[m+1], f[m+2]`` (``n_mels + 2`` points evenly
    spaced in Slaney mels between ``fmin`` and ``fmax``), scaled by
    ``2 / (f[m+2] - f[m])`` so every band has the same area. Computed in float64.
    """
    if fmax is None:
        fmax = sample_rate / 2
    if not (0 <= fmin < fmax <= sample_rate / 2):
        raise ValueError(f"slaney_mel_filterbank: need 0 <= fmin < fmax <= sample_rate/2, got fmin={fmin}, "
                         f"fmax={fmax}, sample_rate={sample_rate}")
    bins_hz = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    corners = mel_to_hz_slaney(np.linspace(hz_to_mel_slaney(fmin), hz_to_mel_slaney(fmax), n_mels + 2))
    width = np.diff(corners)                                  # [n_mels + 1]
    rising = (bins_hz[None, :] - corners[:-2, None]) / width[:-1, None]
    falling = (corners[2:, None] - bins_hz[None, :]) / width[1:, None]
    tri = np.maximum(0.0, np.minimum(rising, falling))        # [n_mels, bins]
    tri *= (2.0 / (corners[2:] - corners[:-2]))[:, None]
    return torch.from_numpy(tri).to(torch.float32)


# ------------------------------------------------------------------ the converter


class MelSpectrogram16k(nn.Module):
    """Waveform ``[B, N]`` (or ``[N]``) at 16 kHz -> log10 mel ``[B, 80, N // 256]`` (or ``[80, T]``)."""

    sample_rate = SAMPLE_RATE
    n_fft = N_FFT
    hop_length = HOP
    n_mels = N_MELS
    frame_rate = SAMPLE_RATE / HOP  # 62.5

    def __init__(self):
        super().__init__()
        self.register_buffer("mel_basis", slaney_mel_filterbank())
        self.register_buffer("hann_window", torch.hann_window(N_FFT, periodic=True))

    @property
    def edge_pad(self) -> int:
        return (self.n_fft - self.hop_length) // 2  # 384

    def num_frames(self, num_samples: int) -> int:
        """Mel frames for a clip of ``num_samples`` samples (a trailing partial hop is dropped)."""
        return (int(num_samples) + 2 * self.edge_pad - self.n_fft) // self.hop_length + 1

    def magnitude(self, wave: torch.Tensor) -> torch.Tensor:
        """Linear STFT magnitude ``[B, 513, T]`` of a clamped, reflect-padded ``wave [B, N]``."""
        x = wave.clamp(-1.0, 1.0)
        x = F.pad(x[:, None], (self.edge_pad, self.edge_pad), mode="reflect")[:, 0]
        window = self.hann_window.to(device=x.device, dtype=x.dtype)
        spec = torch.stft(x, self.n_fft, hop_length=self.hop_length, win_length=self.n_fft, window=window,
                          center=False, normalized=False, onesided=True, return_complex=True)
        return torch.sqrt(spec.real.square() + spec.imag.square() + MAG_EPS)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(wave) or wave.dim() not in (1, 2) or not wave.is_floating_point():
            what = f"{tuple(wave.shape)} {wave.dtype}" if torch.is_tensor(wave) else type(wave).__name__
            raise ValueError(f"MelSpectrogram16k: wave must be a float tensor [N] or [B, N] of 16 kHz samples, "
                             f"got {what}; mix stereo to mono first (wave.mean(0)).")
        single = wave.dim() == 1
        x = wave[None] if single else wave
        if x.shape[-1] <= self.edge_pad:
            raise ValueError(f"MelSpectrogram16k: wave has {x.shape[-1]} samples; at least {self.edge_pad + 1} "
                             f"are needed for the {self.edge_pad}-sample reflect padding (pad short clips "
                             "with silence first).")
        if x.dtype not in (torch.float32, torch.float64):
            x = x.float()
        mag = self.magnitude(x)
        lin = torch.matmul(self.mel_basis.to(device=mag.device, dtype=mag.dtype), mag)
        mel = torch.log10(lin.clamp(min=LOG_FLOOR))
        return mel[0] if single else mel
