"""The pack inside a real ComfyUI process, without the browser: model management and previews.

Needs a ComfyUI source checkout (COMFYUI_DIR) whose requirements are installed in
COMFYUI_PYTHON (default: this Python). Skipped, saying what is missing, otherwise.

A subprocess started with COMFYUI_PYTHON in COMFYUI_DIR imports ComfyUI's own
modules (``nodes``, ``comfy.model_management``, ``comfy.utils``, ``folder_paths``),
loads this pack with ComfyUI's ``nodes.load_custom_node`` from a custom_nodes folder,
puts a copy of the bundled model in a temporary ``diffusion_models`` folder, and runs
loader -> text conditioning -> sampler twice with a progress hook installed the way
ComfyUI's server installs it. It reports what the host saw; the test checks:

* the loader lists the file from ``diffusion_models`` and loads it by that name;
* the model is in ``model_management.current_loaded_models`` as a ModelPatcher of the
  pack's network after loading and after each run;
* the second run does not load its weights again (``ModelPatcher.load`` ran once,
  when the loader registered it), and the weights are the same tensors;
* ``unload_all_models()`` (what ``POST /free`` with unload_models does) removes it,
  and the next run registers it again;
* the progress hook gets steps 1..N of N, each with a ("JPEG", PIL image, max size)
  preview of the model's frame size, max size its longer side (sent unscaled);
* Cancel (``nodes.interrupt_processing()``, what ``POST /interrupt`` calls) pressed during
  step 2 of a 200-step run stops it with ComfyUI's InterruptProcessingException before
  step 3 ends. The time from the press to the stop is printed (run pytest with -s), not asserted.
"""
import json
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from realhost import COMFYUI_DIR, COMFYUI_PYTHON, host_problem  # noqa: E402  (tests/e2e/realhost.py)
STEPS = 3


def _why_skip():
    problem = host_problem()
    if problem:
        return problem
    return None


pytestmark = pytest.mark.skipif(_why_skip() is not None, reason=_why_skip() or "")

SCRIPT = r"""
import asyncio, json, os, sys, time
sys.argv = [sys.argv[0], "--cpu"]
import comfy.options
comfy.options.enable_args_parsing()
sys.path.insert(0, os.getcwd())
import torch
torch.set_num_threads(2)
import folder_paths
import nodes as comfy_nodes
import comfy.model_management as mm
import comfy.model_patcher as mp
import comfy.utils

custom_nodes, models = json.loads(os.environ["HARMONY_TEST_DIRS"])
folder_paths.add_model_folder_path("diffusion_models", models, is_default=True)
pack_dir = os.path.join(custom_nodes, "ComfyUI-Harmony")
assert asyncio.run(comfy_nodes.load_custom_node(pack_dir)), "load_custom_node failed"
M = comfy_nodes.NODE_CLASS_MAPPINGS

loads = []
_load = mp.ModelPatcher.load
def counting_load(self, *a, **k):
    loads.append(type(self.model).__name__)
    return _load(self, *a, **k)
mp.ModelPatcher.load = counting_load

hook_calls, hook_times = [], []
def hook(value, total, preview, prompt_id=None, node_id=None):
    hook_times.append(time.perf_counter())
    mm.throw_exception_if_processing_interrupted()   # as ComfyUI's server hook does
    hook_calls.append([value, total, None if preview is None else
                       [preview[0], type(preview[1]).__name__, list(preview[1].size), preview[2]]])
comfy.utils.set_progress_bar_global_hook(hook)

def registered(pipe):
    return [type(lm.model.model).__name__ for lm in mm.current_loaded_models
            if lm.model is not None and lm.model.model is pipe.model]

out = {"listed": M["HarmonyModelLoader"].INPUT_TYPES()["required"]["model_name"][0]}
pipe, info = M["HarmonyModelLoader"]().load("copy.safetensors", "auto", "auto", 4, "sdpa")
out["info"] = info
out["after_load"] = registered(pipe)
out["loads_after_loader"] = len(loads)
weights = [p for p in pipe.model.parameters()]
text = M["HarmonyTextConditioning"]().encode(pipe, "a red ball bounces", "two bounces", "")[0]
sampler = M["HarmonySyncCFGSampler"]()
args = (3, %(steps)d, 1.0, 0, 0, 5.0, "synccfg", 3.0, 2.0, 1.0, "euler")
runs = []
for run in range(2):
    hook_calls.clear()
    del hook_times[:]
    latent = sampler.sample(pipe, text, *args)[0]
    runs.append({"registered": registered(pipe), "loads": len(loads), "hook": list(hook_calls),
                 "step_s": (hook_times[-1] - hook_times[0]) / (len(hook_times) - 1),
                 "same_weights": all(a is b for a, b in zip(weights, pipe.model.parameters()))})
out["runs"] = runs
mm.unload_all_models()
out["after_unload"] = registered(pipe)
out["loaded_bytes_after_unload"] = pipe.model.model_loaded_weight_memory
sampler.sample(pipe, text, *args)
out["after_rerun"] = registered(pipe)
out["loads_after_rerun"] = len(loads)
out["frame_size"] = list(pipe.frame_size)

# Cancel: another thread does what POST /interrupt does (nodes.interrupt_processing) in the middle
# of the second step of a 200-step run; the run must stop with ComfyUI's exception within that step.
import threading
hook_calls.clear()
del hook_times[:]
asked = {}
def press_cancel():
    while len(hook_calls) < 1:
        time.sleep(0.005)
    time.sleep(0.05)
    asked["at"], asked["steps"] = time.perf_counter(), len(hook_calls)
    comfy_nodes.interrupt_processing()
presser = threading.Thread(target=press_cancel)
presser.start()
try:
    sampler.sample(pipe, text, 3, 200, 1.0, 0, 0, 5.0, "synccfg", 3.0, 2.0, 1.0, "euler")
    out["cancel"] = "not stopped"
except mm.InterruptProcessingException:
    out["cancel"] = {"latency_s": time.perf_counter() - asked["at"], "steps_before": asked["steps"],
                     "steps_done": len(hook_calls), "step_s": runs[-1]["step_s"]}
presser.join()
print("RESULT " + json.dumps(out))
""" % {"steps": STEPS}


@pytest.fixture(scope="module")
def host_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("host")
    custom_nodes, models = base / "custom_nodes", base / "diffusion_models"
    custom_nodes.mkdir()
    models.mkdir()
    os.symlink(ROOT, custom_nodes / "ComfyUI-Harmony")
    bundled = os.path.join(ROOT, "harmony", "assets", "harmony_tiny")
    shutil.copy(bundled + ".safetensors", models / "copy.safetensors")
    shutil.copy(bundled + ".text.safetensors", models / "copy.text.safetensors")
    env = dict(os.environ, HARMONY_TEST_DIRS=json.dumps([str(custom_nodes), str(models)]))
    env.pop("PYTHONPATH", None)
    run = subprocess.run([COMFYUI_PYTHON, "-c", SCRIPT], cwd=COMFYUI_DIR, env=env,
                         capture_output=True, text=True, timeout=900)
    lines = [l for l in run.stdout.splitlines() if l.startswith("RESULT ")]
    assert run.returncode == 0 and lines, (run.stdout[-3000:], run.stderr[-5000:])
    return json.loads(lines[-1][len("RESULT "):])


def test_loader_lists_and_loads_diffusion_models(host_run):
    assert "copy.safetensors" in host_run["listed"]
    assert "copy.text.safetensors" not in host_run["listed"]
    assert host_run["info"].startswith("copy.safetensors") and "params" in host_run["info"]


def test_model_is_registered_and_not_reloaded(host_run):
    assert host_run["after_load"] == ["HarmonyModel"]
    assert host_run["loads_after_loader"] == 1
    for run in host_run["runs"]:
        assert run["registered"] == ["HarmonyModel"]  # listed once, not once per run
        assert run["loads"] == 1  # the runs did not load the weights again
        assert run["same_weights"]


def test_unload_all_models_removes_it_and_the_next_run_loads_it(host_run):
    assert host_run["after_unload"] == []
    assert host_run["loaded_bytes_after_unload"] == 0
    assert host_run["after_rerun"] == ["HarmonyModel"]
    assert host_run["loads_after_rerun"] == 2


def test_progress_per_step_with_a_preview_frame(host_run):
    h, w = host_run["frame_size"]
    for run in host_run["runs"]:
        assert [c[:2] for c in run["hook"]] == [[i, STEPS] for i in range(1, STEPS + 1)]
        for _, _, preview in run["hook"]:
            assert preview is not None
            fmt, kind, size, max_size = preview
            # max size = the frame's longer side: the server sends it as is, so the frontend's
            # caption under the preview reads the output size, not "512 x 512"
            assert fmt == "JPEG" and kind == "Image" and size == [w, h] and max_size == max(w, h)


def test_cancel_stops_the_run_within_the_step(host_run):
    cancel = host_run["cancel"]
    assert cancel != "not stopped"
    assert cancel["steps_done"] <= cancel["steps_before"] + 1 < 200
    print(f"\ninterrupt -> stopped run: {cancel['latency_s'] * 1000:.0f} ms "
          f"(pressed after step {cancel['steps_before']}, stopped after step {cancel['steps_done']}; "
          f"one step of the 3-step run took {cancel['step_s'] * 1000:.0f} ms)")
