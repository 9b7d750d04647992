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
    sys.path.insert(0, WORKFLOWS)
    try:
        import make_assets
    finally:
        sys.path.remove(WORKFLOWS)
    built = make_assets.build_workflows()
    for name, wf in built.items():
        assert load(name) == json.loads(json.dumps(wf)), f"run: python workflows/make_assets.py workflows"


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
