"""Opening a real-scale template with no model files: the real frontend says what to get and where.

A ComfyUI server (COMFYUI_DIR, as in test_comfyui_e2e.py) starts with this pack and an empty
models folder; headless Chromium (CHROMIUM, the ``playwright`` package) opens each
workflows/harmony_ovi_*.json the way the template browser does (the template route, then
``app.loadGraphData(json, true, true, name)``). For each template:

* ComfyUI's Missing Models dialog opens by itself and lists exactly the three downloadable
  files, as "<folder> / <file>" with a Download button (not greyed out: source and file type
  accepted) and Copy URL;
* no two nodes overlap on the canvas at the sizes the frontend gives them (it enlarges a node
  to fit its widgets), title bars included.

For one template, Download is pressed on the Ovi model's entry with huggingface.co answered by
a stand-in (there is no network here): the browser saves the file as ``model.safetensors``, the
URL's last part, in its own downloads folder; the ``Ovi/`` subfolder is not kept.

The templates with the bundled model open with no dialog and no overlap either.

HARMONY_E2E_SCREENSHOTS=docs writes, for harmony_ovi_t2av: docs/comfyui_ovi_opened_no_weights.png
(the window as first opened), docs/comfyui_ovi_missing_models.png (the dialog) and
docs/comfyui_ovi_template_canvas.png (the canvas once the dialog is closed).
"""
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACK = "ComfyUI-Harmony"
from realhost import CHROMIUM, browser_problem, pack_home, running_comfyui  # noqa: E402  (tests/e2e/realhost.py)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOTS = os.environ.get("HARMONY_E2E_SCREENSHOTS")  # a folder, e.g. docs
TEMPLATES = ("harmony_ovi_t2av", "harmony_ovi_i2av", "harmony_ovi_a2v", "harmony_ovi_v2a")
BUNDLED = sorted(f[:-5] for f in os.listdir(os.path.join(ROOT, "workflows"))
                 if f.endswith(".json") and not f.startswith("harmony_ovi_"))
HF = "https://huggingface.co/"
EXPECTED = {  # the dialog's label -> the URL behind its Download button
    "diffusion_models / Ovi/model.safetensors": HF + "chetwinlow1/Ovi/resolve/main/model.safetensors",
    "text_encoders / umt5_xxl_fp8_e4m3fn_scaled.safetensors":
        HF + "Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/text_encoders/"
             "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
    "vae / wan2.2_vae.safetensors":
        HF + "Comfy-Org/Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files/vae/wan2.2_vae.safetensors",
}
STAND_IN_BYTES = b"stand-in for a model file"


_why_skip = browser_problem  # host, Chromium and playwright (tests/e2e/realhost.py)


pytestmark = pytest.mark.skipif(_why_skip() is not None, reason=_why_skip() or "")


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    """A ComfyUI server with only this pack and no model files at all."""
    import urllib.request

    base = tmp_path_factory.mktemp("comfy")
    pack_home(base, ROOT, PACK)
    with running_comfyui(base) as (url, log_path):
        req = urllib.request.Request(url + "/settings/Comfy.TutorialCompleted", b"true",
                                     {"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).read()
        yield {"url": url, "base": base, "log": log_path}


def _stand_in_hf(route):
    """huggingface.co, offline: a GET gives a few bytes, named by nothing but the URL; a HEAD (the
    dialog asks for the size) gives no size, so the dialog shows "Download (?)" rather than the
    stand-in's size, and Download still fetches the file itself."""
    headers = {"content-type": "application/octet-stream", "access-control-allow-origin": "*"}
    if route.request.method == "HEAD":
        route.fulfill(status=200, headers={**headers, "transfer-encoding": "chunked"})
    else:
        route.fulfill(status=200, headers=headers, body=STAND_IN_BYTES)


@pytest.fixture(scope="module")
def browser(comfy):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(comfy, browser):
    """A fresh browser profile each time: the frontend would otherwise reopen the last template
    (and its dialog) on start."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000}, accept_downloads=True)
    context.route("https://huggingface.co/**", _stand_in_hf)
    pg = context.new_page()
    pg.goto(comfy["url"])
    pg.wait_for_function("window.app && window.app.graph && window.LiteGraph", timeout=120_000)
    pg.wait_for_function("Object.keys(LiteGraph.registered_node_types).includes('HarmonyModelLoader')",
                         timeout=60_000)
    pg.wait_for_timeout(1000)
    yield pg
    context.close()


def open_template(page, name):
    """What the template browser does for a custom node pack's template."""
    page.evaluate(
        """async (name) => {
            const r = await fetch(`/api/workflow_templates/ComfyUI-Harmony/${name}.json`);
            await window.app.loadGraphData(await r.json(), true, true, name);
        }""", name)


def dialog_entries(page):
    page.wait_for_selector(".comfy-missing-models li", timeout=30_000)
    page.wait_for_timeout(500)
    return page.evaluate(
        """() => [...document.querySelectorAll('.comfy-missing-models li')].map(li => {
            const buttons = [...li.querySelectorAll('button')];
            return {label: li.querySelector('span[title]')?.textContent.trim(),
                    url: li.querySelector('span[title]')?.getAttribute('title'),
                    text: li.innerText,
                    buttons: buttons.map(b => ({text: b.innerText.trim(), disabled: b.disabled,
                                                title: b.getAttribute('title')}))};
        })""")


def live_overlaps(page):
    """Pairs of nodes whose drawn boxes (title bar included) overlap, at the frontend's sizes."""
    return page.evaluate(
        """() => {
            const title = LiteGraph.NODE_TITLE_HEIGHT;
            const boxes = window.app.graph._nodes.map(n => ({name: `${n.title} (#${n.id})`,
                l: n.pos[0], t: n.pos[1] - title, r: n.pos[0] + n.size[0], b: n.pos[1] + n.size[1]}));
            const out = [];
            for (let i = 0; i < boxes.length; i++)
                for (let j = i + 1; j < boxes.length; j++) {
                    const a = boxes[i], b = boxes[j];
                    if (a.l < b.r && b.l < a.r && a.t < b.b && b.t < a.b) out.push(`${a.name} overlaps ${b.name}`);
                }
            return out;
        }""")


@pytest.mark.parametrize("name", TEMPLATES)
def test_opening_without_weights_lists_what_to_get_and_where(comfy, page, name):
    open_template(page, name)
    entries = dialog_entries(page)
    assert page.inner_text(".p-dialog").count("Missing Models") >= 1
    assert {e["label"]: e["url"] for e in entries} == EXPECTED, entries
    for e in entries:
        download = next(b for b in e["buttons"] if b["text"].startswith("Download"))
        assert not download["disabled"] and download["title"] == e["url"], e
        assert any(b["text"] == "Copy URL" and not b["disabled"] for b in e["buttons"]), e
        assert "not allowed" not in e["text"] and "Invalid directory" not in e["text"], e
    template = json.loads(open(os.path.join(ROOT, "workflows", name + ".json"), encoding="utf-8").read())
    assert page.evaluate("window.app.graph._nodes.length") == len(template["nodes"])
    titles = page.evaluate("window.app.graph._nodes.filter(n => n.type === 'VAELoader').map(n => n.title)")
    assert sorted(titles) == ["Load VAE (MMAudio audio)", "Load VAE (Wan2.2 video)"]
    assert live_overlaps(page) == []

    if name == "harmony_ovi_t2av":
        if SCREENSHOTS:
            page.screenshot(path=os.path.join(SCREENSHOTS, "comfyui_ovi_opened_no_weights.png"))
            page.locator(".p-dialog").screenshot(path=os.path.join(SCREENSHOTS, "comfyui_ovi_missing_models.png"))
        # Download on the Ovi model's entry: where does a file from a subfolder land?
        ovi = page.locator(".comfy-missing-models li", has_text="Ovi/model.safetensors")
        with page.context.expect_event("download", timeout=30_000) as got:
            ovi.get_by_role("button", name="Download").click()
        download = got.value
        assert download.url == EXPECTED["diffusion_models / Ovi/model.safetensors"]
        assert download.suggested_filename == "model.safetensors"  # no Ovi/ folder: the user moves it
        assert open(download.path(), "rb").read() == STAND_IN_BYTES

    page.keyboard.press("Escape")
    page.wait_for_selector(".comfy-missing-models", state="detached", timeout=10_000)
    if SCREENSHOTS and name == "harmony_ovi_t2av":
        page.wait_for_timeout(500)
        page.screenshot(path=os.path.join(SCREENSHOTS, "comfyui_ovi_template_canvas.png"))


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_model_templates_open_with_no_overlap(comfy, page, name):
    open_template(page, name)
    page.wait_for_timeout(500)
    assert page.query_selector(".comfy-missing-models") is None  # their model is bundled: nothing to get
    assert live_overlaps(page) == []
