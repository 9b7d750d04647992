"""Harmony Save AV: frames + audio -> an mp4 (H.264 + AAC) shown in the node.

Like core SaveVideo it embeds the workflow and the prompt in the file's
metadata, so dropping the mp4 onto ComfyUI restores the graph that made it.
The node's UI message (key ``harmony_av``) carries what the frontend player
(js/harmony_av.js) draws: the file, a frame strip, the waveform envelope and
the measured audio-video offset.
"""
from __future__ import annotations

import base64
import io
import os

import torch
import torch.nn.functional as F

from . import host
from .harmony_lib import media, metrics
from .mp4_metadata import embed_metadata
from .types import HarmonyInputError, audio_to_wave, image_frames

UI_KEY = "harmony_av"
STRIP_FRAMES = 8
STRIP_HEIGHT = 48
ENVELOPE_POINTS = 400


def waveform_envelope(wave: torch.Tensor, points: int = ENVELOPE_POINTS) -> list[float]:
    """Peak |amplitude| of the mono mix in ``points`` equal time slices (0..1)."""
    mono = wave.float().mean(0).abs()
    points = max(1, min(points, mono.numel()))
    n = mono.numel() // points * points
    peaks = mono[:n].reshape(points, -1).amax(-1)
    return [round(float(p), 4) for p in peaks.clamp(0, 1)]


def frame_strip_jpeg(frames: torch.Tensor, count: int = STRIP_FRAMES, height: int = STRIP_HEIGHT) -> str:
    """``count`` evenly spaced frames side by side, as a base64 JPEG."""
    from PIL import Image

    idx = torch.linspace(0, frames.shape[0] - 1, min(count, frames.shape[0])).round().long()
    picks = frames[idx].permute(0, 3, 1, 2)
    width = max(1, round(picks.shape[-1] * height / picks.shape[-2]))
    thumbs = F.interpolate(picks, size=(height, width), mode="bilinear", align_corners=False)
    strip = torch.cat(list(thumbs), dim=-1).permute(1, 2, 0)
    pixels = (strip.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=85)
    return base64.b64encode(buf.getvalue()).decode("ascii")


SYNC_MIN_CONFIDENCE = 0.58
"""Below this confidence the measured offset is no evidence either way and the badge says
"uncertain": 90 % of world clips paired with *another* clip's audio stay below it, while
85 % of clips with their own audio reach it (scripts/calibrate_sync_confidence.py, 40 clips)."""


def sync_level(offset_s, confidence, fps) -> str:
    """The badge's verdict: "none" (not measured), "uncertain" (confidence below
    ``SYNC_MIN_CONFIDENCE``), else by |offset| in frames: "good" (<= 1), "fair" (<= 3), "off"."""
    if offset_s is None or fps is None or fps <= 0 or offset_s != offset_s:
        return "none"
    if confidence is None or not confidence >= SYNC_MIN_CONFIDENCE:
        return "uncertain"
    frames = abs(offset_s) * fps
    return "good" if frames <= 1 + 1e-9 else "fair" if frames <= 3 + 1e-9 else "off"


def measure_offset(frames, fps, wave, sample_rate):
    """(offset seconds, confidence) from harmony.metrics, or (None, None) if it cannot measure."""
    try:
        offset, confidence = metrics.av_offset(frames, fps, wave, sample_rate)
    except (ImportError, AttributeError, ValueError) as e:
        print(f"[harmony] sync offset not measured: {e}")
        return None, None
    return float(offset), float(confidence)


class HarmonySaveAV:
    """Writes an mp4 with sound, embeds the workflow, and plays it in the node."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "Frames, e.g. from Harmony Decode."}),
                "audio": ("AUDIO", {"tooltip": "The sound track, e.g. from Harmony Decode."}),
                "fps": ("FLOAT", {"default": 24.0, "min": 1.0, "max": 120.0, "step": 0.001,
                                  "tooltip": "Frame rate; wire Harmony Decode's fps here."}),
                "filename_prefix": ("STRING", {"default": "harmony/clip",
                                               "tooltip": "Output file name prefix (may include a subfolder)."}),
                "save_output": ("BOOLEAN", {"default": True,
                                            "tooltip": "On: save to the output folder. Off: preview only (temp folder)."}),
                "measure_sync": ("BOOLEAN", {"default": True,
                                             "tooltip": "Measure the audio-video offset and show it on the node."}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "save"
    CATEGORY = "Harmony/output"
    DESCRIPTION = ("Saves an mp4 (H.264 + AAC) with the workflow embedded and shows it with a frame "
                   "strip, the waveform and the measured sync offset.")

    def save(self, images, audio, fps, filename_prefix, save_output, measure_sync,
             prompt=None, extra_pnginfo=None):
        frames = image_frames(images, "images")
        wave, sample_rate = audio_to_wave(audio, "audio")
        if fps <= 0:
            raise HarmonyInputError(f"Harmony Save AV: fps must be positive, got {fps}.")
        kind = "output" if save_output else "temp"
        folder = host.output_directory() if save_output else host.temp_directory()
        prefix = filename_prefix if save_output else "harmony_preview/clip"
        full, stem, counter, subfolder = host.save_path(prefix, folder, frames.shape[2], frames.shape[1])
        filename = f"{stem}_{counter:05}_.mp4"
        path = os.path.join(full, filename)
        host.check_interrupt()
        media.write_mp4(path, frames, float(fps), wave, sample_rate)
        metadata = {}
        if not host.metadata_disabled():
            if prompt is not None:
                metadata["prompt"] = prompt
            for key, value in (extra_pnginfo or {}).items():
                metadata[key] = value
        if metadata:
            embed_metadata(path, metadata)
        offset, confidence = (None, None)
        if measure_sync:
            offset, confidence = measure_offset(frames, float(fps), wave, sample_rate)
        clip = {
            "filename": filename, "subfolder": subfolder, "type": kind, "format": "video/mp4",
            "fps": float(fps), "frames": int(frames.shape[0]),
            "seconds": round(frames.shape[0] / float(fps), 3),
            "audio_seconds": round(wave.shape[-1] / float(sample_rate), 3),
            "width": int(frames.shape[2]), "height": int(frames.shape[1]),
            "offset_s": offset, "confidence": confidence,
            "sync_level": sync_level(offset, confidence, float(fps)),
            "min_confidence": SYNC_MIN_CONFIDENCE,
            "envelope": waveform_envelope(wave),
            "strip": frame_strip_jpeg(frames),
        }
        return {"ui": {UI_KEY: [clip]}}
