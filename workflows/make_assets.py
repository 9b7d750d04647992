"""Build what workflows/ ships: sample inputs, the UI-format templates, their thumbnails.

    python workflows/make_assets.py samples      # workflows/samples/* from held-out world seeds
    python workflows/make_assets.py workflows    # workflows/*.json from the node definitions
    python workflows/make_assets.py thumbnails   # workflows/*.jpg by running each template on CPU

Templates are generated rather than hand-edited so that their widget values
always follow the nodes' declared order (a seed takes two slots).
"""
from __future__ import annotations

import json
import os
import sys
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SAMPLES = os.path.join(HERE, "samples")

SPEECH_SEED_SPLIT = ("speech", 0)   # held-out seed index: first frame, driving audio, voice
AMBIENT_SEED_SPLIT = ("ambient", 0)  # held-out seed index: driving video
SAMPLE_SECONDS = 2.0

STEPS = 12
SECONDS = 2.0

TITLE_BAR = 30  # LiteGraph draws a node's title bar this high above its pos
NOTE_SIZE = (720, 90)
NOTE_GAP = 40


def _import_pack():
    for path in (ROOT, os.path.join(ROOT, "tests")):  # the pack, and tests/workflow_runner.py
        if path not in sys.path:
            sys.path.insert(0, path)
    import harmony  # noqa: F401
    import nodes  # noqa: F401


# ------------------------------------------------------------------- samples


def sample_scenes():
    from harmony.world.render import render
    from harmony.world.scene import heldout_seeds, sample_scene

    out = {}
    for key, (split, index) in (("speech", SPEECH_SEED_SPLIT), ("ambient", AMBIENT_SEED_SPLIT)):
        seed = heldout_seeds(split, index + 1)[index]
        out[key] = (seed, render(sample_scene(seed, split, seconds=SAMPLE_SECONDS)))
    return out


def make_samples() -> None:
    import numpy as np
    from PIL import Image

    from harmony import media

    os.makedirs(SAMPLES, exist_ok=True)
    scenes = sample_scenes()
    seed, speech = scenes["speech"]
    Image.fromarray((speech.frames[0] * 255).round().astype(np.uint8)).save(
        os.path.join(SAMPLES, "harmony_first_frame.png"))
    media.write_wav(os.path.join(SAMPLES, "harmony_driving_audio.wav"), speech.wave[None], speech.sample_rate)
    if speech.ref_voice is not None:
        media.write_wav(os.path.join(SAMPLES, "harmony_reference_voice.wav"), speech.ref_voice[None],
                        speech.sample_rate)
    aseed, ambient = scenes["ambient"]
    media.write_mp4(os.path.join(SAMPLES, "harmony_driving_video.mp4"), ambient.frames, ambient.fps,
                    ambient.wave[None], ambient.sample_rate)
    texts = {
        "speech": {"seed": seed, "prompt": speech.prompt, "audio_caption": speech.audio_caption,
                   "transcript": speech.transcript},
        "ambient": {"seed": aseed, "prompt": ambient.prompt, "audio_caption": ambient.audio_caption,
                    "transcript": ambient.transcript},
    }
    with open(os.path.join(SAMPLES, "texts.json"), "w", encoding="utf-8") as f:
        json.dump(texts, f, indent=1)
    print(f"samples written to {SAMPLES}")


# ----------------------------------------------------------------- workflows


class WorkflowBuilder:
    """Builds a UI-format workflow: nodes with positional widget values, typed links."""

    def __init__(self):
        from workflow_runner import node_definitions, widget_inputs

        self.defs, self.widget_inputs = node_definitions(), widget_inputs
        self.nodes, self.links = [], []

    def add(self, type_, pos, widgets=None, size=(320, 200), title=None, models=None):
        """A node; ``widgets`` overrides declared defaults by input name. ``models``: the files a
        loader's widget names, as ``{"name", "url", "directory"}`` entries (``properties.models``):
        ComfyUI's frontend lists those missing from ``models/<directory>`` in its Missing Models
        dialog when the workflow is opened, with Download and Copy URL buttons."""
        defn = self.defs[type_]
        values = []
        for name, typ, options, slots in self.widget_inputs(defn):
            value = (widgets or {}).get(name, options.get("default"))
            if value is None and isinstance(typ, list):
                value = typ[0]
            values.append(value)
            if slots == 2:
                values.append("fixed")
        node = {
            "id": len(self.nodes) + 1, "type": type_, "pos": list(pos), "size": list(size),
            "flags": {}, "order": len(self.nodes), "mode": 0,
            "inputs": [{"name": n, "type": t, "link": None} for n, t, o, _ in defn["inputs"]
                       if not (isinstance(t, list) or t in ("INT", "FLOAT", "STRING", "BOOLEAN"))],
            "outputs": [{"name": self._output_name(type_, i, t), "type": t, "links": []}
                        for i, t in enumerate(defn["outputs"])],
            "properties": {"Node name for S&R": type_},
            "widgets_values": values,
        }
        if title:
            node["title"] = title
        if models:
            node["properties"]["models"] = [dict(m) for m in models]
        self.nodes.append(node)
        return node["id"]

    @staticmethod
    def _output_name(type_, i, t):
        from nodes import NODE_CLASS_MAPPINGS

        cls = NODE_CLASS_MAPPINGS.get(type_)
        names = getattr(cls, "RETURN_NAMES", None) if cls else None
        return names[i] if names else t

    def link(self, src, src_slot, dst, input_name):
        """Connect ``src`` output ``src_slot`` to ``dst``'s input (a widget input becomes a socket)."""
        s, d = self.nodes[src - 1], self.nodes[dst - 1]
        typ = s["outputs"][src_slot]["type"]
        lid = len(self.links) + 1
        slot = next((i for i, x in enumerate(d["inputs"]) if x["name"] == input_name), None)
        if slot is None:  # a widget converted to an input
            d["inputs"].append({"name": input_name, "type": typ, "widget": {"name": input_name}, "link": None})
            slot = len(d["inputs"]) - 1
        d["inputs"][slot]["link"] = lid
        s["outputs"][src_slot]["links"].append(lid)
        self.links.append([lid, src, src_slot, dst, slot, typ])

    def workflow(self, note=None, note_size=NOTE_SIZE):
        """The UI-format workflow. A ``note`` becomes an "About this template" Note at the top
        left, the first thing seen when the template opens; every other node moves down by the
        Note's height, its title bar and a gap, so the Note covers nothing (see
        :func:`overlaps`)."""
        if note:  # ComfyUI 0.3.64's template browser shows only the file name: the note is on the canvas
            shift = note_size[1] + TITLE_BAR + NOTE_GAP
            for n in self.nodes:
                n["pos"][1] += shift
            self.add("Note", (0, 0), {"text": note}, size=note_size, title="About this template")
        wf = {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, json.dumps(self.nodes, sort_keys=True))),
              "revision": 0, "last_node_id": len(self.nodes), "last_link_id": len(self.links),
              "nodes": self.nodes, "links": self.links, "groups": [], "config": {},
              "extra": {"ds": {"scale": 0.8, "offset": [40, 40]}}, "version": 0.4}
        if note:
            wf["extra"]["harmony_note"] = note
        return wf


def node_box(node) -> tuple:
    """(left, top, right, bottom) of a node on the canvas, its title bar (drawn above ``pos``) included."""
    x, y = node["pos"]
    w, h = node["size"]
    return (x, y - TITLE_BAR, x + w, y + h)


def overlaps(wf) -> list:
    """Pairs of nodes whose boxes (title bar included) overlap: "<a> (id) overlaps <b> (id)"."""
    out = []
    boxes = [(n, node_box(n)) for n in wf["nodes"]]
    for i, (a, ba) in enumerate(boxes):
        for b, bb in boxes[i + 1:]:
            if ba[0] < bb[2] and bb[0] < ba[2] and ba[1] < bb[3] and bb[1] < ba[3]:
                out.append(f"{a.get('title', a['type'])} ({a['id']}) overlaps {b.get('title', b['type'])} ({b['id']})")
    return out


def _texts():
    path = os.path.join(SAMPLES, "texts.json")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def build_workflows() -> dict:
    """name -> UI-format workflow for every template."""
    from harmony.checkpoint import read_config
    from harmony.guidance import default_scales, default_timing
    from harmony.pipeline import DEFAULT_MODEL
    from harmony.sampling import default_resync, default_shift

    texts = _texts()
    out = {}

    def chain(b, job, text, conditioning_hook=None, save="harmony"):
        loader = b.add("HarmonyModelLoader", (0, 0), size=(320, 180))
        txt = b.add("HarmonyTextConditioning", (360, 0), {
            "prompt": text["prompt"], "audio_caption": text["audio_caption"],
            "transcript": text["transcript"]}, size=(360, 320))
        b.link(loader, 0, txt, "model")
        cond = (txt, 0)
        if conditioning_hook:
            cond = conditioning_hook(b, cond)
        bundled = read_config(DEFAULT_MODEL)  # the bundled model's tuned settings for the job
        sv, sa = default_scales(bundled, job)
        sampler = b.add("HarmonySyncCFGSampler", (760, 0), {"steps": STEPS, "seconds": SECONDS, "seed": 7, "sv": sv,
                                                            "sa": sa, "shift": default_shift(bundled, job),
                                                            "st": default_timing(bundled, job),
                                                            "resync": default_resync(bundled, job)},
                        size=(320, 380))
        b.link(loader, 0, sampler, "model")
        b.link(cond[0], cond[1], sampler, "conditioning")
        dec = b.add("HarmonyDecode", (1120, 0), size=(240, 100))
        b.link(loader, 0, dec, "model")
        b.link(sampler, 0, dec, "av_latent")
        return dec

    def save_av(b, dec, prefix):
        save = b.add("HarmonySaveAV", (1400, 0), {"filename_prefix": prefix}, size=(420, 520))
        for slot, name in enumerate(("images", "audio", "fps")):
            b.link(dec, slot, save, name)

    # T2AV
    b = WorkflowBuilder()
    save_av(b, chain(b, "T2AV", texts["speech"]), "harmony/t2av")
    out["harmony_t2av"] = b.workflow(
        "T2AV: text to synchronized video and sound with SyncCFG. Edit the prompt, audio caption "
        "and transcript, then Queue.")

    # I2AV: a bundled first frame
    def first_frame(b, cond):
        sample = b.add("HarmonySampleInput", (0, 260), {"sample": "harmony_first_frame.png"}, size=(320, 120))
        video = b.add("HarmonyVideoConditioning", (360, 380), {"use_as": "first frame (I2AV)"}, size=(360, 130))
        b.link(cond[0], cond[1], video, "conditioning")
        b.link(sample, 0, video, "images")
        return (video, 0)

    b = WorkflowBuilder()
    save_av(b, chain(b, "I2AV", texts["speech"], first_frame), "harmony/i2av")
    out["harmony_i2av"] = b.workflow(
        "I2AV: the bundled first frame starts the clip. Wire your own IMAGE into Harmony Video "
        "Conditioning (fit: crop or letterbox for other shapes).")

    # A2V: bundled driving audio
    def driving_audio(b, cond):
        sample = b.add("HarmonySampleInput", (0, 260), {"sample": "harmony_driving_audio.wav"}, size=(320, 120))
        audio = b.add("HarmonyAudioConditioning", (360, 380), {"use_as": "driving audio (A2V)"}, size=(360, 110))
        b.link(cond[0], cond[1], audio, "conditioning")
        b.link(sample, 1, audio, "audio")
        return (audio, 0)

    b = WorkflowBuilder()
    save_av(b, chain(b, "A2V", texts["speech"], driving_audio), "harmony/a2v")
    out["harmony_a2v"] = b.workflow(
        "A2V: the picture moves to the bundled speech clip. Wire your own AUDIO into Harmony Audio "
        "Conditioning.")

    # V2A: bundled driving video
    def driving_video(b, cond):
        sample = b.add("HarmonySampleInput", (0, 260), {"sample": "harmony_driving_video.mp4"}, size=(320, 120))
        video = b.add("HarmonyVideoConditioning", (360, 380), {"use_as": "driving video (V2A)"}, size=(360, 130))
        b.link(cond[0], cond[1], video, "conditioning")
        b.link(sample, 0, video, "images")
        b.link(sample, 2, video, "fps")
        return (video, 0)

    b = WorkflowBuilder()
    save_av(b, chain(b, "V2A", texts["ambient"], driving_video), "harmony/v2a")
    out["harmony_v2a"] = b.workflow(
        "V2A: sound for the bundled bouncing-objects clip. Wire your own frames or VIDEO into Harmony "
        "Video Conditioning.")

    # T2AV into core CreateVideo -> SaveVideo
    b = WorkflowBuilder()
    dec = chain(b, "T2AV", texts["ambient"])
    create = b.add("CreateVideo", (1400, 0), {"fps": 16.0}, size=(270, 100))
    for slot, name in ((0, "images"), (1, "audio"), (2, "fps")):
        b.link(dec, slot, create, name)
    savev = b.add("SaveVideo", (1700, 0), {"filename_prefix": "harmony/core_video"}, size=(420, 480))
    b.link(create, 0, savev, "video")
    out["harmony_t2av_core_video"] = b.workflow(
        "T2AV saved by core nodes: Harmony Decode into CreateVideo, then SaveVideo.")
    return out


def make_workflows() -> None:
    from workflow_runner import validate_workflow

    for name, wf in build_workflows().items():
        problems = validate_workflow(wf) + overlaps(wf)
        if problems:
            raise SystemExit(f"{name}: " + "; ".join(problems))
        with open(os.path.join(HERE, name + ".json"), "w", encoding="utf-8") as f:
            json.dump(wf, f, indent=1)
        print(f"wrote workflows/{name}.json")


# ---------------------------------------------------------------- thumbnails


def thumbnail(frames, wave, path, width=512, height=384) -> None:
    """A frame strip above the waveform envelope, as a JPEG."""
    import numpy as np
    import torch
    from PIL import Image, ImageDraw

    n = 4
    idx = torch.linspace(0, frames.shape[0] - 1, n).round().long()
    tile = width // n
    img = Image.new("RGB", (width, height), (24, 24, 28))
    for k, i in enumerate(idx):
        f = Image.fromarray((frames[i].clamp(0, 1) * 255).round().to(torch.uint8).numpy())
        img.paste(f.resize((tile, tile), Image.NEAREST), (k * tile, 0))
    draw = ImageDraw.Draw(img)
    mono = wave.float().mean(0).abs().numpy()
    cols = np.array_split(mono, width)
    mid, amp = tile + (height - tile) // 2, (height - tile) // 2 - 8
    for x, c in enumerate(cols):
        h = float(c.max()) if c.size else 0.0
        draw.line([(x, mid - h * amp), (x, mid + h * amp)], fill=(90, 200, 255))
    img.save(path, quality=85)


def make_thumbnails() -> None:
    import torch

    from workflow_runner import run_workflow

    torch.set_num_threads(1)
    for name in build_workflows():
        with open(os.path.join(HERE, name + ".json"), encoding="utf-8") as f:
            wf = json.load(f)
        os.environ.setdefault("HARMONY_OUTPUT_DIR", os.path.join(ROOT, "out", "workflows"))
        run = run_workflow(wf)
        dec = next(i for i, n in enumerate(wf["nodes"], 1) if n["type"] == "HarmonyDecode")
        frames, audio, _ = run["outputs"][dec]
        thumbnail(frames, audio["waveform"][0], os.path.join(HERE, name + ".jpg"))
        print(f"wrote workflows/{name}.jpg ({sum(run['seconds'].values()):.1f} s)")


if __name__ == "__main__":
    _import_pack()
    what = sys.argv[1:] or ["samples", "workflows", "thumbnails"]
    for step in what:
        {"samples": make_samples, "workflows": make_workflows, "thumbnails": make_thumbnails}[step]()
