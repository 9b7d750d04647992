"""Build the real-scale templates: Ovi's fusion model with ComfyUI's own text encoder and VAEs.

    python workflows/harmony_ovi_templates.py workflows    # workflows/harmony_ovi_*.json
    python workflows/harmony_ovi_templates.py thumbnails   # workflows/harmony_ovi_*.jpg (title cards)

Each template: core CLIPLoader (umT5-XXL, type wan) -> Harmony Text Conditioning; core
VAELoader (Wan2.2 VAE) and VAELoader (MMAudio 16 kHz VAE) -> the sampler and Harmony Decode
(and the video / audio conditioning node where media is given); the pack's loader with
Ovi's model file. The files and where they go: docs/real_weights_comfyui.md. The
thumbnails are title cards (what goes in, what comes out), not generated frames: the
real weights are not on the machine that builds them.
"""
from __future__ import annotations

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

MODEL = "Ovi/model.safetensors"
CLIP = "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
VIDEO_VAE = "wan2.2_vae.safetensors"
AUDIO_VAE = "mmaudio_vae_16k.safetensors"
STEPS, SECONDS = 30, 5.0  # Ovi generates 5 s clips (121 frames at 24 fps, 704x704 here)

# Each loader's file as ComfyUI's frontend reads it from the node's properties.models: opening a
# template whose file is not in models/<directory> shows the Missing Models dialog, with Download
# (huggingface.co URLs of .safetensors files only) and Copy URL. "name" is the widget value.
HF = "https://huggingface.co/"
DOWNLOADS = {
    MODEL: {"name": MODEL, "url": HF + "chetwinlow1/Ovi/resolve/main/model.safetensors",
            "directory": "diffusion_models"},
    CLIP: {"name": CLIP, "url": HF + "Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/"
                                     "text_encoders/" + CLIP, "directory": "text_encoders"},
    VIDEO_VAE: {"name": VIDEO_VAE, "url": HF + "Comfy-Org/Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files/"
                                               "vae/" + VIDEO_VAE, "directory": "vae"},
}
# The MMAudio VAE has no one-file download: MMAudio ships it as two .pth files, which the
# converter below writes as the one file core VAELoader reads; the Note says how.
CONVERT = ("cd ComfyUI/custom_nodes/ComfyUI-Harmony\n"
           "python -m nodes.core_inputs mmaudio-vae v1-16.pth best_netG.pt ../../models/vae/" + AUDIO_VAE)
NOTE_SIZE = (1080, 200)

CORE_LOADERS = {
    # as ComfyUI 0.3.64 declares them; the file lists hold the names these templates use
    "CLIPLoader": ([("clip_name", [CLIP], {}, False),
                    ("type", ["stable_diffusion", "stable_cascade", "sd3", "stable_audio", "mochi", "ltxv",
                              "pixart", "cosmos", "lumina2", "wan", "hidream", "chroma", "ace", "omnigen2",
                              "qwen_image", "hunyuan_image"], {}, False),
                    ("device", ["default", "cpu"], {"advanced": True}, True)], ["CLIP"]),
    "VAELoader": ([("vae_name", [VIDEO_VAE, AUDIO_VAE], {}, False)], ["VAE"]),
}

TEXTS = {
    "speech": {"prompt": "A woman with short dark hair sits at a wooden desk by a window and talks to the "
                         "camera, smiling. Warm afternoon light.",
               "audio_caption": "a clear female voice in a quiet room.",
               "transcript": "Hello, this clip was made with Harmony in ComfyUI."},
    "ambient": {"prompt": "Waves roll onto a rocky beach at sunset; spray bursts against the rocks.",
                "audio_caption": "waves crashing on rocks, wind.", "transcript": ""},
}

JOBS = {
    "harmony_ovi_t2av": "Ovi T2AV (real weights): text to 5 s of synchronized video and sound.",
    "harmony_ovi_i2av": "Ovi I2AV (real weights): the clip starts from the first frame given (the bundled "
                        "sample; wire your own IMAGE into Harmony Video Conditioning).",
    "harmony_ovi_a2v": "Ovi A2V (real weights): the picture follows the driving audio (the bundled speech "
                       "sample; wire your own AUDIO into Harmony Audio Conditioning).",
    "harmony_ovi_v2a": "Ovi V2A (real weights): sound for the driving video (the bundled sample; wire your "
                       "own frames or VIDEO into Harmony Video Conditioning).",
}
FILES = (
    "Files, in ComfyUI/models/ (on opening, the Missing Models dialog lists the first three if they are "
    "not there, with Download and Copy URL; a browser saves the download in its own downloads folder, "
    "so move it to the folder named here):\n"
    f"- diffusion_models/{MODEL}  from huggingface.co/chetwinlow1/Ovi (model.safetensors)\n"
    f"- text_encoders/{CLIP}  from huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged "
    "(split_files/text_encoders/)\n"
    f"- vae/{VIDEO_VAE}  from huggingface.co/Comfy-Org/Wan_2.2_ComfyUI_Repackaged (split_files/vae/)\n"
    f"- vae/{AUDIO_VAE}  has no download: build it once from MMAudio's ext_weights/v1-16.pth and "
    "ext_weights/best_netG.pt (huggingface.co/hkchengrex/MMAudio):\n" + CONVERT + "\n"
    "Then press R so the loaders list the new files. More: docs/real_weights_comfyui.md in the pack."
)
NOTES = {name: job + "\n\n" + FILES for name, job in JOBS.items()}


def _import():
    for path in (ROOT, os.path.join(ROOT, "tests"), HERE):
        if path not in sys.path:
            sys.path.insert(0, path)
    import workflow_runner

    workflow_runner.KNOWN_CORE_NODES.update(CORE_LOADERS)  # for building and validating these files
    import make_assets

    return make_assets


def build() -> dict:
    """name -> UI-format workflow of each real-scale template."""
    make_assets = _import()
    out = {}

    def chain(name, text, media=None):
        b = make_assets.WorkflowBuilder()
        loader = b.add("HarmonyModelLoader", (0, 0), {"model_name": MODEL}, size=(320, 180),
                       models=[DOWNLOADS[MODEL]])
        clip = b.add("CLIPLoader", (0, 220), {"clip_name": CLIP, "type": "wan"}, size=(320, 110),
                     models=[DOWNLOADS[CLIP]])
        vvae = b.add("VAELoader", (0, 370), {"vae_name": VIDEO_VAE}, size=(320, 60),
                     title="Load VAE (Wan2.2 video)", models=[DOWNLOADS[VIDEO_VAE]])
        avae = b.add("VAELoader", (0, 470), {"vae_name": AUDIO_VAE}, size=(320, 60),
                     title="Load VAE (MMAudio audio)")
        txt = b.add("HarmonyTextConditioning", (360, 0), dict(text), size=(360, 320))
        b.link(loader, 0, txt, "model")
        b.link(clip, 0, txt, "clip")
        cond = (txt, 0)
        if media:
            cond = media(b, cond, vvae, avae)
        sampler = b.add("HarmonySyncCFGSampler", (760, 0), {"steps": STEPS, "seconds": SECONDS, "seed": 7},
                        size=(320, 420))
        b.link(loader, 0, sampler, "model")
        b.link(cond[0], cond[1], sampler, "conditioning")
        b.link(vvae, 0, sampler, "video_vae")
        b.link(avae, 0, sampler, "audio_vae")
        dec = b.add("HarmonyDecode", (1120, 0), size=(240, 140))
        b.link(loader, 0, dec, "model")
        b.link(sampler, 0, dec, "av_latent")
        b.link(vvae, 0, dec, "video_vae")
        b.link(avae, 0, dec, "audio_vae")
        save = b.add("HarmonySaveAV", (1400, 0), {"filename_prefix": "harmony/" + name[len("harmony_"):]},
                     size=(420, 520))
        for slot, inp in enumerate(("images", "audio", "fps")):
            b.link(dec, slot, save, inp)
        out[name] = b.workflow(NOTES[name], note_size=NOTE_SIZE)

    def first_frame(b, cond, vvae, avae):
        sample = b.add("HarmonySampleInput", (0, 570), {"sample": "harmony_first_frame.png"}, size=(320, 120))
        video = b.add("HarmonyVideoConditioning", (360, 380), {"use_as": "first frame (I2AV)"}, size=(360, 150))
        b.link(cond[0], cond[1], video, "conditioning")
        b.link(sample, 0, video, "images")
        b.link(vvae, 0, video, "video_vae")
        return (video, 0)

    def driving_audio(b, cond, vvae, avae):
        sample = b.add("HarmonySampleInput", (0, 570), {"sample": "harmony_driving_audio.wav"}, size=(320, 120))
        audio = b.add("HarmonyAudioConditioning", (360, 380), {"use_as": "driving audio (A2V)"}, size=(360, 130))
        b.link(cond[0], cond[1], audio, "conditioning")
        b.link(sample, 1, audio, "audio")
        b.link(avae, 0, audio, "audio_vae")
        return (audio, 0)

    def driving_video(b, cond, vvae, avae):
        sample = b.add("HarmonySampleInput", (0, 570), {"sample": "harmony_driving_video.mp4"}, size=(320, 120))
        video = b.add("HarmonyVideoConditioning", (360, 380), {"use_as": "driving video (V2A)"}, size=(360, 150))
        b.link(cond[0], cond[1], video, "conditioning")
        b.link(sample, 0, video, "images")
        b.link(sample, 2, video, "fps")
        b.link(vvae, 0, video, "video_vae")
        return (video, 0)

    chain("harmony_ovi_t2av", TEXTS["speech"])
    chain("harmony_ovi_i2av", TEXTS["speech"], first_frame)
    chain("harmony_ovi_a2v", TEXTS["speech"], driving_audio)
    chain("harmony_ovi_v2a", TEXTS["ambient"], driving_video)
    return out


def validate(wf) -> list:
    """What would stop ComfyUI from queueing ``wf``, except the model file missing from this
    machine's list (the loader lists the user's own models/diffusion_models), and nodes that
    overlap on the canvas."""
    make_assets = _import()
    from workflow_runner import validate_workflow

    return [p for p in validate_workflow(wf) if f"model_name={MODEL!r} is not one of" not in p] + \
        make_assets.overlaps(wf)


def make_workflows() -> None:
    for name, wf in build().items():
        problems = validate(wf)
        if problems:
            raise SystemExit(f"{name}: " + "; ".join(problems))
        with open(os.path.join(HERE, name + ".json"), "w", encoding="utf-8") as f:
            json.dump(wf, f, indent=1)
        print(f"wrote workflows/{name}.json")


def title_card(name: str, wf: dict, path: str, width=512, height=384) -> None:
    """A JPEG card: the job, and the files the graph loads."""
    from PIL import Image, ImageDraw

    job = name.rsplit("_", 1)[-1].upper()
    img = Image.new("RGB", (width, height), (24, 24, 28))
    d = ImageDraw.Draw(img)
    d.rectangle([0, 0, width, 92], fill=(40, 70, 110))
    d.text((24, 18), f"Harmony  -  Ovi {job}", fill=(255, 255, 255), font_size=30)
    d.text((24, 60), "real weights, ComfyUI's own text encoder and VAEs", fill=(200, 220, 255), font_size=16)
    y = 112
    for n in wf["nodes"]:
        if n["type"] in ("HarmonyModelLoader", "CLIPLoader", "VAELoader", "HarmonySampleInput"):
            d.text((24, y), f"{n.get('title', n['type'])}:", fill=(150, 150, 160), font_size=15)
            d.text((24, y + 18), str(n["widgets_values"][0]), fill=(90, 200, 255), font_size=17)
            y += 48
    img.save(path, quality=88)


def make_thumbnails() -> None:
    for name, wf in build().items():
        title_card(name, wf, os.path.join(HERE, name + ".jpg"))
        print(f"wrote workflows/{name}.jpg")


if __name__ == "__main__":
    what = sys.argv[1:] or ["workflows", "thumbnails"]
    for step in what:
        {"workflows": make_workflows, "thumbnails": make_thumbnails}[step]()
