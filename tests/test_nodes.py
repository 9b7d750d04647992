"""Contract tests for the ComfyUI nodes (no ComfyUI needed; CPU; the bundled model)."""
import importlib.util
import os
import re
import sys

import pytest
import torch

import nodes
from harmony import media, metrics
from nodes import host
from nodes.conditioning import BOTH, DRIVING_AUDIO, DRIVING_VIDEO, FIRST_FRAME, REFERENCE_VOICE
from nodes.errors import HarmonyOutOfMemory
from nodes.model_loader import BUNDLED
from nodes.mp4_metadata import embed_metadata, read_metadata
from nodes.save_av import UI_KEY, frame_strip_jpeg, waveform_envelope
from nodes.types import AVConditioning, HarmonyInputError
from workflow_runner import is_widget

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
M = nodes.NODE_CLASS_MAPPINGS


def fast_sampler_args(**over):
    args = dict(seed=3, steps=2, seconds=1.0, width=0, height=0, shift=5.0, guidance="synccfg",
                sv=3.0, sa=2.0, text_cfg=1.0, solver="euler")
    args.update(over)
    return args


@pytest.fixture(scope="module")
def pipe():
    torch.set_num_threads(1)
    return M["HarmonyModelLoader"]().load(BUNDLED, "auto", "none", 4, "sdpa")[0]


@pytest.fixture(scope="module")
def text(pipe):
    return M["HarmonyTextConditioning"]().encode(pipe, "a red ball bounces", "two bounces", "")[0]


@pytest.fixture
def out_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HARMONY_OUTPUT_DIR", str(tmp_path / "output"))
    monkeypatch.setenv("HARMONY_TEMP_DIR", str(tmp_path / "temp"))
    return tmp_path


# ------------------------------------------------------------------ declarations


@pytest.mark.parametrize("node_id", sorted(M))
def test_declarations(node_id):
    cls = M[node_id]
    assert node_id.startswith("Harmony") and node_id in nodes.NODE_DISPLAY_NAME_MAPPINGS
    assert cls.CATEGORY.startswith("Harmony/")
    assert callable(getattr(cls, cls.FUNCTION))
    spec = cls.INPUT_TYPES()
    assert set(spec) <= {"required", "optional", "hidden"}
    for section in ("required", "optional"):
        for name, decl in spec.get(section, {}).items():
            typ, options = decl[0], decl[1]
            assert options.get("tooltip"), f"{node_id}.{name} has no tooltip"
            if isinstance(typ, list):
                assert typ and options["default"] in typ, f"{node_id}.{name}: default not an option"
            elif typ in ("INT", "FLOAT"):
                assert options["min"] <= options["default"] <= options["max"], f"{node_id}.{name}"
                assert isinstance(options["default"], int if typ == "INT" else float)
            elif typ == "BOOLEAN":
                assert isinstance(options["default"], bool)
            elif typ == "STRING":
                assert isinstance(options["default"], str)
            else:
                assert re.fullmatch(r"[A-Z_]+", typ) and not is_widget(typ, options)
    names = getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)
    assert len(names) == len(cls.RETURN_TYPES) == len(getattr(cls, "OUTPUT_TOOLTIPS", cls.RETURN_TYPES))
    assert cls.RETURN_TYPES or getattr(cls, "OUTPUT_NODE", False)


def test_pack_imports_as_a_package_like_comfyui():
    name = "ComfyUI-Harmony-pack-test"
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "__init__.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        assert set(module.NODE_CLASS_MAPPINGS) == set(M)
        assert module.WEB_DIRECTORY == "./js"
        assert os.path.isfile(os.path.join(ROOT, "js", "harmony_av.js"))
        # the pack's nodes use the pack's own harmony subpackage
        assert sys.modules[f"{name}.nodes.harmony_lib"].harmony.__name__ == f"{name}.harmony"
    finally:
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]
    assert "comfy" not in sys.modules and "folder_paths" not in sys.modules


def test_only_host_imports_comfyui():
    pattern = re.compile(r"^\s*(import|from)\s+(comfy|comfy_api|comfy_extras|folder_paths|nodes\b)|"
                         r"import_module\(\s*['\"](comfy|folder_paths)", re.M)
    for fname in sorted(os.listdir(os.path.join(ROOT, "nodes"))):
        if fname.endswith(".py") and fname != "host.py":
            with open(os.path.join(ROOT, "nodes", fname), encoding="utf-8") as f:
                assert not pattern.search(f.read()), f"nodes/{fname} imports ComfyUI; only host.py may"
    assert host.available() is False and host.torch_device().type in ("cpu", "cuda")


def test_nodes_import_harmony_plainly_through_one_module():
    """No import strings: each node module names the harmony modules it uses (``from .harmony_lib
    import pipeline``); only nodes/harmony_lib.py knows the pack's two import modes, and only
    host.py imports by name at run time (ComfyUI, which may be absent)."""
    strings = re.compile(r"import_module\(|__import__\(|harmony_module")
    direct = re.compile(r"^\s*(from\s+(\.\.)?harmony\b|import\s+harmony\b)", re.M)
    for fname in sorted(os.listdir(os.path.join(ROOT, "nodes"))):
        if not fname.endswith(".py"):
            continue
        with open(os.path.join(ROOT, "nodes", fname), encoding="utf-8") as f:
            text = f.read()
        if fname != "host.py":
            assert not strings.search(text), f"nodes/{fname} reaches a module through a string"
        if fname != "harmony_lib.py":
            assert not direct.search(text), f"nodes/{fname} imports harmony itself; use nodes/harmony_lib.py"
    import nodes.harmony_lib as lib
    import harmony.pipeline

    assert lib.pipeline is harmony.pipeline and lib.harmony.__name__ == "harmony"  # top-level mode here


def test_loader_lists_what_can_be_used(tmp_path, monkeypatch):
    spec = M["HarmonyModelLoader"].INPUT_TYPES()["required"]
    from harmony.attention import available_backends
    from harmony.checkpoint import DTYPES

    assert spec["dtype"][0] == list(DTYPES) and "fp8_e4m3fn" in spec["dtype"][0]
    assert spec["attention"][0] == available_backends()
    assert spec["offload"][0] == ["auto", "none", "block_swap", "cpu"]
    (tmp_path / "mine.safetensors").write_bytes(b"")
    (tmp_path / "mine.text.safetensors").write_bytes(b"")
    monkeypatch.setenv("HARMONY_MODELS_DIR", str(tmp_path))
    assert M["HarmonyModelLoader"].INPUT_TYPES()["required"]["model_name"][0] == [BUNDLED, "mine.safetensors"]
    with pytest.raises(FileNotFoundError, match="model_name"):
        host.model_path("missing.safetensors")


def test_loader_rejects_unknown_settings():
    with pytest.raises(HarmonyInputError, match="dtype"):
        M["HarmonyModelLoader"]().load(BUNDLED, "int3", "none", 4, "sdpa")
    with pytest.raises(HarmonyInputError, match="attention"):
        M["HarmonyModelLoader"]().load(BUNDLED, "auto", "none", 4, "no-such-backend")


# ------------------------------------------------------------------ conditioning


def test_conditioning_picks_the_job(pipe, text):
    assert isinstance(text, AVConditioning) and text.job == "T2AV"
    audio = {"waveform": torch.randn(1, 2, 16000 * 2) * 0.1, "sample_rate": 16000}
    a2v = M["HarmonyAudioConditioning"]().add(text, audio, DRIVING_AUDIO)[0]
    assert a2v.job == "A2V" and a2v.driving_audio[0].shape == (2, 32000) and text.job == "T2AV"
    voice = M["HarmonyAudioConditioning"]().add(text, audio, REFERENCE_VOICE)[0]
    assert voice.job == "T2AV" and voice.ref_voice[1] == 16000
    both = M["HarmonyAudioConditioning"]().add(text, audio, BOTH)[0]
    assert both.job == "A2V" and both.ref_voice is not None
    frames = torch.rand(20, 64, 64, 3)
    v2a = M["HarmonyVideoConditioning"]().add(text, DRIVING_VIDEO, 16.0, images=frames)[0]
    assert v2a.job == "V2A" and v2a.driving_video[1] == 16.0
    i2av = M["HarmonyVideoConditioning"]().add(text, FIRST_FRAME, 16.0, images=frames)[0]
    assert i2av.job == "I2AV" and i2av.first_frame.shape == (64, 64, 3)


def test_core_video_input_is_accepted(text):
    class Components:
        images, frame_rate, audio = torch.rand(24, 32, 32, 3), 12.0, None

    class Video:  # what core LoadVideo / CreateVideo give: get_components()
        def get_components(self):
            return Components()

    v2a = M["HarmonyVideoConditioning"]().add(text, DRIVING_VIDEO, 24.0, video=Video())[0]
    assert v2a.driving_video[0].shape == (24, 32, 32, 3) and v2a.driving_video[1] == 12.0


def test_bad_inputs_raise_actionable_errors(pipe, text):
    short = {"waveform": torch.zeros(1, 1, 4000), "sample_rate": 16000}
    with pytest.raises(HarmonyInputError, match=r"driving audio is 0\.25 s long.*longer clip"):
        M["HarmonyAudioConditioning"]().add(text, short, DRIVING_AUDIO)
    with pytest.raises(HarmonyInputError, match=r"reference voice is 0\.0[0-9] s"):
        M["HarmonyAudioConditioning"]().add(text, {"waveform": torch.zeros(1, 1, 800), "sample_rate": 16000},
                                            REFERENCE_VOICE)
    with pytest.raises(HarmonyInputError, match=r"'audio' expects AUDIO"):
        M["HarmonyAudioConditioning"]().add(text, torch.zeros(1, 16000), DRIVING_AUDIO)
    with pytest.raises(HarmonyInputError, match=r"'images': IMAGE must be \[frames, height, width, 3\]"):
        M["HarmonyVideoConditioning"]().add(text, FIRST_FRAME, 24.0, images=torch.rand(2, 64, 64))
    with pytest.raises(HarmonyInputError, match="connect 'images'"):
        M["HarmonyVideoConditioning"]().add(text, FIRST_FRAME, 24.0)
    with pytest.raises(HarmonyInputError, match=r"driving video is 8 frames"):
        M["HarmonyVideoConditioning"]().add(text, DRIVING_VIDEO, 16.0, images=torch.rand(8, 64, 64, 3))
    with pytest.raises(HarmonyInputError, match=r"'conditioning' expects HARMONY_CONDITIONING"):
        M["HarmonySyncCFGSampler"]().sample(pipe, {"not": "conditioning"}, **fast_sampler_args())
    with pytest.raises(HarmonyInputError, match=r"'model' expects HARMONY_MODEL"):
        M["HarmonyDecode"]().decode("model", None)


# ------------------------------------------------------------- sample, decode, save


def test_t2av_sample_decode_save(pipe, text, out_dir, monkeypatch):
    steps_seen = []

    class RecordingProgress(host.Progress):
        def set(self, value, total=None):
            steps_seen.append((value, total))
            super().set(value, total)

    monkeypatch.setattr(host, "Progress", RecordingProgress)
    latent = M["HarmonySyncCFGSampler"]().sample(pipe, text, **fast_sampler_args())[0]
    assert [s for s, _ in steps_seen] == [1, 2] and latent.job == "T2AV"
    images, audio, fps = M["HarmonyDecode"]().decode(pipe, latent)
    assert images.dtype == torch.float32 and images.dim() == 4 and images.shape[-1] == 3
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert abs(images.shape[0] - round(1.0 * fps)) <= 1 and isinstance(fps, float)
    assert audio["waveform"].dim() == 3 and audio["waveform"].shape[0] == 1
    assert abs(audio["waveform"].shape[-1] / audio["sample_rate"] - 1.0) < 0.05

    workflow = {"nodes": [{"id": 1, "type": "HarmonySaveAV"}], "links": [], "version": 0.4}
    result = M["HarmonySaveAV"]().save(images, audio, fps, "tests/clip", True, True,
                                       prompt={"1": {"class_type": "HarmonySaveAV", "inputs": {}}},
                                       extra_pnginfo={"workflow": workflow})
    clip = result["ui"][UI_KEY][0]
    path = os.path.join(out_dir, "output", clip["subfolder"], clip["filename"])
    info = media.probe(path)
    assert info["video"] is not None and info["audio"] is not None
    assert (info["video"]["width"], info["video"]["height"]) == (images.shape[2], images.shape[1])
    meta = read_metadata(path)
    assert meta["workflow"] == workflow and meta["prompt"]["1"]["class_type"] == "HarmonySaveAV"
    assert clip["type"] == "output" and clip["frames"] == images.shape[0]
    assert len(clip["envelope"]) > 10 and clip["strip"]
    assert clip["offset_s"] == pytest.approx(metrics.av_offset(images, fps, audio["waveform"][0], audio["sample_rate"])[0])


def test_preview_goes_to_temp(pipe, text, out_dir):
    images, audio = torch.rand(16, 64, 64, 3), {"waveform": torch.zeros(1, 1, 16000), "sample_rate": 16000}
    clip = M["HarmonySaveAV"]().save(images, audio, 16.0, "x", False, False)["ui"][UI_KEY][0]
    assert clip["type"] == "temp" and clip["offset_s"] is None
    assert os.path.isfile(os.path.join(out_dir, "temp", clip["subfolder"], clip["filename"]))


def test_interrupt_is_never_swallowed(pipe, text, monkeypatch):
    calls = []
    interrupt = host.interrupt_exception_type()

    def check():
        calls.append(1)
        if len(calls) == 2:
            raise interrupt()

    monkeypatch.setattr(host, "check_interrupt", check)
    with pytest.raises(interrupt):
        M["HarmonySyncCFGSampler"]().sample(pipe, text, **fast_sampler_args(steps=5))
    assert len(calls) == 2  # stopped within the first step's evaluations, not at the end


def test_out_of_memory_names_the_setting(pipe, text, monkeypatch):
    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(pipe, "sample", oom)
    try:
        with pytest.raises(HarmonyOutOfMemory, match="offload=block_swap"):
            M["HarmonySyncCFGSampler"]().sample(pipe, text, **fast_sampler_args())
    finally:
        monkeypatch.undo()


def test_latent_from_another_model_is_refused(pipe, text):
    latent = M["HarmonySyncCFGSampler"]().sample(pipe, text, **fast_sampler_args())[0]
    latent.video = torch.zeros(1, latent.video.shape[1] + 3, *latent.video.shape[2:])
    with pytest.raises(HarmonyInputError, match="same model into the sampler and the decoder"):
        M["HarmonyDecode"]().decode(pipe, latent)


def test_size_other_than_native_is_explained(pipe, text):
    h, w = pipe.frame_size
    with pytest.raises(HarmonyInputError, match=f"generates {w}x{h} only .its own video codec.; set width and "
                                                "height to 0"):
        M["HarmonySyncCFGSampler"]().sample(pipe, text, **fast_sampler_args(width=w + 8))


def test_sample_input_node_loads_bundled_media():
    node = M["HarmonySampleInput"]()
    frames, audio, fps = node.load("harmony_first_frame.png")
    assert frames.shape[0] == 1 and frames.shape[-1] == 3 and frames.max() <= 1.0
    frames, audio, fps = node.load("harmony_driving_video.mp4")
    assert frames.shape[0] >= 16 and fps > 0 and audio["waveform"].shape[-1] > 0
    frames, audio, fps = node.load("harmony_driving_audio.wav")
    assert audio["sample_rate"] == 16000 and audio["waveform"].shape[-1] >= 16000
    with pytest.raises(HarmonyInputError, match="available"):
        node.load("nope.wav")


# ------------------------------------------------------------------ helpers


def test_mp4_metadata_roundtrip(tmp_path):
    path = str(tmp_path / "a.mp4")
    media.write_mp4(path, torch.rand(8, 32, 32, 3), 8.0, torch.zeros(1, 16000), 16000)
    workflow = {"nodes": [{"widgets_values": ["a=b;c#d\\e\nline"]}], "links": []}
    embed_metadata(path, {"workflow": workflow, "prompt": {"1": {}}})
    assert read_metadata(path)["workflow"] == workflow
    assert media.probe(path)["audio"] is not None  # streams copied, sound kept


def test_envelope_and_strip():
    wave = torch.zeros(1, 16000)
    wave[0, 8000:8100] = 0.5
    env = waveform_envelope(wave, 100)
    assert len(env) == 100 and env[50] == 0.5 and env[10] == 0.0
    import base64

    assert base64.b64decode(frame_strip_jpeg(torch.rand(20, 64, 64, 3)))[:2] == b"\xff\xd8"


def test_a_file_that_is_not_a_harmony_model_is_explained(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from nodes.errors import HarmonyModelError

    save_file({"unet.conv_in.weight": torch.zeros(4, 4)}, str(tmp_path / "sdxl.safetensors"))
    save_file({"x": torch.zeros(1)}, str(tmp_path / "sdxl.text.safetensors"))
    monkeypatch.setenv("HARMONY_MODELS_DIR", str(tmp_path))
    with pytest.raises(HarmonyModelError, match=r"Harmony Model Loader: .*sdxl\.safetensors"):
        M["HarmonyModelLoader"]().load("sdxl.safetensors", "auto", "none", 4, "sdpa")


@pytest.mark.slow
def test_nodes_run_when_the_pack_is_imported_like_comfyui_does(tmp_path):
    """In ComfyUI the repo root is not on sys.path: harmony must be reached relatively."""
    import subprocess

    script = f"""
import importlib.util, os, sys, torch
sys.path = [p for p in sys.path if os.path.abspath(p or os.getcwd()) != {ROOT!r}]
torch.set_num_threads(1)
spec = importlib.util.spec_from_file_location("HarmonyPack", os.path.join({ROOT!r}, "__init__.py"))
pack = importlib.util.module_from_spec(spec)
sys.modules["HarmonyPack"] = pack
spec.loader.exec_module(pack)
M = pack.NODE_CLASS_MAPPINGS
model = M["HarmonyModelLoader"]().load("{BUNDLED}", "auto", "none", 4, "sdpa")[0]
cond = M["HarmonyTextConditioning"]().encode(model, "a ball", "", "")[0]
lat = M["HarmonySyncCFGSampler"]().sample(model, cond, 0, 1, 1.0, 0, 0, 5.0, "synccfg", 3.0, 2.0, 1.0, "euler")[0]
images, audio, fps = M["HarmonyDecode"]().decode(model, lat)
assert "harmony" not in sys.modules, "the top-level harmony package was imported"
print("OK", tuple(images.shape))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([sys.executable, "-c", script], cwd=str(tmp_path), capture_output=True,
                         text=True, env=env, timeout=300)
    assert run.returncode == 0 and "OK" in run.stdout, run.stderr[-3000:]


# ------------------------------------------------- model management, previews (issue 12)


def test_sampler_uses_one_host_handle_per_model_and_loads_it_each_run(pipe, text, monkeypatch):
    from nodes.model_loader import managed

    handle = managed(pipe)
    loads = []
    monkeypatch.setattr(host.ManagedModel, "load", lambda self: loads.append(self))
    for _ in range(2):
        M["HarmonySyncCFGSampler"]().sample(pipe, text, **fast_sampler_args())
    assert loads == [handle, handle] and managed(pipe) is handle
    assert handle.patcher is None and not handle.offloaded  # no host here: plain placement
    assert handle.size == sum(t.numel() * t.element_size() for t in pipe.model.state_dict().values())


def test_preview_per_step_is_the_clean_estimate(pipe, text, monkeypatch):
    seen = []

    class PreviewProgress(host.Progress):
        wants_preview = True

        def set(self, value, total=None, preview=None):
            seen.append((value, total, preview))

    monkeypatch.setattr(host, "Progress", PreviewProgress)
    latent = M["HarmonySyncCFGSampler"]().sample(pipe, text, **fast_sampler_args(steps=2))[0]
    assert [(v, t) for v, t, _ in seen] == [(1, 2), (2, 2)]
    h, w = pipe.frame_size
    assert all(p.shape == (h, w, 3) and 0 <= p.min() and p.max() <= 1 for _, _, p in seen)
    # Euler's last step lands on sigma 0, where the state is the clean estimate itself:
    # the last preview is the first frame of the returned latent, decoded.
    with torch.no_grad():
        final = pipe.codecs.video.decode(latent.video[:, :, :1])[0, 0].clamp(0, 1).float()
    assert torch.allclose(seen[-1][2], final, atol=1e-5)
    assert not torch.allclose(seen[0][2], final, atol=1e-3)  # the first step's estimate is another picture


def test_a_failing_preview_decode_does_not_fail_the_run(pipe, text, monkeypatch):
    seen = []

    class PreviewProgress(host.Progress):
        wants_preview = True

        def set(self, value, total=None, preview=None):
            seen.append(preview)

    def broken(*a, **k):
        raise RuntimeError("decoder broke")

    monkeypatch.setattr(host, "Progress", PreviewProgress)
    monkeypatch.setattr(pipe.codecs.video, "decode", broken)
    latent = M["HarmonySyncCFGSampler"]().sample(pipe, text, **fast_sampler_args(steps=2))[0]
    assert seen == [None, None] and latent.job == "T2AV"


def test_preview_tuple_is_comfyui_latent_preview_format():
    frame = torch.full((24, 40, 3), 0.5)
    frame[0, 0] = torch.tensor([1.0, 0.0, 2.0])  # out of range values are clamped
    fmt, image, max_size = host.preview_tuple(frame)
    # max size = the frame's longer side: ComfyUI neither enlarges it nor shrinks it, and the
    # frontend's caption under the preview reads the output's size (40 x 24), not "512 x 512"
    assert fmt == "JPEG" and image.size == (40, 24) and image.mode == "RGB" and max_size == 40
    assert image.getpixel((5, 5)) == (128, 128, 128) and image.getpixel((0, 0)) == (255, 0, 255)
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        host.preview_tuple(torch.zeros(3, 24, 40))
    assert host.Progress(3).wants_preview is False  # no host, no previews


def test_preview_size_given_explicitly_only_shrinks(monkeypatch):
    import types

    cli = types.SimpleNamespace(args=types.SimpleNamespace(preview_size=32))
    monkeypatch.setattr(host, "_comfy", lambda name: cli if name == "comfy.cli_args" else None)
    frame = torch.zeros(24, 40, 3)
    monkeypatch.setattr(sys, "argv", ["main.py", "--cpu"])  # ComfyUI's default 512 is not ours to apply
    assert host.preview_tuple(frame)[2] == 40
    monkeypatch.setattr(sys, "argv", ["main.py", "--preview-size", "32"])
    assert host.preview_tuple(frame)[2] == 32
    monkeypatch.setattr(sys, "argv", ["main.py", "--preview-size=1024"])  # never enlarged
    cli.args.preview_size = 1024
    assert host.preview_tuple(frame)[2] == 40


def test_loader_info_and_block_swap_accounting():
    from nodes.model_loader import managed

    pipe, info = M["HarmonyModelLoader"]().load(BUNDLED, "auto", "block_swap", 1, "sdpa")
    model = pipe.model
    sd = model.state_dict()
    nbytes = lambda keys: sum(sd[k].numel() * sd[k].element_size() for k in keys)  # noqa: E731
    layer = {}
    for k in sd:
        m = re.match(r"^(video_model|audio_model)\.blocks\.(\d+)\.", k)
        if m:
            layer.setdefault(int(m.group(2)), []).append(k)
    streamed = [nbytes(layer[i]) for i in sorted(layer) if i >= 1]
    handle = managed(pipe)
    assert handle.offloaded and handle.patcher is None
    assert handle.resident_bytes == nbytes(sd) - sum(streamed)
    assert handle.working_bytes == 2 * max(streamed)
    params = sum(p.numel() for p in model.parameters())
    assert info.startswith("harmony_tiny.safetensors") and "offload block_swap" in info
    assert f"{params / 1e6:.2f}M" in info or f"{params / 1e6:.1f}M" in info
