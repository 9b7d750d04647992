"""The tiny analytic audio codec: a source-filter latent at 31.25 latents/s.

``AudioCodec``  wave ``[B, T]`` (16 kHz) <-> latent ``[B, ceil(T/512), 20]``: sub-frame
loudness envelope + pitch + voicing + spectral envelope, inverted with a
harmonic-plus-noise vocoder. Its loudness envelope has 8 ms resolution, so event
onsets survive the round trip. Nothing is learned but ``latent_mean`` / ``latent_std``.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..world.scene import SAMPLE_RATE  # the toy world's sample rate: the clips this codec codes
from .contract import num_latents


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
    latent_rate = SAMPLE_RATE / hop_length  # 31.25
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
    pitch_hold = 0.5     # octaves: a larger pitch fall inside a sounding event is held back (steady_pitch)
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
    def steady_pitch(self, log_f0: torch.Tensor, voicing: torch.Tensor, env: torch.Tensor) -> torch.Tensor:
        """``log_f0 [B, L]`` with pitch falls inside a sounding event held back.

        As a bell-like chime decays, its partials fade at different rates and the comb's best
        candidate flips between f0 and f0/2, f0/3, f0/4 from one latent to the next (a lamp's
        867 Hz chime reads 867, 433, 867, 216, 289 ... Hz). Resynthesised, each flip moves the whole
        harmonic comb: new partials appear, a burst of spectral flux, and the decoded chime gets
        false onsets a few frames after the real one. A real pitch change that large comes with a
        new sound: so a fall of more than ``pitch_hold`` octaves keeps the previous pitch unless the
        latent starts with a loudness onset (a sub-frame rise over ``onset_jump``) or follows an
        unvoiced one. Rises pass (the comb's errors here are sub-harmonics; holding rises would keep
        an octave error once made), and so do speech's glides (a fraction of an octave per 32 ms
        latent). Decoding only: the latents, and so a model trained on them, are untouched."""
        B, L = log_f0.shape
        if L < 2:
            return log_f0
        prev_env = torch.cat([env[:, :1, :1], env[:, :-1, -1:]], dim=1)             # [B, L, 1]
        onset = (torch.cat([prev_env, env], dim=-1).diff(dim=-1) > self.onset_jump).any(-1)
        unvoiced = voicing < self.voiced_threshold
        free = onset | unvoiced                          # a new sound, or no pitch to keep
        free[:, 1:] |= unvoiced[:, :-1]                  # the first voiced latent after an unvoiced one
        limit = self.pitch_hold * math.log(2)
        out = log_f0.clone()
        for i in range(1, L):
            hold = ~free[:, i] & (out[:, i - 1] - log_f0[:, i] > limit)
            out[:, i] = torch.where(hold, out[:, i - 1], log_f0[:, i])
        return out

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
        voicing = feats[..., self.n_sub + 1].clamp(0, 1)
        f0 = self.steady_pitch(feats[..., self.n_sub], voicing, env).exp().clamp(self.f0_min, self.f0_max)
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
        return num_latents(num_samples, self.hop_length)
