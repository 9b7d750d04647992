"""Core ComfyUI nodes chained with the pack's nodes, in a real ComfyUI (prompts through its HTTP API).

Needs a ComfyUI source checkout (COMFYUI_DIR) whose requirements are installed in
COMFYUI_PYTHON (default: this Python), with a torch / torchvision / torchaudio set whose
versions belong together. Skipped, saying what is missing, only when no host is given;
with a host, a missing or broken torchaudio (core's audio nodes not importing) FAILS.

A ComfyUI server with only this pack gets the bundled sample media in its input folder
and runs, with the bundled tiny model, one API prompt per job:

* A2V:  core LoadAudio -> Harmony Audio Conditioning (driving audio);
* I2AV: core LoadImage -> Harmony Video Conditioning (first frame);
* V2A:  core LoadVideo -> GetVideoComponents (images, fps) -> Harmony Video Conditioning
  (driving video), and LoadVideo's VIDEO straight into the node's ``video`` socket;

each one decoded by Harmony Decode into core SaveAudio, PreviewAudio and
CreateVideo (images, fps, audio) -> SaveVideo. The files core wrote are read back
(ffmpeg, through ``harmony.media``) and checked: sample rate, sample count and frame
count follow from the clip length and the model's rates, and what the core loaders
read reached the model (the decoded picture / sound follows the input media).
"""
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACK = "ComfyUI-Harmony"
SAMPLES = os.path.join(ROOT, "workflows", "samples")
AUDIO_FILE, IMAGE_FILE, VIDEO_FILE = ("harmony_driving_audio.wav", "harmony_first_frame.png",
                                      "harmony_driving_video.mp4")
from realhost import COMFYUI_PYTHON, host_problem  # noqa: E402  (tests/e2e/realhost.py)
from realhost import get_json as _get, pack_home, running_comfyui  # noqa: E402
RUN_TIMEOUT_S = float(os.environ.get("HARMONY_E2E_RUN_TIMEOUT", "600"))
SECONDS, STEPS = 2.0, 4
CORE_NODES = ("LoadAudio", "SaveAudio", "PreviewAudio", "LoadImage", "LoadVideo", "GetVideoComponents",
              "CreateVideo", "SaveVideo")


def _why_skip():
    problem = host_problem()
    if problem:
        return problem
    return None


pytestmark = pytest.mark.skipif(_why_skip() is not None, reason=_why_skip() or "")


def _post(url, data):
    req = urllib.request.Request(url, json.dumps(data).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read().decode() or "null")
    except urllib.error.HTTPError as e:  # a refused prompt: ComfyUI says which node and why
        pytest.fail(f"POST {url} -> {e.code}: {e.read().decode()[:3000]}")


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """A ComfyUI server with only this pack and the sample media in its input folder."""
    base = tmp_path_factory.mktemp("chains")
    pack_home(base, ROOT, PACK)
    for name in (AUDIO_FILE, IMAGE_FILE, VIDEO_FILE):
        shutil.copy(os.path.join(SAMPLES, name), base / "input" / name)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    with running_comfyui(base, env=env, start_timeout=300) as (url, log_path):
        yield {"url": url, "base": base, "log": log_path, "info": _get(url + "/object_info", timeout=60)}


@pytest.fixture(scope="module")
def model():
    """The bundled tiny model's rates and frame size, read by the standalone package (no host)."""
    from harmony.pipeline import HarmonyPipeline

    pipe = HarmonyPipeline.from_pretrained(log=lambda msg: None)
    return {"fps": pipe.fps, "sample_rate": pipe.sample_rate, "frame_size": tuple(pipe.frame_size)}


# ------------------------------------------------------------------ the host's own audio stack


def test_core_audio_nodes_import_with_a_matching_torchaudio(host):
    """Core's audio nodes are there (their module imports torchaudio at the top), the three
    libraries are one release set, and the pack resamples with torchaudio in that Python."""
    missing = [n for n in CORE_NODES if n not in host["info"]]
    log = host["log"].read_text()
    assert not missing, (f"core nodes {missing} are not registered in this ComfyUI: core's audio nodes need "
                         f"a torchaudio built for this torch (install torch / torchvision / torchaudio of one "
                         f"release).\n{log[-3000:]}")
    assert "nodes_audio.py" not in log, log[-3000:]  # 0.3.64 names a comfy_extras module that failed
    code = ("import json, sys; sys.path.insert(0, sys.argv[1])\n"
            "import torch, torchvision, torchaudio\n"
            "from harmony import media\n"
            "print(json.dumps([torch.__version__, torchvision.__version__, torchaudio.__version__,"
            " media.resample_backend(44100, 16000)]))")
    run = subprocess.run([COMFYUI_PYTHON, "-c", code, ROOT], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"torch / torchvision / torchaudio do not import together:\n{run.stderr[-3000:]}"
    torch_v, vision_v, audio_v, backend = json.loads(run.stdout.strip().splitlines()[-1])
    release = lambda v: tuple(int(x) for x in v.split("+")[0].split(".")[:2])  # noqa: E731
    assert release(audio_v) == release(torch_v), (torch_v, audio_v)
    assert release(vision_v) == (0, release(torch_v)[1] + 15), (torch_v, vision_v)  # 2.9 <-> 0.24
    assert backend == "torchaudio"


# ------------------------------------------------------------------ prompts


def _inputs(host, node_type, **given):
    """All of a node's required widget inputs at their defaults, then ``given`` on top."""
    spec = host["info"][node_type]["input"]
    out = {}
    for name, decl in spec.get("required", {}).items():
        kind, options = decl[0], (decl[1] if len(decl) > 1 else {})
        if "default" in options:
            out[name] = options["default"]
        elif isinstance(kind, list) and kind:
            out[name] = kind[0]
    out.update(given)
    return {"class_type": node_type, "inputs": out}


def _harmony_start(host, prompt="", caption="", transcript=""):
    """Loader ("1") and text conditioning ("2") of the bundled tiny model."""
    return {
        "1": _inputs(host, "HarmonyModelLoader"),
        "2": _inputs(host, "HarmonyTextConditioning", model=["1", 0], prompt=prompt, audio_caption=caption,
                     transcript=transcript),
    }


def _harmony_finish(host, graph, conditioning, prefix):
    """Sampler ("s") and decode ("d") into SaveAudio ("sa"), PreviewAudio ("pa"),
    CreateVideo ("cv") -> SaveVideo ("sv")."""
    graph.update({
        "s": _inputs(host, "HarmonySyncCFGSampler", model=["1", 0], conditioning=conditioning, seed=7,
                     steps=STEPS, seconds=SECONDS),
        "d": _inputs(host, "HarmonyDecode", model=["1", 0], av_latent=["s", 0]),
        "sa": _inputs(host, "SaveAudio", audio=["d", 1], filename_prefix=f"chains/{prefix}"),
        "pa": _inputs(host, "PreviewAudio", audio=["d", 1]),
        "cv": _inputs(host, "CreateVideo", images=["d", 0], fps=["d", 2], audio=["d", 1]),
        "sv": _inputs(host, "SaveVideo", video=["cv", 0], filename_prefix=f"chains/{prefix}",
                      format="auto", codec="auto"),
    })
    return graph


def _run(host, graph):
    answer = _post(host["url"] + "/prompt", {"prompt": graph, "client_id": "harmony-core-chains"})
    prompt_id = answer["prompt_id"]
    deadline = time.time() + RUN_TIMEOUT_S
    while time.time() < deadline:
        entry = _get(host["url"] + f"/history/{prompt_id}").get(prompt_id)
        status = (entry or {}).get("status", {})
        if status.get("completed") or status.get("status_str") == "error":
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"the run did not finish in {RUN_TIMEOUT_S} s:\n{host['log'].read_text()[-3000:]}")
    if status.get("status_str") != "success":
        errors = [m for kind, m in status.get("messages", []) if kind == "execution_error"]
        detail = (f"{errors[0]['node_type']} failed: {errors[0]['exception_type']}: "
                  f"{errors[0]['exception_message']}\n" + "".join(errors[0].get("traceback", [])[-4:])
                  if errors else json.dumps(status)[-2000:])
        pytest.fail(detail)
    return entry["outputs"]


def _file(host, item):
    path = host["base"] / item.get("type", "output") / item.get("subfolder", "") / item["filename"]
    assert path.is_file(), f"{path} was not written"
    return path


def _check_outputs(host, outputs, model):
    """The files core wrote: -> (flac wave [C, T], mp4 frames [F, H, W, 3] uint8)."""
    from harmony import media

    sr, fps = model["sample_rate"], model["fps"]
    n_samples, n_frames = int(round(SECONDS * sr)), int(round(SECONDS * fps))
    waves = {}
    for node, kind in (("sa", "output"), ("pa", "temp")):  # SaveAudio: output/, PreviewAudio: temp/
        items = outputs[node]["audio"]
        assert len(items) == 1 and items[0]["type"] == kind, items
        path = _file(host, items[0])
        assert path.suffix == ".flac"
        info = media.probe(str(path))
        assert info["audio"]["sample_rate"] == sr, info
        wave, read_sr = media.read_audio(str(path))
        assert read_sr == sr and wave.shape[-1] == n_samples, (read_sr, wave.shape)
        waves[node] = np.asarray(wave)
    assert np.array_equal(waves["sa"], waves["pa"])  # the same AUDIO, saved and previewed

    items = outputs["sv"]["images"]
    assert len(items) == 1 and items[0]["type"] == "output", items
    path = _file(host, items[0])
    info = media.probe(str(path))
    assert info["video"] is not None and info["audio"] is not None, f"{path}: {info}"
    assert abs(info["video"]["fps"] - fps) < 1e-3, info
    assert info["audio"]["sample_rate"] == sr, info
    frames, read_fps, mp4_wave, mp4_sr = media.read_video(str(path))
    h, w = model["frame_size"]
    assert frames.shape == (n_frames, h, w, 3), frames.shape
    assert mp4_sr == sr and abs(np.asarray(mp4_wave).shape[-1] - n_samples) <= sr // 20, np.shape(mp4_wave)
    return waves["sa"], np.asarray(frames)


def _log_spectrogram(wave, n=512, hop=256):
    """|STFT| in log scale, [frames, bins], of the mono mix of ``wave`` [C, T] or [T]."""
    mono = np.asarray(wave, np.float64).reshape(-1, np.shape(wave)[-1]).mean(0)
    windows = np.lib.stride_tricks.sliding_window_view(mono, n)[::hop] * np.hanning(n)
    return np.log(np.abs(np.fft.rfft(windows, axis=1)) + 1e-4)


def _corr(a, b):
    n = min(len(a), len(b))
    a, b = np.asarray(a[:n], np.float64).ravel(), np.asarray(b[:n], np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (np.sqrt((a * a).sum() * (b * b).sum()) + 1e-12))


# ------------------------------------------------------------------ the chains


def test_load_audio_drives_a2v_into_core_audio_and_video_savers(host, model):
    from harmony import media

    graph = _harmony_start(host, "in the middle, a small face with orange hair talks: three syllables.",
                           "a medium voice says three syllables.", "la mu mu")
    graph["la"] = _inputs(host, "LoadAudio", audio=AUDIO_FILE)
    graph["ac"] = _inputs(host, "HarmonyAudioConditioning", conditioning=["2", 0], audio=["la", 0],
                          use_as="driving audio (A2V)")
    outputs = _run(host, _harmony_finish(host, graph, ["ac", 0], "a2v"))
    wave, _ = _check_outputs(host, outputs, model)

    # the decoded sound is the driving clip LoadAudio read (through the model's audio codec): their
    # spectrograms match in step; the check can fail, the clip 0.16 s later or reversed matches less
    src, src_sr = media.read_audio(os.path.join(SAMPLES, AUDIO_FILE))
    assert src_sr == model["sample_rate"], "the sample clip is expected at the model's sample rate"
    ours, theirs = _log_spectrogram(wave), _log_spectrogram(np.asarray(src)[..., : wave.shape[-1]])
    aligned = _corr(ours, theirs)
    assert aligned > 0.85, aligned
    assert _corr(ours[10:], theirs[:-10]) < aligned - 0.3, (_corr(ours[10:], theirs[:-10]), aligned)
    assert _corr(ours, theirs[::-1]) < aligned - 0.1, (_corr(ours, theirs[::-1]), aligned)


def test_load_image_is_the_i2av_first_frame(host, model):
    from PIL import Image

    from harmony import media

    graph = _harmony_start(host, "a small red ball bounces twice on the left. plain blue background.")
    graph["li"] = _inputs(host, "LoadImage", image=IMAGE_FILE)
    graph["vc"] = _inputs(host, "HarmonyVideoConditioning", conditioning=["2", 0], use_as="first frame (I2AV)",
                          fit="crop", images=["li", 0])
    outputs = _run(host, _harmony_finish(host, graph, ["vc", 0], "i2av"))
    _, frames = _check_outputs(host, outputs, model)

    # frame 0 of the saved clip is the image LoadImage read (through the model's video codec and
    # H.264); the check can fail: the image mirrored, or another sample picture, matches less
    h, w = model["frame_size"]
    image = Image.open(os.path.join(SAMPLES, IMAGE_FILE)).convert("RGB")
    assert image.size == (w, h), "the sample image is expected at the model's frame size"
    image = np.asarray(image, np.float64) / 255.0
    other = media.read_video(os.path.join(SAMPLES, VIDEO_FILE))[0][0]
    first = _corr(frames[0], image)
    assert first > 0.85, first
    assert _corr(frames[0], image[:, ::-1]) < first - 0.15, (_corr(frames[0], image[:, ::-1]), first)
    assert _corr(frames[0], other) < 0.5, _corr(frames[0], other)


@pytest.mark.parametrize("via", ["GetVideoComponents", "VIDEO socket"])
def test_load_video_drives_v2a(host, model, via):
    from PIL import Image

    from harmony import media

    graph = _harmony_start(host, "in the middle, a small red block hits the wall three times.",
                           "three high knocks over a steady hum.")
    graph["lv"] = _inputs(host, "LoadVideo", file=VIDEO_FILE)
    if via == "GetVideoComponents":
        graph["gc"] = _inputs(host, "GetVideoComponents", video=["lv", 0])
        media_in = {"images": ["gc", 0], "fps": ["gc", 2]}
    else:
        media_in = {"video": ["lv", 0]}
    graph["vc"] = _inputs(host, "HarmonyVideoConditioning", conditioning=["2", 0], use_as="driving video (V2A)",
                          fit="crop", **media_in)
    outputs = _run(host, _harmony_finish(host, graph, ["vc", 0], "v2a"))
    _, frames = _check_outputs(host, outputs, model)

    # the decoded picture is the driving video LoadVideo read (through the model's video codec and
    # H.264): the frames match, and so does their motion (each frame minus the clip's mean frame),
    # in step; the check can fail: another sample picture, or the motion 0.25 s later, matches less
    src, src_fps, _, _ = media.read_video(os.path.join(SAMPLES, VIDEO_FILE))
    assert abs(src_fps - model["fps"]) < 1e-3 and src.shape[1:3] == frames.shape[1:3], \
        "the sample video is expected at the model's frame rate and size"
    src = np.asarray(src[: len(frames)], np.float64)
    assert len(src) == len(frames)
    image = np.asarray(Image.open(os.path.join(SAMPLES, IMAGE_FILE)).convert("RGB"), np.float64) / 255.0
    whole = _corr(frames, src)
    assert whole > 0.8, whole
    assert _corr(frames, np.broadcast_to(image, frames.shape)) < 0.5
    ours, theirs = frames - frames.mean(0), src - src.mean(0)
    shift = int(round(0.25 * model["fps"]))
    motion, later = _corr(ours, theirs), _corr(ours[shift:], theirs[:-shift])
    assert motion > later + 0.1, (motion, later)
