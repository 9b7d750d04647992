"""Evaluation of the tiny codecs (``python -m harmony.codecs eval``): reconstruction
error on held-out world clips and how the round trip changes sync / event metrics."""
from __future__ import annotations

import time

import torch

from .toy_audio import SAMPLE_RATE, AudioCodec, band_filterbank
from .toy_video import FPS, VideoCodec


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
        want = {o.colour for o in clip.scene.objects} | ({clip.scene.face.hair} if clip.scene.face else set())
        for name, fr in (("raw", fr_raw), ("codec", fr_rec)):
            add(f"{name}_visual_event_f1", metrics.event_f1(metrics.detect_visual_events(fr, fps), gt, 1.0 / fps))
            add(f"{name}_colour_f1", metrics.colour_f1(fr, want))
    return {f"sync_{k}": sum(v) / len(v) for k, v in acc.items()}
