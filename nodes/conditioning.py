"""Conditioning nodes: text, audio and video -> HARMONY_CONDITIONING.

The text node starts a conditioning; the audio and video nodes add media to
it. The sampler picks the job from what was added:
first frame -> I2AV, driving audio -> A2V, driving video -> V2A, none -> T2AV.
"""
from __future__ import annotations

from . import core_inputs, host
from .harmony_lib import media, pipeline
from .types import (HARMONY_CONDITIONING, HARMONY_MODEL, AVConditioning, HarmonyInputError,
                    audio_seconds, audio_to_wave, check_type, image_frames, node_checks, video_components)

MIN_REF_VOICE_SECONDS = 0.5
"""Shorter reference clips carry too little timbre; the paper uses 1-3 s."""

DRIVING_AUDIO = "driving audio (A2V)"
REFERENCE_VOICE = "reference voice"
BOTH = "driving audio + reference voice"

DRIVING_VIDEO = "driving video (V2A)"
FIRST_FRAME = "first frame (I2AV)"


class HarmonyTextConditioning:
    """Prompt, audio caption and transcript -> a new conditioning.

    The frontend draws a multiline box without its name; js/harmony_text_labels.js writes
    each box's name in its corner, and the placeholders say what goes in an empty box.
    """

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": (HARMONY_MODEL, {"tooltip": "From Harmony Model Loader."}),
            "prompt": ("STRING", {
                "multiline": True, "default": pipeline.DEMO_PROMPT,
                "placeholder": "prompt: what is seen (and heard), e.g. a small red ball bounces twice "
                               "on the left. plain blue background.",
                "tooltip": "prompt: what is seen (and heard): the video prompt."}),
            "audio_caption": ("STRING", {
                "multiline": True, "default": pipeline.DEMO_CAPTION,
                "placeholder": "audio caption: what is heard, e.g. two high thuds. (may stay empty)",
                "tooltip": "audio caption: what is heard: sounds, ambience, voice character. May be empty."}),
            "transcript": ("STRING", {
                "multiline": True, "default": "",
                "placeholder": "transcript: the words spoken, as syllables, e.g. ba lo mi (empty: no speech)",
                "tooltip": "transcript: words to be spoken (lip-synced). Empty for no speech."}),
        }, "optional": {
            "clip": ("CLIP", {"tooltip": "Core CLIPLoader with umt5_xxl_*.safetensors, type wan: the text "
                                         "encoder of umT5 models (Ovi, Harmony 5b). Leave empty for models "
                                         "with their own text encoder (the bundled one)."}),
        }}

    RETURN_TYPES = (HARMONY_CONDITIONING,)
    RETURN_NAMES = ("conditioning",)
    OUTPUT_TOOLTIPS = ("Text conditioning; add audio or video to it, then sample.",)
    FUNCTION = "encode"
    CATEGORY = "Harmony/conditioning"
    DESCRIPTION = "Encodes the prompt, the audio caption and the transcript for both towers."

    def encode(self, model, prompt, audio_caption, transcript, clip=None):
        node = "Harmony Text Conditioning"
        check_type(model, HARMONY_MODEL, "model", node)
        with node_checks(node) as validate:
            for name, value in (("prompt", prompt), ("audio_caption", audio_caption), ("transcript", transcript)):
                validate.text(value, name)
        bound = core_inputs.bind(model, node, clip=clip)
        text = bound.encode_text(prompt, audio_caption=audio_caption, transcript=transcript)
        return (AVConditioning(text=text, prompt=prompt, clip=clip),)


class HarmonyAudioConditioning:
    """Adds a core AUDIO as driving audio (A2V) and/or reference voice."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "conditioning": (HARMONY_CONDITIONING, {"tooltip": "From Harmony Text Conditioning."}),
            "audio": ("AUDIO", {"tooltip": "Any AUDIO, e.g. from LoadAudio; resampled and mixed "
                                           "to mono as the model needs."}),
            "use_as": ([DRIVING_AUDIO, REFERENCE_VOICE, BOTH], {
                "default": DRIVING_AUDIO,
                "tooltip": "driving audio: generate video that moves to this sound (A2V). "
                           "reference voice: a 1-3 s clip whose timbre the generated voice takes."}),
        }, "optional": {
            "audio_vae": ("VAE", {"tooltip": "Core VAELoader with the MMAudio 16 kHz VAE: the audio codec of "
                                             "umT5 models (Ovi). Leave empty for models with their own codecs."}),
        }}

    RETURN_TYPES = (HARMONY_CONDITIONING,)
    RETURN_NAMES = ("conditioning",)
    OUTPUT_TOOLTIPS = ("The conditioning with this audio added.",)
    FUNCTION = "add"
    CATEGORY = "Harmony/conditioning"
    DESCRIPTION = "Driving audio (A2V: video follows the sound) and/or a reference voice."

    def add(self, conditioning, audio, use_as, audio_vae=None):
        check_type(conditioning, HARMONY_CONDITIONING, "conditioning", "Harmony Audio Conditioning")
        if audio_vae is not None:  # checked here, before the sampler runs
            core_inputs.check_audio_vae(host.describe_vae(audio_vae), core_inputs.AUDIO_LATENT_CHANNELS,
                                        "Harmony Audio Conditioning")
        wave, sr = audio_to_wave(audio, "audio")
        seconds = audio_seconds(wave, sr)
        changes = {}
        if use_as in (DRIVING_AUDIO, BOTH):
            min_s = pipeline.MIN_SECONDS
            if seconds < min_s:
                raise HarmonyInputError(
                    f"Harmony Audio Conditioning: the driving audio is {seconds:.2f} s long; at "
                    f"least {min_s:g} s is needed. Use a longer clip.")
            changes["driving_audio"] = (wave, sr)
        if use_as in (REFERENCE_VOICE, BOTH):
            if seconds < MIN_REF_VOICE_SECONDS:
                raise HarmonyInputError(
                    f"Harmony Audio Conditioning: the reference voice is {seconds:.2f} s long; "
                    f"at least {MIN_REF_VOICE_SECONDS:g} s (ideally 1-3 s of speech) is needed.")
            changes["ref_voice"] = (wave, sr)
        if not changes:
            raise HarmonyInputError(f"use_as {use_as!r} is unknown; use one of "
                                    f"{[DRIVING_AUDIO, REFERENCE_VOICE, BOTH]}.")
        if audio_vae is not None:
            changes["audio_vae"] = audio_vae
        return (conditioning.with_(**changes),)


class HarmonyVideoConditioning:
    """Adds IMAGE frames or a core VIDEO as driving video (V2A) or first frame (I2AV)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "conditioning": (HARMONY_CONDITIONING, {"tooltip": "From Harmony Text Conditioning."}),
                "use_as": ([DRIVING_VIDEO, FIRST_FRAME], {
                    "default": DRIVING_VIDEO,
                    "tooltip": "driving video: generate the sound of these frames (V2A). "
                               "first frame: start the generated clip from this image (I2AV)."}),
                "fps": ("FLOAT", {
                    "default": 24.0, "min": 1.0, "max": 120.0, "step": 0.001,
                    "tooltip": "Frame rate of 'images' (a VIDEO brings its own)."}),
                "fit": (list(media.FIT_MODES), {
                    "default": "crop",
                    "tooltip": "Frames of another shape than the model's: crop keeps the centre at the "
                               "model's aspect ratio, letterbox keeps the whole picture with black bars, "
                               "stretch keeps the whole picture distorted. The console says what was done."}),
            },
            "optional": {
                "images": ("IMAGE", {"tooltip": "Frames [F, H, W, 3]; for first frame, the first is used."}),
                "video": ("VIDEO", {"tooltip": "A core VIDEO (e.g. LoadVideo); used when 'images' is not wired."}),
                "video_vae": ("VAE", {"tooltip": "Core VAELoader with wan2.2_vae.safetensors: the video codec of "
                                                 "umT5 models (Ovi). Leave empty for models with their own codecs."}),
            },
        }

    RETURN_TYPES = (HARMONY_CONDITIONING,)
    RETURN_NAMES = ("conditioning",)
    OUTPUT_TOOLTIPS = ("The conditioning with these frames added.",)
    FUNCTION = "add"
    CATEGORY = "Harmony/conditioning"
    DESCRIPTION = "Driving video (V2A: sound follows the picture) or a first frame (I2AV)."

    def add(self, conditioning, use_as, fps, fit="crop", images=None, video=None, video_vae=None):
        node = "Harmony Video Conditioning"
        check_type(conditioning, HARMONY_CONDITIONING, "conditioning", node)
        if video_vae is not None:  # checked here, before the sampler runs
            core_inputs.check_video_vae(host.describe_vae(video_vae), core_inputs.VIDEO_LATENT_CHANNELS, node)
            conditioning = conditioning.with_(video_vae=video_vae)
        modes = media.FIT_MODES
        if fit not in modes:
            raise HarmonyInputError(f"{node}: fit {fit!r} is unknown; use one of {list(modes)}.")
        if images is not None:
            frames = image_frames(images, "images")
            if video is not None:
                print(f"[harmony] {node}: both 'images' and 'video' are connected; using 'images' "
                      "(disconnect it to use the VIDEO)")
        elif video is not None:
            frames, fps, _ = video_components(video, "video")
        else:
            raise HarmonyInputError(f"{node}: connect 'images' (IMAGE) or 'video' (VIDEO).")
        if use_as == FIRST_FRAME:
            if frames.shape[0] > 1:  # documented in the tooltip; said, not silent
                print(f"[harmony] {node}: {frames.shape[0]} frames connected; the first one is the first "
                      "frame (pick another with ImageFromBatch)")
            return (conditioning.with_(first_frame=frames[0], fit=fit),)
        if use_as != DRIVING_VIDEO:
            raise HarmonyInputError(f"use_as {use_as!r} is unknown; use one of {[DRIVING_VIDEO, FIRST_FRAME]}.")
        with node_checks(node) as validate:
            fps = validate.rate(fps, "fps", "frames per second", 24, via="node")
            fps = validate.frame_rate(fps, "fps", via="node")
        min_s = pipeline.MIN_SECONDS
        if frames.shape[0] / float(fps) < min_s:
            raise HarmonyInputError(
                f"{node}: the driving video is {frames.shape[0]} frames at {fps:g} fps "
                f"({frames.shape[0] / fps:.2f} s); at least {min_s:g} s is needed.")
        return (conditioning.with_(driving_video=(frames, float(fps)), fit=fit),)
