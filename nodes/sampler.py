"""Harmony SyncCFG Sampler: model + conditioning -> HARMONY_AV_LATENT.

The job follows from the conditioning: a first frame makes I2AV, driving
audio A2V, driving video V2A, nothing T2AV.
"""
from __future__ import annotations

import torch

from . import core_inputs, host
from .errors import actionable_errors
from .harmony_lib import guidance, jobs, pipeline, sampling
from .model_loader import managed
from .types import (HARMONY_AV_LATENT, HARMONY_CONDITIONING, HARMONY_MODEL, HarmonyInputError,
                    check_type, node_checks)

MEMORY_HINT = ("Lower seconds or width/height, or reload the model with offload=block_swap "
               "(fewer resident_blocks), offload=cpu or dtype=fp8_e4m3fn.")


def solvers() -> list[str]:
    return list(sampling.SOLVERS)


def guidance_modes() -> list[str]:
    return list(sampling.GUIDANCE_MODES)


def preview_frame(pipe, x0_video: torch.Tensor) -> torch.Tensor:
    """The first frame of a clean-estimate video latent, decoded by the model's video codec
    -> [H, W, 3] in 0..1 (one latent frame: the cheapest faithful picture)."""
    with torch.no_grad():
        frames = pipe.codecs.video.decode(x0_video[:1, :, :1].to(pipe.device))
    return frames[0, 0].clamp(0, 1).float().cpu()


def step_reporter(pipe, progress):
    """(callback, preview) for ``pipe.sample``: progress per step, and with previews wanted the
    step's clean estimate as a decoded frame. A failing preview decode turns previews off for
    the run (logged once) rather than failing the generation; ComfyUI's interrupt, raised by
    its progress hook, passes through."""
    if not progress.wants_preview:
        return (lambda step, total: progress.set(step, total)), None
    state = {"on": True}

    def preview(step, total, x0_video, x0_audio):
        image = None
        if state["on"]:
            try:
                image = preview_frame(pipe, x0_video)
            except Exception as e:  # noqa: BLE001 - a preview must not cost the result
                state["on"] = False
                print(f"[Harmony] previews off for this run: decoding the preview frame failed ({e})")
        progress.set(step, total, preview=image)

    return None, preview


class HarmonySyncCFGSampler:
    """Samples a joint audio-video latent with SyncCFG."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": (HARMONY_MODEL, {"tooltip": "From Harmony Model Loader."}),
            "conditioning": (HARMONY_CONDITIONING, {
                "tooltip": "From the text node, optionally through the audio / video nodes; "
                           "what it holds picks T2AV, I2AV, A2V or V2A."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFF, "control_after_generate": True,
                             "tooltip": "Noise seed; the same seed and settings give the same clip."}),
            "steps": ("INT", {"default": sampling.DEFAULT_STEPS, "min": 1, "max": 200,
                              "tooltip": "Sampling steps (the paper uses 40; 10-20 is enough for the tiny model)."}),
            "seconds": ("FLOAT", {"default": 2.0, "min": jobs.MIN_SECONDS, "max": jobs.largest_max_seconds(),
                                  "step": 0.1,
                                  "tooltip": "Clip length. With driving media, at most the media's length. "
                                             "At most the loaded model's limit (6 s for the bundled model); "
                                             "a longer value is refused with that limit."}),
            "width": ("INT", {"default": 0, "min": 0, "max": 2048, "step": 16,
                              "tooltip": "Frame width in pixels; 0 = the model's native size. With core VAEs (Ovi) a "
                                         "multiple of 32; a model with its own codecs has only its native size."}),
            "height": ("INT", {"default": 0, "min": 0, "max": 2048, "step": 16,
                               "tooltip": "Frame height in pixels; 0 = the model's native size. With core VAEs (Ovi) a "
                                          "multiple of 32; a model with its own codecs has only its native size."}),
            "shift": ("FLOAT", {"default": sampling.DEFAULT_SHIFT, "min": 0.1, "max": 20.0, "step": 0.1,
                                "tooltip": "Flow-matching schedule shift (paper: 5)."}),
            "guidance": (guidance_modes(), {
                "default": "synccfg",
                "tooltip": "synccfg: contrast the joint prediction with a silent-audio / static-video "
                           "anchor (the paper). cfg: plain text CFG. none: no guidance (fastest)."}),
            "sv": ("FLOAT", {"default": guidance.DEFAULT_SV, "min": 0.0, "max": 20.0, "step": 0.1,
                             "tooltip": "Video guidance scale; 1 = no guidance. synccfg: how strongly the "
                                        "picture follows the sound (paper: 3). cfg: the text-CFG scale of "
                                        "the video. Unused with guidance=none."}),
            "sa": ("FLOAT", {"default": guidance.DEFAULT_SA, "min": 0.0, "max": 20.0, "step": 0.1,
                             "tooltip": "Audio guidance scale; 1 = no guidance. synccfg: how strongly the "
                                        "sound follows the picture (paper: 2). cfg: the text-CFG scale of "
                                        "the audio. Unused with guidance=none."}),
            "text_cfg": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 20.0, "step": 0.1,
                                   "tooltip": "Text CFG on top of synccfg or none; 1 = off (one batched pass "
                                              "fewer). Unused with guidance=cfg, where sv / sa are the text scales."}),
            "solver": (solvers(), {"default": sampling.DEFAULT_SOLVER, "tooltip": "ODE solver."}),
        }, "optional": {
            # optional: a graph saved before this widget existed (API format too) still validates, at 0
            "st": ("FLOAT", {"default": guidance.DEFAULT_ST, "min": 0.0, "max": 10.0, "step": 0.1,
                             "tooltip": "Timing anchor on top of synccfg, A2V and V2A only (ours, not the paper's): "
                                        "the generated picture or sound is pushed away from what the driving "
                                        "audio / video 3 frames early would give. 0 = off (the paper's "
                                        "SyncCFG); the bundled model's templates set its tuned value."}),
            "resync": ("FLOAT", {"default": sampling.DEFAULT_RESYNC, "min": 0.0, "max": 1.0, "step": 0.05,
                                 "tooltip": "Resync pass, T2AV and I2AV only (ours, not the paper's): the picture is "
                                            "sampled again as A2V from its own generated sound, over this share of "
                                            "the schedule (more steps: steps x resync), so that mouths and "
                                            "impacts land on the sound. 0 = off; the bundled model's templates "
                                            "set its tuned value."}),
            "video_vae": ("VAE", {"tooltip": "Core VAELoader with wan2.2_vae.safetensors: the video codec of "
                                             "umT5 models (Ovi), for the first frame, driving video and SyncCFG's "
                                             "blank-frame anchor. Leave empty for models with their own codecs."}),
            "audio_vae": ("VAE", {"tooltip": "Core VAELoader with the MMAudio 16 kHz VAE: the audio codec of umT5 "
                                             "models (Ovi). Leave empty for models with their own codecs."}),
        }}

    RETURN_TYPES = (HARMONY_AV_LATENT,)
    RETURN_NAMES = ("av_latent",)
    OUTPUT_TOOLTIPS = ("The joint audio-video latent; decode it with Harmony Decode.",)
    FUNCTION = "sample"
    CATEGORY = "Harmony/sampling"
    DESCRIPTION = "SyncCFG sampling of synchronized video and audio (T2AV / I2AV / A2V / V2A)."

    def sample(self, model, conditioning, seed, steps, seconds, width, height, shift, guidance,
               sv, sa, text_cfg, solver, st=0.0, video_vae=None, audio_vae=None, resync=0.0):
        node = "Harmony SyncCFG Sampler"
        check_type(model, HARMONY_MODEL, "model", node)
        check_type(conditioning, HARMONY_CONDITIONING, "conditioning", node)
        pipe = model
        video_vae = core_inputs.pick(node, "video VAE", ("the sampler's video_vae", video_vae),
                                     ("Harmony Video Conditioning's video_vae", conditioning.video_vae))
        audio_vae = core_inputs.pick(node, "audio VAE", ("the sampler's audio_vae", audio_vae),
                                     ("Harmony Audio Conditioning's audio_vae", conditioning.audio_vae))
        native = tuple(model.frame_size)
        size = (height or native[0], width or native[1])
        if core_inputs.is_unbound(model):  # core text encoder / codecs: the frame size is free (checked in bind)
            model = core_inputs.bind(model, node, clip=conditioning.clip, video_vae=video_vae,
                                     audio_vae=audio_vae, size=size)
        else:
            if size != native:  # the model's own codecs have one frame size
                raise HarmonyInputError(
                    f"{node}: this model generates {native[1]}x{native[0]} only (its own video codec); set "
                    "width and height to 0 (native size).")
            if video_vae is not None or audio_vae is not None or conditioning.clip is not None:
                model = core_inputs.bind(model, node, clip=conditioning.clip, video_vae=video_vae,
                                         audio_vae=audio_vae)
        if conditioning.job == "A2V+V2A":
            raise HarmonyInputError(
                f"{node}: the conditioning has both driving audio and driving video; keep one "
                "(driving audio makes A2V, driving video makes V2A).")
        with node_checks(node) as validate:  # the same checks as the API and the CLI, before any compute
            validate.sampling_args(
                seconds_value=seconds, seed=seed, steps=steps, shift=shift, sv=sv, sa=sa, text_cfg=text_cfg,
                st=st, resync=resync, guidance=guidance, solver=solver, min_seconds=pipeline.MIN_SECONDS,
                max_seconds=getattr(model, "max_seconds", pipeline.DEFAULT_MAX_SECONDS),
                guidance_modes=guidance_modes(), solvers=solvers(), via="node")
        progress = host.Progress(steps)
        callback, preview = step_reporter(model, progress)
        with actionable_errors(node, MEMORY_HINT):
            managed(pipe).load()  # ComfyUI's model management: loaded once, kept while memory allows
            latent = model.sample(
                conditioning.text, seconds=seconds, seed=seed, steps=steps, shift=shift,
                sv=sv, sa=sa, st=st, resync=resync, text_cfg=text_cfg, guidance=guidance, solver=solver,
                first_frame=conditioning.first_frame, driving_audio=conditioning.driving_audio,
                driving_video=conditioning.driving_video, ref_voice=conditioning.ref_voice,
                callback=callback, cancel=host.check_interrupt, fit=conditioning.fit, preview=preview)
        return (latent,)
