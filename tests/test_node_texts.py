"""What a ComfyUI user reads: text boxes that keep their names, the fit option of the
video node, and model-file errors that name the file and the folder."""
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch

from nodes import NODE_CLASS_MAPPINGS as M
from nodes.conditioning import FIRST_FRAME
from nodes.model_loader import BUNDLED
from nodes.types import HarmonyInputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXT_BOXES = ("prompt", "audio_caption", "transcript")


def test_text_boxes_carry_their_names_in_placeholder_and_tooltip():
    spec = M["HarmonyTextConditioning"].INPUT_TYPES()["required"]
    seen = set()
    for name in TEXT_BOXES:
        options = spec[name][1]
        assert options["multiline"]
        label = name.replace("_", " ")
        assert options["placeholder"].startswith(label + ":") and options["tooltip"].startswith(label + ":")
        seen.add(options["placeholder"])
    assert len(seen) == 3


def _labels_js() -> str:
    src = open(os.path.join(ROOT, "js", "harmony_text_labels.js")).read()
    assert 'app.registerExtension' in src and 'inputEl' in src  # hooked to the real textarea widgets
    body = src[src.index("const LABEL_HEIGHT"):src.index("app.registerExtension")]
    return body.replace("export ", "")


@pytest.mark.skipif(shutil.which("node") is None, reason="node.js not installed")
def test_js_writes_each_name_into_its_textarea():
    script = _labels_js() + """
const boxes = ["prompt", "audio_caption", "transcript"].map(n => {
  const el = {tagName: "TEXTAREA", style: {}, dataset: {}, attrs: {}, setAttribute(k, v) { this.attrs[k] = v; }};
  labelTextarea(el, labelText(n), "tip " + n);
  labelTextarea(el, labelText(n), "tip " + n);  // twice: no change
  return {bg: decodeURIComponent(el.style.backgroundImage), pad: el.style.paddingTop, title: el.title,
          aria: el.attrs["aria-label"]};
});
console.log(JSON.stringify(boxes));
"""
    out = json.loads(subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True).stdout)
    for box, name in zip(out, ("prompt", "audio caption", "transcript")):
        assert re.search(rf">{name}</text>", box["bg"]), box["bg"]
        assert box["pad"] == "17px" and box["aria"] == name and box["title"].startswith("tip ")


def test_video_node_keeps_the_fit_choice_and_the_sampler_uses_it():
    spec = M["HarmonyVideoConditioning"].INPUT_TYPES()["required"]
    assert spec["fit"][0] == ["crop", "letterbox", "stretch"] and spec["fit"][1]["default"] == "crop"
    model = M["HarmonyModelLoader"]().load(BUNDLED, "auto", "none", 4, "sdpa")[0]
    (cond,) = M["HarmonyTextConditioning"]().encode(model, "a small red ball bounces twice.", "", "")
    wide = torch.rand(1, 48, 96, 3)
    with pytest.raises(HarmonyInputError, match="fit 'zoom' is unknown"):
        M["HarmonyVideoConditioning"]().add(cond, FIRST_FRAME, 24.0, "zoom", images=wide)
    (boxed,) = M["HarmonyVideoConditioning"]().add(cond, FIRST_FRAME, 24.0, "letterbox", images=wide)
    assert boxed.fit == "letterbox" and cond.fit == "crop"  # node outputs are copies
    lines = []
    model.log = lines.append
    M["HarmonySyncCFGSampler"]().sample(model, boxed, 0, 1, 1.0, 0, 0, 5.0, "none", 3.0, 2.0, 1.0, "euler")
    assert sum("letterboxed" in line for line in lines) == 1, lines


def test_missing_model_files_are_explained_for_comfyui_users(tmp_path, monkeypatch):
    monkeypatch.setenv("HARMONY_MODELS_DIR", str(tmp_path))
    loader = M["HarmonyModelLoader"]()
    with pytest.raises(HarmonyInputError, match=r"'gone\.safetensors' was not found in ComfyUI/models/harmony/"):
        loader.load("gone.safetensors", "auto", "none", 4, "sdpa")
    from harmony.pipeline import DEFAULT_MODEL  # a valid model file whose text-encoder file is missing

    shutil.copy(DEFAULT_MODEL, tmp_path / "mine.safetensors")
    with pytest.raises(HarmonyInputError) as e:
        loader.load("mine.safetensors", "auto", "none", 4, "sdpa")
    text = str(e.value)
    assert "mine.text.safetensors" in text and str(tmp_path) in text and "ComfyUI/models/harmony/" in text
    assert "encode_text" not in text  # no Python-API advice in the graph

    from nodes.harmony_lib import pipeline

    monkeypatch.setattr(pipeline, "DEFAULT_MODEL", str(tmp_path / "no_such.safetensors"))
    with pytest.raises(HarmonyInputError, match="bundled tiny model is missing"):
        loader.load(BUNDLED, "auto", "none", 4, "sdpa")
