"""Tiny video and audio codecs with the Wan2.2-VAE / MMAudio-16k interface.

The tiny Harmony model does not diffuse pixels or samples; it diffuses codec
latents, exactly as the real model diffuses Wan2.2-VAE and MMAudio latents.
These two codecs have the same call shapes as the real ones, so the pipeline
swaps them without changes:

``VideoCodec``  frames ``[B, F, H, W, 3]`` (0..1) <-> latent ``[B, 16, F, H/16, W/16]``
                a learned per-frame conv autoencoder (spatial stride 16,
                temporal stride 1, so sync precision is one video frame).
``AudioCodec``  wave ``[B, T]`` (16 kHz) <-> latent ``[B, ceil(T/512), 20]``
                (31.25 latents/s), an analytic source-filter representation
                (sub-frame loudness envelope + pitch + voicing + spectral
                envelope) that is inverted with a harmonic-plus-noise vocoder.
                Its loudness envelope has 8 ms resolution, so event onsets
                survive the round trip.

Both normalise latents per channel to roughly zero mean / unit variance with
stored statistics (``latent_mean``, ``latent_std``), fitted on world clips.

Weights live in one safetensors file (``harmony/assets/tiny_codecs.safetensors``):
``video.*`` and ``audio.*`` state-dict entries. Train / evaluate::

    python -m harmony.codecs train --out harmony/assets/tiny_codecs.safetensors
    python -m harmony.codecs eval  --weights harmony/assets/tiny_codecs.safetensors
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

SAMPLE_RATE = 16000
FPS = 16
DEFAULT_CODECS_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "assets", "tiny_codecs.safetensors")


# --------------------------------------------------------------------------- #
# safetensors file checks (never unpickle)
# --------------------------------------------------------------------------- #

def _load_state(path: str, what: str) -> tuple[dict, dict]:
    from safetensors import safe_open

    from ..checkpoint import check_safetensors_file

    check_safetensors_file(path, what)
    with safe_open(os.fspath(path), framework="pt", device="cpu") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return tensors, meta


# --------------------------------------------------------------------------- #
# Video codec: per-frame conv autoencoder, 64x64x3 -> 16 x 4 x 4
# --------------------------------------------------------------------------- #

class ResBlock(nn.Module):
    """x + conv(silu(norm(conv(silu(norm(x))))))."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(8, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(F.silu(self.norm2(self.conv1(F.silu(self.norm1(x))))))


def _conv_norm_act(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.GroupNorm(8, c_out), nn.SiLU())


class VideoCodec(nn.Module):
    """Per-frame conv autoencoder: ``[B,F,H,W,3]`` 0..1 <-> ``[B,C,F,H/16,W/16]``.

    Encoder: space-to-depth 2x, then three stride-2 convs (16x spatial in
    all); the decoder mirrors it with nearest upsampling and depth-to-space.
    Frames are coded independently (temporal stride 1). Latents are
    normalised with the stored per-channel ``latent_mean`` / ``latent_std``.
    """

    spatial_stride = 16
    temporal_stride = 1
    fps = FPS
    frame_size = (64, 64)  # (H, W) it was trained on; other multiples of 16 run but are untrained

    def __init__(self, latent_channels: int = 16, width: int = 64):
        super().__init__()
        self.latent_channels = latent_channels
        self.width = width
        w, h = width, width // 2
        self.encoder = nn.Sequential(
            nn.PixelUnshuffle(2),                          # 3 x 64 -> 12 x 32
            _conv_norm_act(12, h),
            _conv_norm_act(h, w, stride=2), ResBlock(w),   # 16
            _conv_norm_act(w, w, stride=2),                # 8
            _conv_norm_act(w, w, stride=2), ResBlock(w),   # 4
            nn.GroupNorm(8, w), nn.SiLU(), nn.Conv2d(w, latent_channels, 1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_channels, w, 3, padding=1), ResBlock(w),      # 4
            nn.Upsample(scale_factor=2), _conv_norm_act(w, w),             # 8
            nn.Upsample(scale_factor=2), _conv_norm_act(w, w), ResBlock(w),  # 16
            nn.Upsample(scale_factor=2), _conv_norm_act(w, h),             # 32
            nn.Conv2d(h, 12, 3, padding=1), nn.PixelShuffle(2),            # 3 x 64
        )
        self.register_buffer("latent_mean", torch.zeros(latent_channels))
        self.register_buffer("latent_std", torch.ones(latent_channels))

    # -- raw (unnormalised) per-frame maps ---------------------------------
    def encode_raw(self, images: torch.Tensor) -> torch.Tensor:
        """``[N,3,H,W]`` 0..1 -> raw latent ``[N,C,H/16,W/16]``."""
        return self.encoder(images * 2 - 1)

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        """Raw latent ``[N,C,h,w]`` -> ``[N,3,16h,16w]`` (unclamped, ~0..1)."""
        return self.decoder(z) * 0.5 + 0.5

    # -- the codec interface ----------------------------------------------
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames [B,F,H,W,3]`` float 0..1 -> normalised latent ``[B,C,F,H/16,W/16]``."""
        if not torch.is_tensor(frames) or frames.dim() != 5 or frames.shape[-1] != 3:
            shape = tuple(frames.shape) if torch.is_tensor(frames) else type(frames).__name__
            raise ValueError(
                f"VideoCodec.encode: frames must be a tensor [B, F, H, W, 3] (RGB, 0..1), got {shape}; "
                "add a batch dimension with frames[None] for a single clip."
            )
        B, Fr, H, W, _ = frames.shape
        s = self.spatial_stride
        if H % s or W % s or H == 0 or W == 0:
            raise ValueError(
                f"VideoCodec.encode: frame size {H}x{W} must be a positive multiple of {s}; "
                "resize the frames (the tiny model uses 64x64)."
            )
        p = self.latent_mean
        x = frames.to(device=p.device, dtype=p.dtype).reshape(B * Fr, H, W, 3).permute(0, 3, 1, 2)
        z = self.encode_raw(x)
        z = (z - self.latent_mean.view(1, -1, 1, 1)) / self.latent_std.view(1, -1, 1, 1)
        return z.reshape(B, Fr, self.latent_channels, H // s, W // s).permute(0, 2, 1, 3, 4).contiguous()

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Normalised latent ``[B,C,F,h,w]`` -> ``frames [B,F,16h,16w,3]`` clamped to 0..1."""
        if not torch.is_tensor(latent) or latent.dim() != 5 or latent.shape[1] != self.latent_channels:
            shape = tuple(latent.shape) if torch.is_tensor(latent) else type(latent).__name__
            raise ValueError(
                f"VideoCodec.decode: latent must be [B, {self.latent_channels}, F, h, w], got {shape}."
            )
        B, C, Fr, h, w = latent.shape
        p = self.latent_mean
        z = latent.to(device=p.device, dtype=p.dtype).permute(0, 2, 1, 3, 4).reshape(B * Fr, C, h, w)
        z = z * self.latent_std.view(1, -1, 1, 1) + self.latent_mean.view(1, -1, 1, 1)
        x = self.decode_raw(z).clamp(0, 1)
        s = self.spatial_stride
        return x.permute(0, 2, 3, 1).reshape(B, Fr, h * s, w * s, 3)


# --------------------------------------------------------------------------- #
# Audio codec: analytic source-filter latent, harmonic-plus-noise decoder
# --------------------------------------------------------------------------- #

def band_filterbank(n_fft: int, n_bands: int, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """``[n_bands, n_fft//2+1]`` triangular mel bands that sum to one in every bin.

    Band centres are evenly spaced in mel from 0 Hz to Nyquist (the first and
    last are half triangles), so band energies add up to the frame energy.
    """
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    mel = 2595.0 * torch.log10(1.0 + freqs / 700.0)
    pos = mel / mel[-1] * (n_bands - 1)
    bands = torch.arange(n_bands, dtype=torch.float64)[:, None]
    return (1 - (pos[None, :] - bands).abs()).clamp(min=0).float()


def _frame_interp(x: torch.Tensor, centres: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of per-frame values ``x [B,N,C]`` given at uniformly
    spaced ``centres [N]`` onto ``times [M]`` (held constant beyond the ends) -> ``[B,M,C]``."""
    N = x.shape[1]
    if N == 1:
        return x.expand(-1, times.numel(), -1)
    step = centres[1] - centres[0]
    u = ((times - centres[0]) / step).clamp(0, N - 1)
    i0 = u.floor().long().clamp(max=N - 2)
    frac = (u - i0).to(x.dtype)[None, :, None]
    return x[:, i0] * (1 - frac) + x[:, i0 + 1] * frac


class AudioCodec(nn.Module):
    """Analytic 20-channel audio codec at 31.25 latents/s (512 samples per latent).

    Latent channels per 512-sample frame (before normalisation):

    - ``0..3``  loudness envelope: log RMS of the four 128-sample sub-frames (8 ms);
    - ``4``     log f0 in Hz (harmonic-comb pitch, 50..2000 Hz; 200 Hz where unvoiced);
    - ``5``     voicing (normalised autocorrelation at the pitch period, 0 noise .. 1 periodic);
    - ``6..19`` spectral envelope: log share of the frame energy in 14 mel bands.

    ``decode`` builds a band-limited harmonic excitation at f0 mixed with noise
    by voicing, shapes it with the spectral envelope (STFT filtering) and sets
    the loudness of every 8 ms sub-frame to the envelope, so onsets stay sharp.
    The decoder's noise is seeded: decoding is deterministic.
    """

    latent_channels = 20
    sample_rate = SAMPLE_RATE
    hop_length = 512
    latent_rate = SAMPLE_RATE / 512  # 31.25
    n_sub = 4           # loudness sub-frames per latent (128 samples = 8 ms)
    n_bands = 14        # spectral-envelope bands
    analysis_fft = 1024  # window for pitch + spectral envelope, centred on the latent
    synthesis_fft = 512
    synthesis_hop = 128
    f0_min, f0_max, f0_unvoiced = 50.0, 2000.0, 200.0
    voiced_threshold = 0.45
    comb_harmonics = 12
    gain_crossfade = 16  # samples
    onset_jump = 0.7     # nats of sub-frame loudness change kept as a step
    n_pitch_candidates = 256
    log_rms_floor = math.log(1e-5)

    CHANNELS = ["env0", "env1", "env2", "env3", "log_f0", "voicing"] + [f"band{i}" for i in range(14)]

    def __init__(self):
        super().__init__()
        fb_a = band_filterbank(self.analysis_fft, self.n_bands)
        self.register_buffer("analysis_bands", fb_a, persistent=False)
        self.register_buffer("synthesis_bands", band_filterbank(self.synthesis_fft, self.n_bands), persistent=False)
        self.register_buffer("band_log_width", fb_a.sum(1).log(), persistent=False)
        self.register_buffer("analysis_window", torch.hann_window(self.analysis_fft), persistent=False)
        self.register_buffer("synthesis_window", torch.hann_window(self.synthesis_fft), persistent=False)
        self.register_buffer("pitch_candidates", torch.exp(torch.linspace(
            math.log(self.f0_min), math.log(self.f0_max), self.n_pitch_candidates)), persistent=False)
        mean, std = self.default_stats()
        self.register_buffer("latent_mean", mean)
        self.register_buffer("latent_std", std)

    @staticmethod
    def default_stats() -> tuple[torch.Tensor, torch.Tensor]:
        """Rough hand-set statistics, replaced by ``fit_audio_stats`` on world clips."""
        mean = torch.tensor([-6.0] * 4 + [math.log(200.0), 0.4] + [-3.0] * 14)
        std = torch.tensor([3.0] * 4 + [0.4, 0.35] + [2.0] * 14)
        return mean, std

    # -- analysis ----------------------------------------------------------
    def features(self, wave: torch.Tensor) -> torch.Tensor:
        """Unnormalised latent ``[B, L, 20]`` of ``wave [B, T]`` (L = ceil(T/512))."""
        B, T = wave.shape
        hop, n_fft = self.hop_length, self.analysis_fft
        L = max(1, -(-T // hop))
        x = F.pad(wave, (0, L * hop - T))

        # loudness envelope, 4 sub-frames per latent
        sub = x.reshape(B, L * self.n_sub, hop // self.n_sub)
        env = 0.5 * torch.log(sub.pow(2).mean(-1) + math.exp(2 * self.log_rms_floor))
        env = env.reshape(B, L, self.n_sub)

        # analysis frames: 1024 samples centred on each latent's 512 samples
        pad = (n_fft - hop) // 2
        frames = F.pad(x, (pad, pad)).unfold(-1, n_fft, hop)  # [B, L, n_fft]
        frames = frames * self.analysis_window
        spec = torch.fft.rfft(frames, n=2 * n_fft)             # zero-padded for autocorrelation
        power = spec.real.pow(2) + spec.imag.pow(2)

        # spectral envelope: log share of energy per band
        p = power[..., ::2]                                    # the n_fft-point spectrum
        band_e = p @ self.analysis_bands.T + 1e-7 * self.analysis_bands.sum(1)
        shape = torch.log(band_e) - torch.log(band_e.sum(-1, keepdim=True))

        # pitch: harmonic comb on the log spectrum; voicing: normalised autocorrelation at that period
        f0 = self.comb_pitch(spec.abs())
        acf = torch.fft.irfft(power, n=2 * n_fft)[..., :n_fft]
        w_acf = torch.fft.irfft(torch.fft.rfft(self.analysis_window, n=2 * n_fft).abs().pow(2), n=2 * n_fft)[:n_fft]
        r = acf / (acf[..., :1] + 1e-9) / (w_acf / w_acf[0]).clamp(min=0.05)
        lag = (self.sample_rate / f0).round().long().clamp(1, n_fft - 1)
        voicing = r.gather(-1, lag[..., None]).squeeze(-1).clamp(0, 1)
        f0 = f0.clamp(self.f0_min, self.f0_max)
        f0 = torch.where(voicing >= self.voiced_threshold, f0, torch.full_like(f0, self.f0_unvoiced))
        return torch.cat([env, f0.log()[..., None], voicing[..., None], shape], dim=-1)

    def comb_pitch(self, mag: torch.Tensor) -> torch.Tensor:
        """f0 (Hz) per frame from magnitude spectra ``mag [..., bins]`` of a ``2*analysis_fft`` rfft.

        Score of a candidate f: the sum over its first ``comb_harmonics``
        harmonics (below 7 kHz) of log|X(k f)| minus the mean of log|X| at
        (k+1/3) f, (k+1/2) f, (k+2/3) f. Summing (not averaging) over a fixed
        number of harmonics rejects both octave-up candidates (fewer harmonics
        fit) and octave-down ones (half their "harmonics" fall in valleys).
        """
        logm = torch.log(mag + 1e-4 * mag.amax(-1, keepdim=True) + 1e-7)
        n_bins = logm.shape[-1]
        bin_hz = self.sample_rate / (2 * (n_bins - 1))
        cands = self.pitch_candidates.to(mag.device)
        k = torch.arange(1, self.comb_harmonics + 1, device=mag.device, dtype=mag.dtype)

        def at(freqs):  # linear interpolation of logm at frequencies [C, K]
            pos = (freqs / bin_hz).clamp(0, n_bins - 1.001)
            i0 = pos.floor().long()
            w = pos - i0
            flat = logm.reshape(-1, n_bins)
            v = flat[:, i0.reshape(-1)] * (1 - w.reshape(-1)) + flat[:, i0.reshape(-1) + 1] * w.reshape(-1)
            return v.reshape(*logm.shape[:-1], *freqs.shape)

        harm = cands[:, None] * k[None]
        valid = (harm < 7000.0).to(mag.dtype)
        valleys = sum(at(cands[:, None] * (k[None] + j)) for j in (1 / 3, 0.5, 2 / 3)) / 3
        score = ((at(harm) - valleys) * valid).sum(-1)                      # [..., C]
        best = score.argmax(-1).clamp(1, cands.numel() - 2)
        y0, y1, y2 = (score.gather(-1, (best + o)[..., None]).squeeze(-1) for o in (-1, 0, 1))
        denom = y0 - 2 * y1 + y2
        shift = torch.where(denom.abs() > 1e-9, 0.5 * (y0 - y2) / denom, torch.zeros_like(denom)).clamp(-0.5, 0.5)
        log_c = cands.log()
        step = log_c[1] - log_c[0]
        return torch.exp(log_c[best] + shift * step)

    # -- synthesis ----------------------------------------------------------
    @staticmethod
    def harmonic_phase(k: int) -> float:
        """Fixed pseudo-random start phase of harmonic ``k``: a flat, non-peaky excitation
        (a zero-phase pulse train at low f0 makes 32 ms spectra flicker, i.e. false onsets)."""
        return (k * k * 0.61803398875 % 1.0) * 2 * math.pi

    def synthesize(self, feats: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """Unnormalised latent ``[B, L, 20]`` -> ``wave [B, L*512]`` (or ``length``)."""
        B, L, _ = feats.shape
        hop, sr = self.hop_length, self.sample_rate
        T = L * hop
        dev, dt = feats.device, feats.dtype
        env = feats[..., : self.n_sub].clamp(self.log_rms_floor, 0.0)
        f0 = feats[..., self.n_sub].exp().clamp(self.f0_min, self.f0_max)
        voicing = feats[..., self.n_sub + 1].clamp(0, 1)
        shape = feats[..., self.n_sub + 2 :].clamp(-30, 0)

        # excitation: band-limited harmonics at f0 (flat spectrum) mixed with noise
        t = torch.arange(T, device=dev, dtype=torch.float64)
        centres = torch.arange(L, device=dev, dtype=torch.float64) * hop + (hop - 1) / 2
        f0_t = _frame_interp(f0[..., None].double(), centres, t)[..., 0]           # [B, T]
        v_t = _frame_interp(voicing[..., None], centres, t)[..., 0]
        phase = torch.remainder(2 * math.pi * torch.cumsum(f0_t / sr, dim=-1), 2 * math.pi)
        top = 0.47 * sr                                                            # fade harmonics out below Nyquist
        n_harm = int(math.ceil(top / float(f0_t.min())))
        harm = torch.zeros(B, T, device=dev, dtype=torch.float64)
        power = torch.zeros(B, T, device=dev, dtype=torch.float64)
        for k in range(1, n_harm + 1):
            a = ((top - k * f0_t) / 400.0).clamp(0, 1)
            if not bool((a > 0).any()):
                break
            harm = harm + a * torch.cos(k * phase + self.harmonic_phase(k))
            power = power + 0.5 * a * a
        harm = (harm / power.clamp(min=1e-6).sqrt()).to(dt)
        gen = torch.Generator(device="cpu").manual_seed(0)
        noise = torch.randn(B, T, generator=gen, dtype=dt).to(dev)
        excitation = v_t.sqrt() * harm + (1 - v_t).sqrt() * noise

        # filter: spectral envelope (log density per band, interpolated over bins and time)
        log_density = shape - self.band_log_width                                 # [B, L, bands]
        S = torch.stft(excitation, self.synthesis_fft, self.synthesis_hop, window=self.synthesis_window,
                       center=True, return_complex=True)                          # [B, bins, frames]
        frame_t = torch.arange(S.shape[-1], device=dev, dtype=torch.float64) * self.synthesis_hop
        log_density = _frame_interp(log_density, centres, frame_t)               # [B, frames, bands]
        gain = torch.exp(0.5 * (log_density @ self.synthesis_bands))             # [B, frames, bins]
        y = torch.istft(S * gain.transpose(1, 2), self.synthesis_fft, self.synthesis_hop,
                        window=self.synthesis_window, center=True, length=T)

        # loudness: match each 8 ms sub-frame's RMS to the envelope
        n = hop // self.n_sub
        log_target = env.reshape(B, L * self.n_sub)
        # steady stretches (no jump > onset_jump nats to a neighbour): average over 3 sub-frames,
        # so the level wobble of noise is not turned into 8 ms gain steps (false onsets)
        padded = F.pad(log_target[:, None], (1, 1), mode="replicate")[:, 0]
        jump = torch.maximum((padded[:, 1:-1] - padded[:, :-2]).abs(), (padded[:, 2:] - padded[:, 1:-1]).abs())
        smooth = (padded[:, :-2] + padded[:, 1:-1] + padded[:, 2:]) / 3
        log_target = torch.where(jump > self.onset_jump, log_target, smooth)
        target = (log_target.exp() - math.exp(self.log_rms_floor)).clamp(min=0)
        # the filtered excitation's own loudness, smoothed over 5 sub-frames (it carries no onsets:
        # those come from the envelope) so random noise-level wobble is not imprinted on the gain
        power = y.reshape(B, L * self.n_sub, n).pow(2).mean(-1)
        kernel = torch.tensor([1.0, 2.0, 3.0, 2.0, 1.0], device=dev, dtype=dt) / 9
        current = F.conv1d(F.pad(power[:, None], (2, 2), mode="replicate"), kernel.view(1, 1, -1))[:, 0].sqrt()
        g = target / (current + 1e-7)
        # one gain per sub-frame, joined by 16-sample cross-fades: a step, so onsets stay sharp
        g_t = g.repeat_interleave(n, dim=-1)
        fade = self.gain_crossfade
        g_t = F.avg_pool1d(F.pad(g_t[:, None], (fade // 2, fade - 1 - fade // 2), mode="replicate"), fade, 1)[:, 0]
        wave = (y * g_t).clamp(-1, 1)
        if length is not None:
            wave = wave[:, :length] if length <= T else F.pad(wave, (0, length - T))
        return wave

    # -- the codec interface ----------------------------------------------
    def encode(self, wave: torch.Tensor) -> torch.Tensor:
        """``wave [B, T]`` at 16 kHz -> normalised latent ``[B, ceil(T/512), 20]``."""
        if not torch.is_tensor(wave) or wave.dim() != 2 or wave.shape[-1] == 0:
            shape = tuple(wave.shape) if torch.is_tensor(wave) else type(wave).__name__
            raise ValueError(
                f"AudioCodec.encode: wave must be a tensor [B, T] of mono 16 kHz samples, got {shape}; "
                "use wave[None] for one clip and mix stereo to mono (wave.mean(0))."
            )
        x = wave.to(device=self.latent_mean.device, dtype=torch.float32)
        return (self.features(x) - self.latent_mean) / self.latent_std

    def decode(self, latent: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """Normalised latent ``[B, L, 20]`` -> ``wave [B, L*512]`` in -1..1 (cut/padded to ``length``)."""
        if not torch.is_tensor(latent) or latent.dim() != 3 or latent.shape[-1] != self.latent_channels:
            shape = tuple(latent.shape) if torch.is_tensor(latent) else type(latent).__name__
            raise ValueError(f"AudioCodec.decode: latent must be [B, L, {self.latent_channels}], got {shape}.")
        z = latent.to(device=self.latent_mean.device, dtype=torch.float32)
        return self.synthesize(z * self.latent_std + self.latent_mean, length)

    def num_latents(self, num_samples: int) -> int:
        """Latent length for a clip of ``num_samples`` samples."""
        return max(1, -(-int(num_samples) // self.hop_length))


# --------------------------------------------------------------------------- #
# save / load
# --------------------------------------------------------------------------- #

def save_codecs(video: VideoCodec, audio: AudioCodec, path: str, metadata: dict | None = None) -> None:
    """Write both codecs to one safetensors file (``video.*``, ``audio.*``), atomically."""
    from ..checkpoint import save_safetensors

    state = {f"video.{k}": v.detach().float().contiguous().cpu() for k, v in video.state_dict().items()}
    state.update({f"audio.{k}": v.detach().float().contiguous().cpu() for k, v in audio.state_dict().items()})
    meta = {"format": "harmony-tiny-codecs/1",
            "video": json.dumps({"latent_channels": video.latent_channels, "width": video.width})}
    meta.update({k: str(v) for k, v in (metadata or {}).items()})
    save_safetensors(state, path, meta)


def load_codecs(path: str | None = None, device="cpu") -> tuple[VideoCodec, AudioCodec]:
    """Load ``(VideoCodec, AudioCodec)`` from a safetensors file (default: the bundled one)."""
    path = DEFAULT_CODECS_PATH if path is None else path
    tensors, meta = _load_state(path, "codec weights")
    cfg = json.loads(meta.get("video", "{}"))
    video = VideoCodec(**cfg)
    audio = AudioCodec()
    for name, module in (("video", video), ("audio", audio)):
        sub = {k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(name + ".")}
        missing, unexpected = module.load_state_dict(sub, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"codec weights {path!r}: {name} codec keys do not match "
                f"(missing {sorted(missing)[:10]}, unexpected {sorted(unexpected)[:10]}); "
                "the file was not written by harmony.codecs.save_codecs."
            )
    return video.to(device).eval(), audio.to(device).eval()


# --------------------------------------------------------------------------- #
# training data, training, evaluation (CLI)
# --------------------------------------------------------------------------- #

def synthetic_clip(seed: int, seconds: float = 2.0, size: int = 64):
    """A simple non-world clip (moving squares + clicks/tones) for unit tests.

    Returns ``(frames [F,size,size,3], wave [T], onset_times)``.
    """
    g = torch.Generator().manual_seed(seed)
    Fr, T = int(round(seconds * FPS)), int(round(seconds * SAMPLE_RATE))
    bg = torch.rand(3, generator=g) * 0.5
    frames = bg.expand(Fr, size, size, 3).clone()
    for _ in range(int(torch.randint(1, 4, (1,), generator=g))):
        colour = torch.rand(3, generator=g)
        s = int(torch.randint(6, 20, (1,), generator=g))
        x0, y0 = (torch.rand(2, generator=g) * (size - s)).tolist()
        vx, vy = ((torch.rand(2, generator=g) - 0.5) * 3).tolist()
        for f in range(Fr):
            x = int(min(max(x0 + vx * f, 0), size - s))
            y = int(min(max(y0 + vy * f, 0), size - s))
            frames[f, y : y + s, x : x + s] = colour
    wave = torch.zeros(T)
    t = torch.arange(T) / SAMPLE_RATE
    onsets = sorted((torch.rand(3, generator=g) * (seconds - 0.3) + 0.1).tolist())
    for i, on in enumerate(onsets):
        f0 = float(100 + 300 * torch.rand(1, generator=g))
        dt = (t - on).clamp(min=0)
        amp = torch.where(t >= on, torch.exp(-dt * 12), torch.zeros_like(t)) * 0.3
        if i % 2:  # harmonic tone
            sig = sum(torch.sin(2 * math.pi * k * f0 * dt) / k for k in range(1, 6))
        else:      # click / noise burst
            sig = torch.randn(T, generator=g) * torch.exp(-dt * 40)
        wave += amp * sig
    return frames, wave.clamp(-1, 1), onsets


def _train_clips(n: int, seconds: float, offset: int = 0):
    """Rendered world clips of training seeds ``offset .. offset+n-1`` (never held-out ones)."""
    from .. import world

    for seed in range(offset, offset + n):
        assert not world.is_heldout(seed)
        yield world.render(world.sample_scene(seed, seconds=seconds))


def train_video_codec(codec: VideoCodec, minutes: float = 4.0, clips: int = 256, seconds: float = 3.0,
                      batch: int = 24, lr: float = 2e-3, motion_weight: float = 2.0, seed_offset: int = 0,
                      log=print) -> dict:
    """Train ``codec`` on world frames for ``minutes`` of wall time; returns stats.

    Loss: MSE on frames + ``motion_weight`` x MSE on frame differences, so the
    small moving parts (mouths, bouncing objects) the sync depends on count.
    """
    log(f"rendering {clips} training clips ...")
    data = torch.stack([torch.from_numpy(c.frames).mul(255).round().to(torch.uint8)
                        for c in _train_clips(clips, seconds, seed_offset)])
    data = data.permute(0, 1, 4, 2, 3).contiguous()                  # uint8 [N,F,3,H,W]
    N, Fr = data.shape[:2]
    opt = torch.optim.AdamW(codec.parameters(), lr=lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(0)
    t0, step, deadline = time.time(), 0, time.time() + minutes * 60
    codec.train()
    ema = None
    while time.time() < deadline:
        frac = (time.time() - t0) / (minutes * 60)
        for grp in opt.param_groups:  # 50-step warm-up, then cosine decay over the time budget
            grp["lr"] = lr * min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
        i = torch.randint(0, N, (batch,), generator=g)
        f = torch.randint(0, Fr - 1, (batch,), generator=g)
        pair = torch.stack([data[i, f], data[i, f + 1]], 1).flatten(0, 1).float() / 255  # [2b,3,H,W]
        rec = codec.decode_raw(codec.encode_raw(pair))
        loss_frame = F.mse_loss(rec, pair)
        d_rec, d_true = rec[1::2] - rec[0::2], pair[1::2] - pair[0::2]
        loss = loss_frame + motion_weight * F.mse_loss(d_rec, d_true)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema = loss_frame.item() if ema is None else 0.95 * ema + 0.05 * loss_frame.item()
        step += 1
        if step % 50 == 0:
            log(f"step {step}  frame mse {ema:.5f}  psnr {-10 * math.log10(ema):.2f} dB  ({time.time() - t0:.0f}s)")
    codec.eval()
    # latent statistics -> unit variance
    with torch.no_grad():
        zs = torch.cat([codec.encode_raw(data[j, ::2].float() / 255) for j in range(min(N, 64))])
        codec.latent_mean.copy_(zs.mean((0, 2, 3)))
        codec.latent_std.copy_(zs.std((0, 2, 3)).clamp(min=1e-3))
    return {"steps": step, "train_frame_mse": ema, "clips": N, "seed_offset": seed_offset, "minutes": minutes}


def fit_audio_stats(codec: AudioCodec, clips: int = 64, seconds: float = 3.0) -> None:
    """Set ``latent_mean`` / ``latent_std`` from the features of world clips."""
    waves = torch.stack([torch.from_numpy(c.wave) for c in _train_clips(clips, seconds, offset=100_000)])
    with torch.no_grad():
        z = codec.features(waves).reshape(-1, codec.latent_channels)
    codec.latent_mean.copy_(z.mean(0))
    codec.latent_std.copy_(z.std(0).clamp(min=0.05))


def log_mel(wave: torch.Tensor, n_mels: int = 80) -> torch.Tensor:
    """log10 mel magnitude (MMAudio-16k style: n_fft 1024, hop 256) of ``wave [B,T]`` -> ``[B,80,frames]``,
    floored at 1e-5 (silence)."""
    win = torch.hann_window(1024, device=wave.device)
    spec = torch.stft(wave, 1024, 256, window=win, center=True, return_complex=True).abs()
    fb = band_filterbank(1024, n_mels + 2).to(wave.device)[1:-1]
    return torch.log10((fb @ spec).clamp(min=1e-5))


def audio_metrics(ref: torch.Tensor, rec: torch.Tensor, range_db: float = 60.0) -> dict:
    """SNR (dB), log-spectral distance (dB; 80-band log-mel, both floored at
    ``range_db`` below the reference clip's peak) and 8 ms loudness-envelope
    correlation between ``ref`` and ``rec`` (``[B, T]``)."""
    T = min(ref.shape[-1], rec.shape[-1])
    ref, rec = ref[..., :T], rec[..., :T]
    snr = 10 * torch.log10(ref.pow(2).sum(-1) / ((ref - rec).pow(2).sum(-1) + 1e-12) + 1e-12)
    a, b = log_mel(ref), log_mel(rec)
    floor = a.amax((1, 2), keepdim=True) - range_db / 20
    a, b = a.maximum(floor), b.maximum(floor)
    lsd = (20 * (a - b)).pow(2).mean(1).sqrt().mean(-1)   # dB, RMS over bands, mean over frames
    n = T // 128
    ea = ref[..., : n * 128].reshape(-1, n, 128).pow(2).mean(-1).add(1e-8).log()
    eb = rec[..., : n * 128].reshape(-1, n, 128).pow(2).mean(-1).add(1e-8).log()
    ea, eb = ea - ea.mean(-1, keepdim=True), eb - eb.mean(-1, keepdim=True)
    corr = (ea * eb).sum(-1) / (ea.norm(dim=-1) * eb.norm(dim=-1) + 1e-9)
    return {"snr_db": snr.mean().item(), "lsd_db": lsd.mean().item(), "envelope_corr": corr.mean().item()}


def video_psnr(ref: torch.Tensor, rec: torch.Tensor) -> float:
    """Mean per-clip PSNR (dB) for frames in 0..1."""
    mse = (ref - rec).pow(2).flatten(1).mean(-1)
    return (-10 * torch.log10(mse.clamp(min=1e-10))).mean().item()


def evaluate_codecs(video: VideoCodec, audio: AudioCodec, n_per_split: int = 4, seconds: float = 3.0,
                    with_sync: bool = True) -> dict:
    """Reconstruction error on held-out world clips (``n_per_split`` per split) and,
    with ``harmony.metrics``, how the codec round trip changes sync and events."""
    from .. import world

    clips = [world.render(world.sample_scene(s, split, seconds))
             for split in world.SPLITS for s in world.heldout_seeds(split, n_per_split)]
    frames = torch.stack([torch.from_numpy(c.frames) for c in clips])
    waves = torch.stack([torch.from_numpy(c.wave) for c in clips])
    t0 = time.time()
    with torch.no_grad():
        v_rec = video.decode(video.encode(frames))
    tv = time.time() - t0
    t0 = time.time()
    with torch.no_grad():
        a_rec = audio.decode(audio.encode(waves), length=waves.shape[-1])
    ta = time.time() - t0
    out = {"clips": len(clips), "seconds": seconds, "video_psnr_db": video_psnr(frames, v_rec),
           "video_roundtrip_s_per_clip": tv / len(clips), "audio_roundtrip_s_per_clip": ta / len(clips)}
    out.update({f"audio_{k}": v for k, v in audio_metrics(waves, a_rec).items()})
    if with_sync:
        out.update(sync_change(clips, v_rec, a_rec))
    return out


def sync_change(clips, v_rec: torch.Tensor, a_rec: torch.Tensor) -> dict:
    """Sync / event metrics of ``harmony.metrics`` on real clips, raw and through the codecs.

    Variants: ``raw``; ``codec`` (both decoded); ``audio_codec`` (real frames,
    decoded audio); ``video_codec`` (decoded frames, real audio). Event F1 is
    against the ground truth at +-1 video frame.
    """
    from .. import metrics

    fps, sr = FPS, SAMPLE_RATE
    acc: dict[str, list] = {}

    def add(key, value):
        if value == value:  # skip nan
            acc.setdefault(key, []).append(float(value))

    for i, clip in enumerate(clips):
        fr_raw, wv_raw = clip.frames, clip.wave
        fr_rec, wv_rec = v_rec[i].numpy(), a_rec[i].numpy()
        gt = clip.event_times
        variants = {"raw": (fr_raw, wv_raw), "codec": (fr_rec, wv_rec),
                    "audio_codec": (fr_raw, wv_rec), "video_codec": (fr_rec, wv_raw)}
        for name, (fr, wv) in variants.items():
            off, conf = metrics.av_offset(fr, fps, wv, sr)
            add(f"{name}_abs_offset_s", abs(off))
            add(f"{name}_sync_conf", conf)
        for name, wv in (("raw", wv_raw), ("codec", wv_rec)):
            add(f"{name}_audio_event_f1", metrics.event_f1(
                metrics.detect_audio_events(wv, sr, fps, num_frames=len(fr_raw)), gt, 1.0 / fps))
            if clip.ref_voice is not None:
                add(f"{name}_voice_pitch_err_st", metrics.voice_pitch_error(wv, clip.ref_voice, sr))
        for name, fr in (("raw", fr_raw), ("codec", fr_rec)):
            add(f"{name}_visual_event_f1", metrics.event_f1(metrics.detect_visual_events(fr, fps), gt, 1.0 / fps))
    return {f"sync_{k}": sum(v) / len(v) for k, v in acc.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harmony.codecs", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    tr = sub.add_parser("train", help="train the video codec, fit both codecs' latent stats, save")
    tr.add_argument("--out", default=DEFAULT_CODECS_PATH)
    tr.add_argument("--minutes", type=float, default=4.0)
    tr.add_argument("--clips", type=int, default=256)
    tr.add_argument("--threads", type=int, default=1)
    tr.add_argument("--init", default=None, help="continue from this codec file instead of random weights")
    tr.add_argument("--lr", type=float, default=2e-3)
    tr.add_argument("--seed-offset", type=int, default=0, help="first training seed")
    ev = sub.add_parser("eval", help="reconstruction + sync metrics on held-out world seeds")
    ev.add_argument("--weights", default=DEFAULT_CODECS_PATH)
    ev.add_argument("--n", type=int, default=4, help="held-out clips per split")
    ev.add_argument("--seconds", type=float, default=3.0)
    ev.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.cmd == "train":
        video, audio = load_codecs(args.init) if args.init else (VideoCodec(), AudioCodec())
        log = lambda m: print(m, flush=True)  # noqa: E731
        stats = train_video_codec(video, minutes=args.minutes, clips=args.clips, lr=args.lr,
                                  seed_offset=args.seed_offset, log=log)
        fit_audio_stats(audio)
        save_codecs(video, audio, args.out, metadata={"train": json.dumps(stats)})
        log(f"saved {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB): {stats}")
    else:
        video, audio = load_codecs(args.weights)
        res = evaluate_codecs(video, audio, n_per_split=args.n, seconds=args.seconds)
        print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
