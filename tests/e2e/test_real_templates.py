"""The real-scale templates (workflows/harmony_ovi_*.json) run end to end in a real ComfyUI.

A ComfyUI server (COMFYUI_DIR, as in test_comfyui_e2e.py) starts with a temporary base
folder whose models/ holds random files in the layouts people have:

- models/diffusion_models/Ovi/model.safetensors: Ovi's fusion layout (tests/realfiles.py),
  tiny sizes, with Ovi's video.json / audio.json beside it;
- models/vae/wan2.2_vae.safetensors: the Wan2.2 VAE at its real size (705M parameters,
  bf16): core VAELoader builds the Wan2.2 VAE with fixed sizes, so a smaller file cannot load;
- models/vae/mmaudio_vae_16k.safetensors: ComfyUI's MMAudio layout (``vae.*``, ``vocoder.*``,
  ``mel_converter.*``) at its real size (284M parameters), for the same reason, made from
  random ``v1-16.pth`` + ``best_netG.pt`` by the converter docs/real_weights_comfyui.md gives.

The one node that cannot run at tiny scale is core CLIPLoader: type ``wan`` always builds
the 5.7B-parameter umT5-XXL (comfy/text_encoders/umt5_config_xxl.json), whose random
weights (~6 GB) and one encode of 512 tokens (~5 TFLOP) do not fit a 2-core CI machine.
The test swaps that node for ``HarmonyE2ETinyUMT5``, a test-only node (written into the
server's custom_nodes here) that builds a real core CLIP from ComfyUI's own classes
(``comfy.sd.CLIP``, ``sd1_clip.SDClipModel`` with ``comfy.text_encoders.t5.T5``, the
``umt5xxl`` key, WanT5Tokenizer with a SentencePiece model) at a tiny size. Every other node
is the template's, with the sampler set to 2 steps, 1 s and 32x32 frames.

Each run must succeed and its mp4 must hold 25 frames (1 s at 24 fps: 1 + 4k frames) at
32x32 and 16 kHz audio; a wrong wire (an SD-sized VAE as video_vae) is refused naming both sides.
"""
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACK = "ComfyUI-Harmony"
from realhost import host_problem  # noqa: E402  (tests/e2e/realhost.py)
from realhost import get_json as _get, running_comfyui  # noqa: E402
RUN_TIMEOUT_S = float(os.environ.get("HARMONY_E2E_RUN_TIMEOUT", "900"))
TEMPLATES = ("harmony_ovi_t2av", "harmony_ovi_i2av", "harmony_ovi_a2v", "harmony_ovi_v2a")
TINY_CLIP = "HarmonyE2ETinyUMT5"
SIZE, SECONDS, STEPS = 32, 1.0, 2
JOBS = {"harmony_ovi_t2av": "T2AV", "harmony_ovi_i2av": "I2AV", "harmony_ovi_a2v": "A2V", "harmony_ovi_v2a": "V2A"}


def _why_skip():
    problem = host_problem()
    if problem:
        return problem
    return None


pytestmark = pytest.mark.skipif(_why_skip() is not None, reason=_why_skip() or "")

TINY_CLIP_NODE = '''"""Test-only: a real core CLIP (ComfyUI's own umT5 classes) at a tiny size.

Core CLIPLoader type wan always builds the 5.7B umT5-XXL; this node builds the same classes
with d_model 32 so the real-scale templates can run on a CPU. Written by
tests/e2e/test_real_templates.py; never shipped.
"""
import io

import torch

import comfy.sd
import comfy.sd1_clip
import comfy.supported_models_base
import comfy.text_encoders.t5
import comfy.text_encoders.wan

WIDTH = 32
CONFIG = {"d_ff": 48, "d_kv": 8, "d_model": WIDTH, "num_heads": 4, "num_layers": 2, "model_type": "umt5",
          "dense_act_fn": "gelu_pytorch_tanh", "is_gated_act": True, "layer_norm_epsilon": 1e-6,
          "relative_attention_num_buckets": 32, "pad_token_id": 0, "eos_token_id": 1, "vocab_size": 64}
LINES = ["a woman with short dark hair sits at a wooden desk by a window and talks to the camera smiling",
         "hello this clip was made with harmony in comfyui", "audio a clear female voice in a quiet room",
         "waves roll onto a rocky beach at sunset spray bursts against the rocks wind"] * 20


def spiece_model() -> bytes:
    import sentencepiece

    out = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(LINES), model_writer=out, vocab_size=CONFIG["vocab_size"], pad_id=0, eos_id=1,
        unk_id=2, bos_id=-1, hard_vocab_limit=False, minloglevel=2)
    return out.getvalue()


class TinyUMT5Model(comfy.sd1_clip.SDClipModel):
    def __init__(self, device="cpu", layer="last", layer_idx=None, dtype=None, model_options={}):
        super().__init__(device=device, layer=layer, layer_idx=layer_idx, textmodel_json_config=dict(CONFIG),
                         dtype=dtype, special_tokens={"end": 1, "pad": 0}, model_class=comfy.text_encoders.t5.T5,
                         enable_attention_masks=True, zero_out_masked=True, model_options=model_options)


class TinyWanTE(comfy.sd1_clip.SD1ClipModel):
    def __init__(self, device="cpu", dtype=None, model_options={}, **kwargs):
        super().__init__(device=device, dtype=dtype, model_options=model_options, name="umt5xxl",
                         clip_model=TinyUMT5Model, **kwargs)


class HarmonyE2ETinyUMT5:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load"
    CATEGORY = "testing"

    def load(self):
        target = comfy.supported_models_base.ClipTarget(comfy.text_encoders.wan.WanT5Tokenizer, TinyWanTE)
        clip = comfy.sd.CLIP(target, tokenizer_data={"spiece_model": torch.ByteTensor(list(spiece_model()))},
                             parameters=0)
        g = torch.Generator().manual_seed(0)
        sd = {}
        for k, t in clip.cond_stage_model.state_dict().items():
            sd[k] = torch.ones(t.shape) if "layer_norm" in k else torch.randn(t.shape, generator=g) * 0.2
        missing, unexpected = clip.cond_stage_model.load_state_dict(sd, strict=False)
        assert not unexpected
        return (clip,)


NODE_CLASS_MAPPINGS = {"HarmonyE2ETinyUMT5": HarmonyE2ETinyUMT5}
'''


# ------------------------------------------------------------------ files


def _write_models(models):
    """Random files in the real layouts (see the module docstring)."""
    import torch

    sys.path.insert(0, ROOT)
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import realfiles
    from harmony.weightfile import save_safetensors
    from harmony.codecs.bigvgan import BigVGANVocoder
    from harmony.codecs.mmaudio_vae import MMAudioVAE
    from harmony.codecs.wan_vae import WanVAE
    from harmony.config import TowerConfig

    ovi = models / "diffusion_models" / "Ovi"
    vae = models / "vae"
    for d in (ovi, vae):
        d.mkdir(parents=True)
    cfg = realfiles.stack_config()  # real codec channels (48 / 20), umT5 text_len 512
    width = 32  # the tiny core CLIP's width
    cfg = cfg.replace(video=TowerConfig(**{**cfg.video.to_dict(), "text_dim": width}),
                      audio=TowerConfig(**{**cfg.audio.to_dict(), "text_dim": width}))
    realfiles.write_ovi(str(ovi / "model.safetensors"), realfiles.random_model(cfg, seed=1))
    realfiles.write_ovi_configs(str(ovi), cfg)
    torch.manual_seed(2)
    with torch.no_grad():
        wan = WanVAE()  # the real size: core VAELoader builds exactly this
        for p in wan.parameters():
            p.mul_(0.5)
        save_safetensors({k: v.to(torch.bfloat16).contiguous() for k, v in wan.state_dict().items()},
                         str(vae / "wan2.2_vae.safetensors"), {"format": "pt"})
        del wan
        # MMAudio's two upstream files at their real size, made into ComfyUI's one-file layout by the
        # command docs/real_weights_comfyui.md gives (nodes.core_inputs.write_comfy_mmaudio_vae)
        ext = models / "mmaudio_ext_weights"
        ext.mkdir()
        torch.save(MMAudioVAE().state_dict(), ext / "v1-16.pth")
        torch.save({"generator": BigVGANVocoder().state_dict()}, ext / "best_netG.pt")
        from nodes.core_inputs import write_comfy_mmaudio_vae

        write_comfy_mmaudio_vae(str(ext / "v1-16.pth"), str(ext / "best_netG.pt"),
                                str(vae / "mmaudio_vae_16k.safetensors"))
        shutil.rmtree(ext)
        # TAESD, SD's tiny image VAE (4 latent channels; core detects it by this key), for the mismatch check
        save_safetensors({"taesd_decoder.1.weight": torch.zeros(64, 4, 3, 3)}, str(vae / "taesd_sd.safetensors"),
                         {"format": "pt"})


# ------------------------------------------------------------------ server


def _post(url, data):
    req = urllib.request.Request(url, json.dumps(data).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read().decode() or "null")
    except urllib.error.HTTPError as e:
        raise AssertionError(f"POST {url}: {e.code} {e.read().decode()[:3000]}") from None


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy_real")
    (base / "custom_nodes").mkdir()
    os.symlink(ROOT, base / "custom_nodes" / PACK)
    tiny = base / "custom_nodes" / "harmony_e2e_tiny_umt5"
    tiny.mkdir()
    (tiny / "__init__.py").write_text(TINY_CLIP_NODE)
    for d in ("user", "input", "output", "temp"):
        (base / d).mkdir()
    _write_models(base / "models")
    with running_comfyui(base, ("--preview-method", "none")) as (url, log_path):
        yield {"url": url, "base": base, "log": log_path, "info": _get(url + "/object_info", timeout=60)}


# ------------------------------------------------------------------ UI format -> API prompt


def _is_widget(decl) -> bool:
    typ = decl[0]
    opts = decl[1] if len(decl) > 1 and isinstance(decl[1], dict) else {}
    if opts.get("forceInput"):
        return False
    return isinstance(typ, list) or typ in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")


def to_prompt(wf: dict, info: dict) -> dict:
    """A UI-format workflow -> the API prompt the frontend would queue (widget values by the
    host's own /object_info declarations; a seed with control_after_generate takes two slots)."""
    links = {lk[0]: lk for lk in wf["links"]}
    prompt = {}
    for n in wf["nodes"]:
        if n["type"] == "Note" or n.get("mode", 0) != 0:
            continue
        decl = info[n["type"]]["input"]
        inputs, values = {}, list(n.get("widgets_values") or [])
        for section in ("required", "optional"):
            for name, d in decl.get(section, {}).items():
                if not _is_widget(d):
                    continue
                if not values:
                    break
                inputs[name] = values.pop(0)
                opts = d[1] if len(d) > 1 and isinstance(d[1], dict) else {}
                if opts.get("control_after_generate") and values:
                    values.pop(0)
        for inp in n.get("inputs", []):
            if inp.get("link") is not None:
                lk = links[inp["link"]]
                inputs[inp["name"]] = [str(lk[1]), lk[2]]
        prompt[str(n["id"])] = {"class_type": n["type"], "inputs": inputs}
    return prompt


def template_prompt(name: str, info: dict) -> dict:
    with open(os.path.join(ROOT, "workflows", name + ".json"), encoding="utf-8") as f:
        wf = json.load(f)
    prompt = to_prompt(wf, info)
    for node in prompt.values():
        if node["class_type"] == "CLIPLoader":  # cannot run at tiny scale: see the module docstring
            assert node["inputs"]["type"] == "wan"
            node["class_type"], node["inputs"] = TINY_CLIP, {}
        if node["class_type"] == "HarmonySyncCFGSampler":
            node["inputs"].update(steps=STEPS, seconds=SECONDS, width=SIZE, height=SIZE)
    return prompt


def run(comfy, prompt, timeout=RUN_TIMEOUT_S):
    before = set(_get(comfy["url"] + "/history"))
    _post(comfy["url"] + "/prompt", {"prompt": prompt, "client_id": "harmony-e2e"})
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


def error_text(entry) -> str:
    for kind, msg in entry["status"].get("messages", []):
        if kind == "execution_error":
            return f"{msg['node_type']} failed: {msg['exception_type']}: {msg['exception_message']}"
    return json.dumps(entry["status"])[-2000:]


def run_seconds(entry):
    stamps = {m[0]: m[1].get("timestamp") for m in entry["status"].get("messages", [])}
    if stamps.get("execution_start") and stamps.get("execution_success"):
        return (stamps["execution_success"] - stamps["execution_start"]) / 1000.0
    return None


# ------------------------------------------------------------------ tests


def test_core_loaders_detect_the_real_layouts(comfy):
    info = comfy["info"]
    assert TINY_CLIP in info, f"the test's tiny CLIP node did not register:\n{comfy['log'].read_text()[-3000:]}"
    assert "Ovi/model.safetensors" in info["HarmonyModelLoader"]["input"]["required"]["model_name"][0]
    vaes = info["VAELoader"]["input"]["required"]["vae_name"][0]
    assert {"wan2.2_vae.safetensors", "mmaudio_vae_16k.safetensors"} <= set(vaes)


@pytest.mark.parametrize("name", TEMPLATES)
def test_real_template_runs_end_to_end(comfy, name):
    sys.path.insert(0, ROOT)
    from harmony import media

    entry = run(comfy, template_prompt(name, comfy["info"]))
    log = comfy["log"].read_text()
    assert entry["status"].get("status_str") == "success", error_text(entry) + "\n" + log[-3000:]
    # core VAELoader built both VAEs from these files with every weight in place
    assert "Missing VAE keys" not in log and "No VAE weights detected" not in log, log[-3000:]
    clips = [item for out in entry["outputs"].values() for item in out.get("harmony_av", [])]
    assert len(clips) == 1, entry["outputs"]
    item = clips[0]
    path = comfy["base"] / item.get("type", "output") / item.get("subfolder", "") / item["filename"]
    info = media.probe(str(path))
    assert info["video"]["width"] == SIZE and info["video"]["height"] == SIZE, info
    assert abs(info["video"]["fps"] - 24) < 1e-6, info
    assert info["audio"]["sample_rate"] == 16000, info
    frames, fps, wave, sample_rate = media.read_video(str(path))
    assert frames.shape[0] == 25, f"{name}: {frames.shape[0]} frames, expected 25 (1 s at 24 fps: 1 + 4k)"
    assert sample_rate == 16000 and wave is not None and wave.shape[-1] >= 15000, (sample_rate, wave.shape)
    times = os.environ.get("HARMONY_E2E_TIMES")
    seconds = run_seconds(entry)
    print(f"{name} ({JOBS[name]}): {seconds:.1f} s in the real host")
    if times:
        data = json.load(open(times)) if os.path.isfile(times) else {}
        data[name] = seconds
        with open(times, "w") as f:
            json.dump(data, f, indent=1)


def test_an_sd_vae_as_video_vae_is_refused_naming_both_sides(comfy):
    prompt = template_prompt("harmony_ovi_t2av", comfy["info"])
    for node in prompt.values():
        if node["class_type"] == "VAELoader" and node["inputs"]["vae_name"] == "wan2.2_vae.safetensors":
            node["inputs"]["vae_name"] = "taesd_sd.safetensors"
    entry = run(comfy, prompt, timeout=300)
    assert entry["status"].get("status_str") == "error"
    text = error_text(entry)
    assert "video_vae has 4 latent channels" in text and "48-channel" in text, text
