"""Harmony Decode: HARMONY_AV_LATENT -> IMAGE frames, AUDIO, fps.

The outputs plug straight into core nodes: CreateVideo(images, fps, audio)
-> SaveVideo, PreviewAudio / SaveAudio, or Harmony Save AV.
"""
from __future__ import annotations

from . import core_inputs, host
from .errors import actionable_errors
from .types import (HARMONY_AV_LATENT, HARMONY_MODEL, HarmonyInputError, check_type,
                    wave_to_audio)


def check_latent_fits_model(model, latent, node: str) -> None:
    """A latent from another model (other channel counts) cannot be decoded by this one."""
    codecs = getattr(model, "codecs", None)
    for name, tensor, axis, codec in (("video", latent.video, 1, getattr(codecs, "video", None)),
                                      ("audio", latent.audio, -1, getattr(codecs, "audio", None))):
        want = getattr(codec, "latent_channels", None)
        if want is not None and tensor.shape[axis] != want:
            raise HarmonyInputError(
                f"{node}: the {name} latent has {tensor.shape[axis]} channels but this model's "
                f"{name} codec expects {want}. Wire the same model into the sampler and the decoder.")


class HarmonyDecode:
    """Decodes a joint latent to frames, a waveform and the frame rate."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": (HARMONY_MODEL, {"tooltip": "The model that sampled the latent."}),
            "av_latent": (HARMONY_AV_LATENT, {"tooltip": "From Harmony SyncCFG Sampler."}),
        }, "optional": {
            "video_vae": ("VAE", {"tooltip": "Core VAELoader with wan2.2_vae.safetensors (umT5 models: Ovi); "
                                             "decoded by core, tiled under --lowvram / --novram or when memory "
                                             "runs out. Leave empty for models with their own codecs."}),
            "audio_vae": ("VAE", {"tooltip": "Core VAELoader with the MMAudio 16 kHz VAE (umT5 models: Ovi). "
                                             "Leave empty for models with their own codecs."}),
            "keep_given": ("BOOLEAN", {"default": True, "tooltip": (
                "What you gave comes back as you gave it, not through the codecs: V2A's images are your driving "
                "video and A2V's audio your driving audio (at the model's size and rate), and a first frame "
                "(I2AV) gets back what the video codec lost of it wherever the frames still show it. Off: "
                "everything decoded from the latent.")}),
        }}

    RETURN_TYPES = ("IMAGE", "AUDIO", "FLOAT")
    RETURN_NAMES = ("images", "audio", "fps")
    OUTPUT_TOOLTIPS = (
        "The generated (or, for V2A, the driving) video frames [F, H, W, 3] in 0..1.",
        "The generated (or, for A2V, the driving) sound as AUDIO.",
        "Frame rate of the frames, for CreateVideo's fps.",
    )
    FUNCTION = "decode"
    CATEGORY = "Harmony/sampling"
    DESCRIPTION = "Decodes video frames and audio; chain into CreateVideo -> SaveVideo, PreviewAudio or Harmony Save AV."

    def decode(self, model, av_latent, video_vae=None, audio_vae=None, keep_given=True):
        node = "Harmony Decode"
        check_type(model, HARMONY_MODEL, "model", node)
        check_type(av_latent, HARMONY_AV_LATENT, "av_latent", node)
        if video_vae is not None or audio_vae is not None:
            size = tuple(av_latent.video.shape[-2:])
            stride = 16
            model = core_inputs.bind(model, node, video_vae=video_vae, audio_vae=audio_vae,
                                     size=(size[0] * stride, size[1] * stride) if video_vae is not None else None)
        check_latent_fits_model(model, av_latent, node)
        progress = host.Progress(2)
        host.check_interrupt()
        with actionable_errors(node, "Lower the sampler's seconds or width/height, or run "
                                     "ComfyUI with --lowvram."):
            frames, wave, sample_rate, fps = model.decode(av_latent, keep_given=bool(keep_given))
        progress.set(2)
        return (frames.float().cpu().contiguous(), wave_to_audio(wave, sample_rate), float(fps))
