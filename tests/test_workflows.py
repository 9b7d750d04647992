"""The shipped templates: valid against the node definitions, and our part runs on CPU from the file."""
import copy
import json
import os
import sys

import pytest
import torch

import nodes
from workflow_runner import KNOWN_CORE_NODES, run_workflow, validate_workflow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKFLOWS = os.path.join(ROOT, "workflows")
# the real-scale templates (harmony_ovi_*) need real weights: tests/test_core_inputs.py and
# tests/e2e/test_real_templates.py check and run them
NAMES = sorted(f[:-5] for f in os.listdir(WORKFLOWS) if f.endswith(".json") and not f.startswith("harmony_ovi_"))
JOBS = {"harmony_t2av": "T2AV", "harmony_i2av": "I2AV", "harmony_a2v": "A2V", "harmony_v2a": "V2A",
        "harmony_t2av_core_video": "T2AV"}


def load(name):
    with open(os.path.join(WORKFLOWS, name + ".json"), encoding="utf-8") as f:
        return json.load(f)


def _make_assets():
    """workflows/make_assets.py, imported from its folder (not a package)."""
    sys.path.insert(0, WORKFLOWS)
    try:
        import make_assets
    finally:
        sys.path.remove(WORKFLOWS)
    return make_assets


def test_every_job_has_a_template():
    assert set(JOBS) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_template_is_valid_ui_format(name):
    wf = load(name)
    assert validate_workflow(wf) == []
    assert os.path.getsize(os.path.join(WORKFLOWS, name + ".jpg")) > 1000, "thumbnail missing"
    for n in wf["nodes"]:
        assert n["type"] in nodes.NODE_CLASS_MAPPINGS or n["type"] in KNOWN_CORE_NODES
        if n["type"] == "HarmonySampleInput":
            assert os.path.isfile(os.path.join(WORKFLOWS, "samples", n["widgets_values"][0]))
    assert not any(n["type"] in ("LoadImage", "LoadAudio", "LoadVideo") for n in wf["nodes"]), \
        "templates must not need files copied into ComfyUI's input folder"


def test_templates_are_up_to_date_with_the_node_definitions():
    make_assets = _make_assets()
    built = make_assets.build_workflows()
    for name, wf in built.items():
        assert load(name) == json.loads(json.dumps(wf)), f"run: python workflows/make_assets.py workflows"


def test_samples_are_the_current_worlds_renders():
    """The sample inputs are what make_assets renders from today's world. They were once left behind: the
    world changed and the V2A template went on driving the models with a scene the seed no longer draws
    (the badges read 'uncertain' on it; notebook W1)."""
    import numpy as np
    from PIL import Image

    from harmony import media

    make_assets = _make_assets()
    scenes = make_assets.sample_scenes()
    with open(os.path.join(WORKFLOWS, "samples", "texts.json"), encoding="utf-8") as f:
        texts = json.load(f)
    todo = "run: python workflows/make_assets.py samples workflows thumbnails"
    for key, (seed, clip) in scenes.items():
        assert texts[key] == {"seed": seed, "prompt": clip.prompt, "audio_caption": clip.audio_caption,
                              "transcript": clip.transcript}, todo
    speech, ambient = scenes["speech"][1], scenes["ambient"][1]
    first = np.asarray(Image.open(os.path.join(WORKFLOWS, "samples", "harmony_first_frame.png")))
    assert np.array_equal(first, (speech.frames[0] * 255).round().astype(np.uint8)), todo
    wave, rate = media.read_audio(os.path.join(WORKFLOWS, "samples", "harmony_driving_audio.wav"))
    assert rate == speech.sample_rate and np.abs(wave.reshape(-1) - speech.wave).max() < 1e-3, todo
    frames, fps, _, _ = media.read_video(os.path.join(WORKFLOWS, "samples", "harmony_driving_video.mp4"))
    assert fps == ambient.fps and len(frames) == len(ambient.frames), todo
    assert np.abs(frames - ambient.frames).mean() < 0.02, todo  # a lossy mp4 of the same picture


def test_validator_catches_broken_files():
    good = load("harmony_v2a")
    sampler = next(n for n in good["nodes"] if n["type"] == "HarmonySyncCFGSampler")
    idx = good["nodes"].index(sampler)

    bad = copy.deepcopy(good)
    del bad["nodes"][idx]["widgets_values"][1]  # the seed control slot
    assert any("widget values, expected" in p for p in validate_workflow(bad))
    bad = copy.deepcopy(good)
    bad["nodes"][idx]["widgets_values"][-1] = "no-such-solver"
    assert any("solver" in p for p in validate_workflow(bad))
    bad = copy.deepcopy(good)
    bad["nodes"][idx]["widgets_values"][2] = 10_000  # steps above max
    assert any("outside" in p for p in validate_workflow(bad))
    bad = copy.deepcopy(good)
    bad["links"][0][5] = "IMAGE"
    assert any("link says IMAGE" in p for p in validate_workflow(bad))
    bad = copy.deepcopy(good)
    bad["nodes"][0]["type"] = "NotANode"
    assert any("NotANode" in p for p in validate_workflow(bad))


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_our_nodes_run_from_the_file(name, tmp_path, monkeypatch):
    monkeypatch.setenv("HARMONY_OUTPUT_DIR", str(tmp_path))
    torch.set_num_threads(1)
    wf = load(name)
    run = run_workflow(wf, log=lambda msg: None)
    by_type = {n["type"]: n["id"] for n in wf["nodes"]}
    latent = run["outputs"][by_type["HarmonySyncCFGSampler"]][0]
    assert latent.job == JOBS[name]
    images, audio, fps = run["outputs"][by_type["HarmonyDecode"]]
    assert images.shape[-1] == 3 and audio["waveform"].dim() == 3 and fps > 0
    if "HarmonySaveAV" in by_type:
        clip = run["ui"][by_type["HarmonySaveAV"]]["harmony_av"][0]
        saved = os.path.join(tmp_path, clip["subfolder"], clip["filename"])
        from nodes.mp4_metadata import read_metadata

        assert read_metadata(saved)["workflow"] == wf
    if "CreateVideo" in by_type:  # what core CreateVideo receives is what it expects
        got = run["core_inputs"][by_type["CreateVideo"]]
        assert got["images"].dtype == torch.float32 and got["images"].dim() == 4
        assert set(got["audio"]) == {"waveform", "sample_rate"} and isinstance(got["fps"], float)


# ------------------------------------------------------- every shipped template, layout (issue 23)

ALL = sorted(f[:-5] for f in os.listdir(WORKFLOWS) if f.endswith(".json"))
TITLE_BAR = 30  # LiteGraph draws a node's title bar about this high above its pos


@pytest.mark.parametrize("name", ALL)
def test_no_node_overlaps_another(name):
    wf = load(name)
    boxes = {}
    for n in wf["nodes"]:
        (x, y), (w, h) = n["pos"], n["size"]
        assert w > 0 and h > 0
        boxes[f"{n.get('title', n['type'])} (#{n['id']})"] = (x, y - TITLE_BAR, x + w, y + h)
    hits = [(a, b) for i, (a, ba) in enumerate(boxes.items()) for b, bb in list(boxes.items())[i + 1:]
            if ba[0] < bb[2] and bb[0] < ba[2] and ba[1] < bb[3] and bb[1] < ba[3]]
    assert hits == []
    note = next(n for n in wf["nodes"] if n["type"] == "Note")
    assert note["title"] == "About this template" and note["pos"] == [0, 0], "the Note opens in view, at the top"


def test_the_overlap_check_sees_a_node_under_the_note():
    wf = copy.deepcopy(load("harmony_ovi_a2v"))
    vae = next(n for n in wf["nodes"] if n.get("title") == "Load VAE (MMAudio audio)")
    vae["pos"] = [0, 100]  # inside the Note's box, as before issue 23
    make_assets = _make_assets()
    assert any("Load VAE (MMAudio audio)" in p and "About this template" in p for p in make_assets.overlaps(wf))


OVI = [n for n in ALL if n.startswith("harmony_ovi_")]
HF = "https://huggingface.co/"
OVI_FILES = {  # widget value -> (directory, download URL)
    "Ovi/model.safetensors": ("diffusion_models", HF + "chetwinlow1/Ovi/resolve/main/model.safetensors"),
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors": (
        "text_encoders", HF + "Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/text_encoders/"
                              "umt5_xxl_fp8_e4m3fn_scaled.safetensors"),
    "wan2.2_vae.safetensors": (
        "vae", HF + "Comfy-Org/Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files/vae/wan2.2_vae.safetensors"),
}


@pytest.mark.parametrize("name", OVI)
def test_real_scale_loaders_say_what_to_get_and_where(name):
    wf = load(name)
    listed = {}
    for n in wf["nodes"]:
        for m in n["properties"].get("models", []):
            assert m["name"] in n["widgets_values"], "the frontend lists only the entry the widget selects"
            # what ComfyUI 0.3.64's Missing Models dialog offers a Download button for
            assert m["url"].startswith(HF) and m["name"].endswith(".safetensors")
            assert m["url"].split("/")[-1] == m["name"].split("/")[-1]
            listed[m["name"]] = (m["directory"], m["url"])
    assert listed == OVI_FILES
    titles = sorted(n.get("title") for n in wf["nodes"] if n["type"] == "VAELoader")
    assert titles == ["Load VAE (MMAudio audio)", "Load VAE (Wan2.2 video)"]
    note = next(n for n in wf["nodes"] if n["type"] == "Note")["widgets_values"][0]
    # the one file with no download: the command that builds it, and where its two inputs come from
    assert ("python -m nodes.core_inputs mmaudio-vae v1-16.pth best_netG.pt "
            "../../models/vae/mmaudio_vae_16k.safetensors") in note
    assert "hkchengrex/MMAudio" in note and "ext_weights/v1-16.pth" in note and "ext_weights/best_netG.pt" in note
    for file, (directory, _) in OVI_FILES.items():
        assert f"{directory}/{file}" in note
