"""Harmony Sample Input: the media bundled in workflows/samples as IMAGE / AUDIO / fps.

The templates use it so that they run as shipped, without copying files into
ComfyUI's input folder. The files are rendered from held-out seeds of the
synthetic world by ``python workflows/make_assets.py samples``.
"""
from __future__ import annotations

import os

import torch

from .harmony_lib import contract, media
from .types import HarmonyInputError, wave_to_audio

SAMPLES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "workflows", "samples")
MEDIA_EXTENSIONS = (".png", ".jpg", ".wav", ".mp4")


# an image or a sound has no frame rate, an image no sound: they get the real-scale codecs' (Ovi's)
STILL_FPS, SILENCE_RATE = float(contract.WAN22_VAE.fps), contract.MMAUDIO_16K.sample_rate


def sample_files() -> list[str]:
    if not os.path.isdir(SAMPLES_DIR):
        return []
    return sorted(f for f in os.listdir(SAMPLES_DIR) if f.lower().endswith(MEDIA_EXTENSIONS))


def load_sample(name: str):
    """-> (frames [F, H, W, 3] or None, (wave [C, T], sr) or None, fps)."""
    if name not in sample_files():
        raise HarmonyInputError(
            f"Harmony Sample Input: sample {name!r} is not in {SAMPLES_DIR}; available: {sample_files()}.")
    path = os.path.join(SAMPLES_DIR, name)
    ext = os.path.splitext(name)[1].lower()
    if ext in (".png", ".jpg"):
        from PIL import Image

        import numpy as np

        pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
        return torch.from_numpy(pixels)[None], None, STILL_FPS
    if ext == ".wav":
        wave, sr = media.read_audio(path)
        return None, (torch.as_tensor(wave, dtype=torch.float32), int(sr)), STILL_FPS
    frames, fps, wave, sr = media.read_video(path)
    audio = (torch.as_tensor(wave, dtype=torch.float32), int(sr)) if wave is not None else None
    return torch.as_tensor(frames, dtype=torch.float32), audio, float(fps)


class HarmonySampleInput:
    """Loads a bundled sample: frames as IMAGE, sound as AUDIO, and the frame rate."""

    @classmethod
    def INPUT_TYPES(cls):
        files = sample_files() or ["(no samples)"]
        return {"required": {
            "sample": (files, {"default": files[0],
                               "tooltip": "A file from the pack's workflows/samples folder."}),
        }}

    RETURN_TYPES = ("IMAGE", "AUDIO", "FLOAT")
    RETURN_NAMES = ("images", "audio", "fps")
    OUTPUT_TOOLTIPS = (
        "The frames (one frame for an image; one black 64x64 frame for a sound file).",
        "The sound (silence of one frame's length for an image).",
        "Frame rate of a video sample (24 for images and sounds).",
    )
    FUNCTION = "load"
    CATEGORY = "Harmony/inputs"
    DESCRIPTION = "Bundled sample media for the templates (first frame, driving audio / video, voice)."

    def load(self, sample):
        frames, audio, fps = load_sample(sample)
        if frames is None:
            frames = torch.zeros(1, 64, 64, 3)
        if audio is None:
            audio = (torch.zeros(1, max(1, int(SILENCE_RATE / fps))), SILENCE_RATE)
        return (frames, wave_to_audio(*audio), float(fps))
