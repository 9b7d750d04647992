"""MMAudio's 16 kHz audio codec (mel + mel VAE + BigVGAN vocoder) behind the toy codec's interface.

Files people have:

- ``v1-16.pth`` (MMAudio ``ext_weights``): the VAE, raw weights, upstream names;
- ``best_netG.pt`` (MMAudio ``ext_weights``): the vocoder, ``{"generator": state_dict}``,
  weight-norm (``weight_g``/``weight_v``) or plain form;
- ComfyUI's single MMAudio VAE file: ``vae.*`` (weights already normalised), ``vocoder.*``
  (plain) and ``mel_converter.*`` (``mel_basis``/``hann_window``, not needed: rebuilt here).

Pickle-based files are read only through ``torch.load(weights_only=True)``, which refuses
anything but tensors and plain containers; safetensors files are read directly.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..weightfile import read_state_dict
from .bigvgan import BigVGANVocoder, load_bigvgan
from .contract import MMAUDIO_16K, num_latents
from .mel import MelSpectrogram16k
from .mmaudio_vae import MMAudioVAE, load_mmaudio_vae

SILENCE_SECONDS = 10.0  # the silence encoded for the SyncCFG anchor (MMAudioCodec.silence_token)


class MMAudioCodec(nn.Module):
    """Waveform (16 kHz, mono) <-> MMAudio latents ``[L, 20]``, sequence-major, 31.25 latents/s.

    Same interface as the toy ``AudioCodec``: ``encode(wave [B, T]) -> [B, L, 20]``,
    ``decode(latent [B, L, 20], length=None) -> wave [B, L*512]``, ``num_latents(T)``,
    ``latent_channels`` = 20, ``sample_rate`` = 16000, ``hop_length`` = 512,
    ``latent_rate`` = 31.25. Unbatched calls also work: ``encode(wave [T]) -> [L, 20]`` and
    ``decode(latent [L, 20]) -> wave [L*512]``.

    Pipeline: ``encode`` = mel (80 bins, hop 256) -> VAE encoder -> posterior mean (as Ovi's
    ``wrapped_encode``; ``sample=True`` draws from the posterior instead) -> ``[L, 20]``.
    ``decode`` = VAE decoder -> mel -> BigVGAN -> waveform. No extra latent scaling: the
    latents are what Ovi's audio tower sees.

    **Latent count.** One latent covers 512 samples (two 256-sample mel hops). A clip of
    ``N`` samples gives ``L = ceil(N / 512)`` latents (at least 1): a partial last hop is
    zero-padded (silence) at the end before the mel is taken, so no sample is dropped;
    ``decode`` returns ``L * 512`` samples, cut or padded to ``length`` when given. When ``N`` is a
    multiple of 512 nothing is padded and the result is exactly MMAudio's; MMAudio itself
    drops a partial hop instead (``floor(N / 512)`` latents). For ``S`` seconds:
    ``L = ceil(31.25 * S)``, e.g. 5 s -> 157 latents (Ovi's ``audio_latent_length``), which
    decode to 80,384 samples (5.024 s).
    """

    latent_channels = MMAUDIO_16K.latent_channels
    sample_rate = MMAUDIO_16K.sample_rate
    hop_length = MMAUDIO_16K.hop_length
    latent_rate = MMAUDIO_16K.latent_rate  # 31.25

    def __init__(self, vae: MMAudioVAE, vocoder: BigVGANVocoder | None = None):
        super().__init__()
        if vae.embed_dim != self.latent_channels:
            raise ValueError("MMAudioCodec: expects the 16 kHz VAE (20 latent channels) and a x256 vocoder")
        self.mel = MelSpectrogram16k().to(vae.data_mean.device)
        self.vae = vae
        self.vocoder = None
        if vocoder is not None:
            self.attach_vocoder(vocoder)

    def attach_vocoder(self, vocoder: BigVGANVocoder) -> "MMAudioCodec":
        """Add the vocoder later (encoding needs only the VAE; the real-scale stack loads the vocoder
        at decode time)."""
        if vocoder.hop_length * self.vae.time_downsample != self.hop_length:
            raise ValueError("MMAudioCodec: expects the 16 kHz VAE (20 latent channels) and a x256 vocoder")
        self.vocoder = vocoder
        return self

    @classmethod
    def from_files(cls, vae, vocoder=None, device="cpu", dtype=torch.float32,
                   vae_normalized: bool | None = None) -> "MMAudioCodec":
        """Load from ``vae`` (``v1-16.pth`` or ComfyUI's MMAudio file) and ``vocoder`` (``best_netG.pt``).

        ``vocoder`` may be omitted when ``vae`` is ComfyUI's combined file (it holds ``vocoder.*``).
        Paths or already-read state dicts are accepted.
        """
        vae_sd = read_state_dict(vae, "MMAudio VAE")
        if vocoder is None:
            if not any(k.startswith("vocoder.") for k in vae_sd):
                raise ValueError(f"MMAudioCodec: {vae if not isinstance(vae, Mapping) else 'the VAE state dict'} "
                                 "holds no vocoder; pass vocoder= (MMAudio's best_netG.pt, the 16 kHz BigVGAN).")
            voc_sd = vae_sd
        else:
            voc_sd = read_state_dict(vocoder, "BigVGAN vocoder")
        return cls(load_mmaudio_vae(vae_sd, normalized=vae_normalized, device=device, dtype=dtype),
                   load_bigvgan(voc_sd, device=device, dtype=dtype))

    @property
    def device(self) -> torch.device:
        return self.vae.data_mean.device

    @property
    def dtype(self) -> torch.dtype:
        return self.vae.encoder.conv_in.weight.dtype

    def num_latents(self, num_samples: int) -> int:
        """``ceil(num_samples / 512)``, at least 1."""
        return num_latents(num_samples, self.hop_length)

    def encode(self, wave: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None):
        """``wave [B, T]`` (or ``[T]``) at 16 kHz -> latent ``[B, L, 20]`` (or ``[L, 20]``), ``L = ceil(T/512)``."""
        if (not torch.is_tensor(wave) or wave.dim() not in (1, 2) or wave.shape[-1] == 0
                or not wave.is_floating_point()):
            what = f"{tuple(wave.shape)} {wave.dtype}" if torch.is_tensor(wave) else type(wave).__name__
            raise ValueError(f"MMAudioCodec.encode: wave must be a float tensor [T] or [B, T] of mono 16 kHz "
                             f"samples, got {what}; mix stereo to mono (wave.mean(0)) and resample to 16 kHz.")
        single = wave.dim() == 1
        x = (wave[None] if single else wave).to(device=self.device, dtype=torch.float32)
        L = self.num_latents(x.shape[-1])
        x = F.pad(x, (0, L * self.hop_length - x.shape[-1]))
        mel = self.mel(x)                                        # [B, 80, 2L]
        z = self.vae.encode(mel.to(self.dtype), sample=sample, generator=generator)
        z = z.transpose(1, 2).float()                            # [B, L, 20]
        return z[0] if single else z

    def decode_mel(self, latent: torch.Tensor) -> torch.Tensor:
        """Latent ``[B, L, 20]`` -> log10 mel ``[B, 80, 2L]`` (the VAE decoder alone)."""
        return self.vae.decode(latent.transpose(1, 2).to(device=self.device, dtype=self.dtype))

    def decode(self, latent: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """Latent ``[B, L, 20]`` (or ``[L, 20]``) -> wave ``[B, L*512]`` (or ``[L*512]``) in (-1, 1), float32."""
        if (not torch.is_tensor(latent) or latent.dim() not in (2, 3)
                or latent.shape[-1] != self.latent_channels or latent.shape[-2] == 0):
            shape = tuple(latent.shape) if torch.is_tensor(latent) else type(latent).__name__
            raise ValueError(f"MMAudioCodec.decode: latent must be [L, {self.latent_channels}] or "
                             f"[B, L, {self.latent_channels}] (sequence-major), got {shape}.")
        if self.vocoder is None:
            raise ValueError("MMAudioCodec.decode: no vocoder attached; pass MMAudio's best_netG.pt "
                             "(MMAudioCodec.from_files(vae, vocoder) or attach_vocoder).")
        single = latent.dim() == 2
        z = latent[None] if single else latent
        mel = self.decode_mel(z).to(self.vocoder.conv_pre.weight.dtype)
        wave = self.vocoder(mel)[:, 0].float()                   # [B, 512 L]
        if length is not None:
            T = wave.shape[-1]
            wave = wave[:, :length] if length <= T else F.pad(wave, (0, length - T))
        return wave[0] if single else wave

    def silent_latent(self, num_latents: int = 1) -> torch.Tensor:
        """Latent ``[num_latents, 20]`` of digital silence (mel + VAE of zeros)."""
        return self.encode(torch.zeros(num_latents * self.hop_length, device=self.device))

    @torch.no_grad()
    def silence_token(self, seconds: float = SILENCE_SECONDS) -> torch.Tensor:
        """The SyncCFG silent-audio anchor ``[20]``: the middle token of the latent of ``seconds`` of
        digital silence (the mel of zeros is -5 in every bin; VAE posterior mean).

        Away from its two ends, every token of a silent clip's latent is this one token: the
        encoder's convolutions see only silence there (the first 15 and last 13 latents are the ones
        they see the clip's edges from), and its one attention layer sees the same clip from every
        such position. Guidance repeats the token over the clip (``harmony.guidance``): the codec's
        latent of silence without its edge tokens, one anchor for every clip length (the attention
        makes the middle token drift slightly with the clip's length; 10 s fixes it). ``seconds``
        (default 10 s, 313 latents) sets the clip encoded."""
        n = self.num_latents(round(float(seconds) * self.sample_rate))
        return self.silent_latent(n)[n // 2]


__all__ = ["MMAudioCodec"]
