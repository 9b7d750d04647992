"""The real-scale codecs behind the pipeline's codec interface, read from their files when first used.

:class:`LazyWanVAE` (the Wan2.2 VAE: encoder half and decoder half each read on first use) and
:class:`LazyMMAudioCodec` (MMAudio's 16 kHz VAE, and its BigVGAN vocoder only at decode). Both are
checked from their files' headers when built (names, shapes); a part once read is kept, on the
device or, with an offload mode, on the CPU and moved to the device only while it runs.
"""
from __future__ import annotations

import os
from typing import Callable, Optional

import torch

from .codecs.contract import MMAUDIO_16K, WAN22_VAE, FrameRule, HopRule
from .components import ComponentError, component, usual
from .framesize import DEFAULT_SIZE
from .weightfile import CheckpointError, read_state_dict
from .weightfile import peek as peek_tensors


class _Staged:
    """Parts kept on ``store`` (the device, or the CPU with an offload mode) and moved to ``device``
    only while they run."""

    def __init__(self, device, store):
        self.device = torch.device(device)
        self.store = torch.device(store if store is not None else device)

    def _on_device(self, *modules):
        import contextlib

        @contextlib.contextmanager
        def ctx():
            if self.store == self.device:
                yield
                return
            for m in modules:
                m.to(self.device)
            try:
                yield
            finally:
                for m in modules:
                    m.to(self.store)
        return ctx()


# --------------------------------------------------------------------------- codecs, loaded when needed

class LazyWanVAE(FrameRule, _Staged):
    """The Wan2.2 VAE behind the video-codec interface, each half read from its file on first use:
    the encoder (``encoder.*``, ``conv1.*``) when frames are encoded (a first frame, a driving video,
    or SyncCFG's blank frame), the decoder (``decoder.*``, ``conv2.*``) when latents are decoded.
    A half is read once and kept. The file's names and shapes are checked when this is built
    (headers only). ``loaded``: the halves read so far."""

    PARTS = {"encoder": ("encoder.", "conv1."), "decoder": ("decoder.", "conv2.")}
    fps, temporal_stride, spatial_stride = WAN22_VAE.fps, WAN22_VAE.temporal_stride, WAN22_VAE.spatial_stride

    def __init__(self, path, device="cpu", dtype=torch.float32, store=None, frame_size=DEFAULT_SIZE,
                 log: Callable[[str], None] = print):
        from .codecs.wan_vae import WanVAE, config_from_state_dict, strip_prefix

        super().__init__(device, store)
        self.path, self.dtype, self.log = os.fspath(path), dtype, log
        peek = peek_tensors(self.path, "--video-vae")
        self._names = strip_prefix({k: k for k in peek})  # model name -> name in the file
        meta = {k: peek[v] for k, v in self._names.items()}
        try:
            cfg = config_from_state_dict(meta, f"--video-vae {self.path}")
        except ValueError as e:
            raise ComponentError(f"{e} (--video-vae: {usual('video_vae')})") from None
        with torch.device("meta"):
            self.vae = WanVAE(**cfg).eval()
        want = self.vae.state_dict()
        missing, unexpected = sorted(set(want) - set(meta)), sorted(set(meta) - set(want))
        bad = [k for k in want if k in meta and want[k].shape != meta[k].shape]
        if missing or unexpected or bad:
            raise ComponentError(f"--video-vae {self.path}: tensors do not match the Wan2.2 VAE (missing "
                                 f"{missing[:5]}, unexpected {unexpected[:5]}, wrong shapes {bad[:5]}); use "
                                 f"{usual('video_vae')}")
        self.latent_channels = self.z_dim = cfg["z_dim"]
        self.frame_size = tuple(frame_size)
        self.loaded: set = set()

    def _ensure(self, part: str):
        from .codecs.wan_vae import LATENT_MEAN, LATENT_STD

        if part in self.loaded:
            return
        self.log(f"reading the Wan2.2 VAE {part} ({os.path.basename(self.path)})")
        keys = [k for k in self._names if k.startswith(self.PARTS[part])]
        file_sd = read_state_dict(self.path, "--video-vae", [self._names[k] for k in keys])
        sd = {k: file_sd[self._names[k]].to(device=self.store, dtype=self.dtype) for k in keys}
        del file_sd
        self.vae.load_state_dict(sd, strict=False, assign=True)
        if not self.loaded:  # the non-persistent latent statistics, off the meta device
            z = self.z_dim
            mean, std = ((torch.tensor(LATENT_MEAN), torch.tensor(LATENT_STD)) if z == len(LATENT_MEAN)
                         else (torch.zeros(z), torch.ones(z)))
            self.vae.latent_mean, self.vae.latent_std = mean.to(self.store), std.to(self.store)
        self.loaded.add(part)

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames [B, T, H, W, 3]`` 0..1 -> ``[B, 48, 1 + (T-1)//4, H/16, W/16]`` (``WanVAE.encode``)."""
        self._ensure("encoder")
        v = self.vae
        with self._on_device(v.encoder, v.conv1):
            return v.encode(frames)

    @torch.no_grad()
    def decode(self, latent: torch.Tensor, tile=None, tile_overlap=None, out_device=None) -> torch.Tensor:
        """``[B, 48, F, h, w]`` -> ``frames [B, 1 + 4(F-1), 16h, 16w, 3]`` (``WanVAE.decode``, tiled)."""
        self._ensure("decoder")
        v = self.vae
        with self._on_device(v.decoder, v.conv2):
            return v.decode(latent, tile, tile_overlap, out_device)


class LazyMMAudioCodec(HopRule, _Staged):
    """MMAudio's 16 kHz codec behind the audio-codec interface, read from its files on first use:
    the VAE (one file, encoder and decoder) when audio is encoded, SyncCFG's silence anchor is made
    or latents are decoded; the BigVGAN vocoder only when latents are decoded. Each file is read
    once and kept; both are checked when this is built (headers only). ``loaded``: what was read."""

    latent_channels = MMAUDIO_16K.latent_channels
    sample_rate = MMAUDIO_16K.sample_rate
    hop_length = MMAUDIO_16K.hop_length
    latent_rate = MMAUDIO_16K.latent_rate

    def __init__(self, vae_path, vocoder_path, device="cpu", dtype=torch.float32, store=None,
                 log: Callable[[str], None] = print):
        from .codecs.bigvgan import load_bigvgan
        from .codecs.mmaudio_vae import load_mmaudio_vae

        super().__init__(device, store)
        self.vae_path, self.vocoder_path = os.fspath(vae_path), os.fspath(vocoder_path)
        self.dtype, self.log = dtype, log
        for key, path, load in (("audio_vae", self.vae_path, load_mmaudio_vae),
                                ("vocoder", self.vocoder_path, load_bigvgan)):
            flag = component(key).flag
            peek = peek_tensors(path, flag)  # a bad file: WeightFileError, naming the flag
            try:  # the real loader on meta tensors: names, shapes and layout, no weights
                load(peek, device="meta")
            except (ValueError, KeyError, CheckpointError) as e:
                raise ComponentError(f"{flag} {path}: {str(e).splitlines()[0]} (expected {usual(key)})") from None
        self.codec = None
        self.loaded: set = set()

    def _ensure(self, vocoder: bool = False):
        from .codecs.bigvgan import load_bigvgan
        from .codecs.mmaudio import MMAudioCodec
        from .codecs.mmaudio_vae import load_mmaudio_vae

        if self.codec is None:
            self.log(f"reading the MMAudio VAE ({os.path.basename(self.vae_path)})")
            self.codec = MMAudioCodec(load_mmaudio_vae(self.vae_path, device=self.store, dtype=self.dtype))
            self.loaded.add("vae")
        if vocoder and self.codec.vocoder is None:
            self.log(f"reading the BigVGAN vocoder ({os.path.basename(self.vocoder_path)})")
            self.codec.attach_vocoder(load_bigvgan(self.vocoder_path, device=self.store, dtype=self.dtype))
            self.loaded.add("vocoder")
        return self.codec

    @torch.no_grad()
    def encode(self, wave: torch.Tensor, **kw) -> torch.Tensor:
        c = self._ensure()
        with self._on_device(c):
            return c.encode(wave, **kw)

    @torch.no_grad()
    def decode(self, latent: torch.Tensor, length: Optional[int] = None) -> torch.Tensor:
        c = self._ensure(vocoder=True)
        with self._on_device(c):
            return c.decode(latent, length)

    @torch.no_grad()
    def silence_token(self, **kw) -> torch.Tensor:
        """SyncCFG's silent-audio anchor: :meth:`MMAudioCodec.silence_token`."""
        c = self._ensure()
        with self._on_device(c):
            return c.silence_token(**kw)
