"""End to end: a real ComfyUI with only this pack, driven through its real frontend.

Needs a ComfyUI source checkout (COMFYUI_DIR) with its requirements installed
in the Python given by COMFYUI_PYTHON (default: this one), Chromium
(/usr/bin/chromium, or CHROMIUM) and the ``playwright`` Python package.
Skipped, saying what is missing, otherwise. See docs/comfyui.md.

For each template in workflows/: load it in headless Chromium the way the
template browser does, queue it with Ctrl+Enter as a person would, wait for
the run, and check the result: an mp4 with a video and an audio stream, our
in-node player showing it, and (for Harmony Save AV) that dropping the mp4
back onto the canvas restores the graph that made it.
"""
import json
import os
import sys
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACK = "ComfyUI-Harmony"
TEMPLATES = sorted(f[:-5] for f in os.listdir(os.path.join(ROOT, "workflows")) if f.endswith(".json"))
# the real-scale templates need model files: tests/e2e/test_real_templates.py runs them
WORKFLOWS = [n for n in TEMPLATES if not n.startswith("harmony_ovi_")]
from realhost import CHROMIUM, browser_problem  # noqa: E402  (tests/e2e/realhost.py)
from realhost import get_json as _get, pack_home, running_comfyui  # noqa: E402
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"]
RUN_TIMEOUT_S = float(os.environ.get("HARMONY_E2E_RUN_TIMEOUT", "600"))
SCREENSHOT = os.environ.get("HARMONY_E2E_SCREENSHOT")  # e.g. docs/comfyui_av_player.png
TIMES_FILE = os.environ.get("HARMONY_E2E_TIMES")  # write {template: seconds} as JSON here


_why_skip = browser_problem  # host, Chromium and playwright (tests/e2e/realhost.py)


pytestmark = pytest.mark.skipif(_why_skip() is not None, reason=_why_skip() or "")


def _post(url, data):
    req = urllib.request.Request(url, json.dumps(data).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    """A ComfyUI server whose custom_nodes folder holds only this pack."""
    base = tmp_path_factory.mktemp("comfy")
    pack_home(base, ROOT, PACK)
    with running_comfyui(base) as (url, log_path):
        _post(url + "/settings/Comfy.TutorialCompleted", True)
        yield {"url": url, "base": base, "log": log_path}


def test_pack_imports_and_registers(comfy):
    text = comfy["log"].read_text()
    ours = [line for line in text.splitlines() if line.rstrip().endswith(os.sep + PACK)]
    assert ours, f"{PACK} is not in ComfyUI's custom node import list:\n{text[-3000:]}"
    assert not any("IMPORT FAILED" in line for line in ours), text[-3000:]
    info = _get(comfy["url"] + "/object_info")
    sys.path.insert(0, ROOT)
    import nodes

    for node_id in nodes.NODE_CLASS_MAPPINGS:
        assert node_id in info, f"{node_id} missing from /object_info"
        assert info[node_id]["category"].startswith("Harmony/")
    for core in ("CreateVideo", "SaveVideo"):
        assert core in info
    templates = _get(comfy["url"] + "/api/workflow_templates")
    assert sorted(templates[PACK]) == TEMPLATES
    exts = _get(comfy["url"] + "/extensions")
    assert any(e.endswith(f"/extensions/{PACK}/harmony_av.js") for e in exts)


@pytest.fixture(scope="module")
def page(comfy):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        pg = browser.new_page(viewport={"width": 1600, "height": 1000})
        errors = []
        pg.on("pageerror", lambda e: errors.append(f"{e}\n{e.stack}"))
        pg.goto(comfy["url"])
        pg.wait_for_function("window.app && window.app.graph && window.LiteGraph", timeout=120_000)
        pg.wait_for_function(
            "Object.keys(LiteGraph.registered_node_types).includes('HarmonySaveAV')", timeout=60_000)
        pg.wait_for_timeout(2000)
        # errors raised by the frontend's own start-up (seen: a settings onChange in this offline
        # setup) are not ours; from here on any page error fails the test
        startup = [e for e in errors if "ComfyUI-Harmony" not in e]
        errors[:] = [e for e in errors if e not in startup]
        pg.harmony_errors = errors
        yield pg
        browser.close()


def _output_file(comfy, item):
    folder = comfy["base"] / item.get("type", "output")
    return folder / item.get("subfolder", "") / item["filename"]


def _wait_for_run(comfy, before, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        history = _get(comfy["url"] + "/history")
        new = [k for k in history if k not in before]
        if new:
            entry = history[new[0]]
            status = entry.get("status", {})
            if status.get("completed") or status.get("status_str") == "error":
                return entry
        time.sleep(1)
    pytest.fail(f"the run did not finish in {timeout} s:\n{comfy['log'].read_text()[-3000:]}")


def _run_seconds(entry):
    stamps = {m[0]: m[1].get("timestamp") for m in entry["status"].get("messages", [])}
    if stamps.get("execution_start") and stamps.get("execution_success"):
        return (stamps["execution_success"] - stamps["execution_start"]) / 1000.0
    return None


def _error_text(entry):
    for kind, msg in entry["status"].get("messages", []):
        if kind == "execution_error":
            return (f"{msg['node_type']} failed: {msg['exception_type']}: {msg['exception_message']}\n"
                    + "".join(msg.get("traceback", [])[-3:]))
    return json.dumps(entry["status"])[-2000:]


RUN_TIMES = {}


@pytest.mark.parametrize("name", WORKFLOWS)
def test_template_runs_from_the_frontend(comfy, page, name):
    # load the template the way the template browser does: fetch it from the pack's route
    n_nodes = page.evaluate(
        """async (name) => {
            const r = await fetch(`/api/workflow_templates/ComfyUI-Harmony/${name}.json`);
            const wf = await r.json();
            await window.app.loadGraphData(wf, true, true, name);
            return window.app.graph._nodes.length;
        }""", name)
    template = json.loads(open(os.path.join(ROOT, "workflows", name + ".json")).read())
    assert n_nodes == len(template["nodes"])
    missing = page.evaluate("window.app.graph._nodes.filter(n => !LiteGraph.registered_node_types[n.type])"
                            ".map(n => n.type)")
    assert missing == []

    # queue it as a person would: focus the canvas, press Ctrl+Enter
    before = set(_get(comfy["url"] + "/history"))
    page.mouse.click(800, 900)
    page.keyboard.press("Control+Enter")
    entry = _wait_for_run(comfy, before, RUN_TIMEOUT_S)
    assert entry["status"].get("status_str") == "success", _error_text(entry)
    RUN_TIMES[name] = _run_seconds(entry)

    from harmony import media
    from nodes.mp4_metadata import read_metadata

    videos = []
    for node_id, out in entry["outputs"].items():
        for item in out.get("harmony_av", []) + out.get("images", []):
            if item["filename"].endswith(".mp4"):
                videos.append(_output_file(comfy, item))
    assert videos, f"no mp4 among the outputs: {entry['outputs']}"
    for path in videos:
        info = media.probe(str(path))
        assert info["video"] is not None and info["audio"] is not None, f"{path}: {info}"
        assert read_metadata(str(path))["workflow"]["nodes"], "workflow not embedded"

    if any("harmony_av" in out for out in entry["outputs"].values()):
        # our in-node player got the clip: a playable <video> with sound and the AV timeline
        page.wait_for_selector(".harmony-av-player video[src*='.mp4']", timeout=30_000)
        page.wait_for_function(
            "(() => { const v = document.querySelector('.harmony-av-player video');"
            " return v && v.readyState >= 1 && v.duration > 0; })()", timeout=30_000)
        badge = page.inner_text(".harmony-av-sync")
        # a verdict ("A/V offset ...") or, below the confidence threshold, "A/V sync uncertain: ..."
        assert ("A/V offset" in badge or "A/V sync uncertain" in badge) and " ms" in badge and "fps" in badge, badge
        drawn = page.evaluate(
            """(() => { const c = document.querySelector('.harmony-av-timeline');
                const d = c.getContext('2d').getImageData(0, c.height * 0.75, c.width, 1).data;
                let lit = 0; for (let i = 0; i < d.length; i += 4) if (d[i + 2] > 200) lit++;
                return lit; })()""")
        assert drawn > 0, "the waveform was not drawn"
        if SCREENSHOT and name == "harmony_t2av":
            page.wait_for_timeout(500)
            box = page.evaluate("(() => { const n = window.app.graph._nodes.find(n => n.type === 'HarmonySaveAV');"
                                " window.app.canvas.ds.offset = [-n.pos[0] + 40, -n.pos[1] + 60];"
                                " window.app.canvas.ds.scale = 1; window.app.canvas.setDirty(true, true);"
                                " return [n.size[0] + 40, n.size[1] + 80]; })()")
            page.wait_for_timeout(500)
            page.screenshot(path=SCREENSHOT, clip={"x": 0, "y": 0, "width": box[0] + 120,
                                                   "height": box[1] + 60}, type="png")

        # drop the mp4 onto the canvas: the graph that made it comes back
        mp4 = next(p for p in videos if "harmony_av" in json.dumps(entry["outputs"]))
        item = next(i for out in entry["outputs"].values() for i in out.get("harmony_av", []))
        types = page.evaluate(
            """async (item) => {
                window.app.graph.clear();
                const q = new URLSearchParams({filename: item.filename, subfolder: item.subfolder, type: item.type});
                const blob = await (await fetch('/view?' + q)).blob();
                const file = new File([blob], item.filename, {type: 'video/mp4'});
                const dt = new DataTransfer(); dt.items.add(file);
                const target = document.querySelector('canvas#graph-canvas') || document.body;
                target.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
                for (let i = 0; i < 50 && window.app.graph._nodes.length === 0; i++)
                    await new Promise(r => setTimeout(r, 100));
                return window.app.graph._nodes.map(n => n.type).sort();
            }""", item)
        assert types == sorted(n["type"] for n in template["nodes"]), f"dropping {mp4.name} gave {types}"
    assert page.harmony_errors == []
    if TIMES_FILE:
        with open(TIMES_FILE, "w") as f:
            json.dump(RUN_TIMES, f, indent=1)
