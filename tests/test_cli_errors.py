"""One clean line per CLI error (issue 21, item 7).

- ``python -m harmony generate``: an error raised after sampling has started ends the progress
  bar's line first; stderr then holds the bar and exactly one error line, and no bar is redrawn
  after it (tqdm redraws a bar that is still open when it is garbage-collected at exit).
- ``python -m nodes.core_inputs mmaudio-vae``: a wrong file is one line naming the argument, the
  file, what was expected and what to do; exit code 2; nothing written.

Each case runs as a subprocess, as a user runs it, so the exit-time redraw is seen too.
"""
import os
import subprocess
import sys

import pytest

import realfiles

pytestmark = pytest.mark.slow  # every test here runs a subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# generate, with the sampler replaced by one that reports a first step and then fails
FAILING_SAMPLER = """
import sys
from harmony import pipeline

def sample(self, cond, *a, callback=None, steps=3, **k):
    callback(1, steps)
    raise {exc}

pipeline.HarmonyPipeline.sample = sample
from harmony.__main__ import main
main(sys.argv[1:])
"""

# a command whose own progress bar (another module's, never closed there) is open when it fails
OPEN_BAR = """
import sys
from tqdm import tqdm
import harmony.__main__ as cli

def bench(argv):
    bar = tqdm(total=5, desc="benchmarking")
    bar.update(2)
    raise ValueError("bad bench input")

cli.COMMANDS["bench"] = bench
cli.main(sys.argv[1:])
"""


def run_python(*args, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("HARMONY_DEBUG", None)
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=env)


def assert_bar_then_one_error_line(stderr: str, bar: str, error_start: str):
    """stderr: the bar (carriage-return redraws on its own line(s)), then one error line, then nothing."""
    assert stderr.endswith("\n"), repr(stderr[-400:])
    lines = stderr[:-1].split("\n")
    last = lines[-1]
    assert last.startswith(error_start), repr(stderr[-400:])  # not on the bar's line, not followed by a bar
    assert "\r" not in last and bar not in last, repr(last)
    assert bar in "\n".join(lines[:-1]), repr(stderr)  # the bar was shown, before the error
    assert sum("error:" in line or "interrupted" in line for line in lines) == 1, repr(stderr)


@pytest.mark.parametrize("exc, code, start", [
    ("ValueError('the sampler refused this input')", 2, "python -m harmony generate: error: the sampler refused"),
    ("RuntimeError('CUDA error: an illegal memory access')", 1,
     "python -m harmony generate: error: RuntimeError: CUDA error"),
    ("KeyboardInterrupt()", 130, "harmony: interrupted"),
])
def test_generate_error_after_sampling_starts_is_one_line_below_the_bar(tmp_path, exc, code, start):
    out = tmp_path / "clip.mp4"
    r = run_python("-c", FAILING_SAMPLER.format(exc=exc), "generate", "--steps", "3", "--seconds", "1.5",
                   "-o", str(out))
    assert r.returncode == code, r.stderr[-2000:]
    assert_bar_then_one_error_line(r.stderr, "sampling", start)
    assert "Traceback" not in r.stderr
    assert not out.exists()


def test_generate_debug_traceback_comes_after_the_closed_bar(tmp_path):
    r = run_python("-c", FAILING_SAMPLER.format(exc="RuntimeError('boom in step 2')"), "generate", "--debug",
                   "--steps", "3", "--seconds", "1.5", "-o", str(tmp_path / "clip.mp4"))
    assert r.returncode == 1
    head, sep, tail = r.stderr.partition("Traceback (most recent call last):")
    assert sep and head.endswith("\n") and "sampling" in head, repr(r.stderr[:400])
    assert "sampling" not in tail and tail.rstrip().endswith("RuntimeError: boom in step 2")


def test_any_open_progress_bar_is_closed_before_the_error_line():
    """A bar left open by the failing command itself (e.g. in a module that never closes it)."""
    r = run_python("-c", OPEN_BAR, "bench")
    assert r.returncode == 2, r.stderr
    assert_bar_then_one_error_line(r.stderr, "benchmarking", "python -m harmony bench: error: bad bench input")
    assert "2/5" in r.stderr


# ----------------------------------------------------------------------------- the MMAudio converter


@pytest.fixture(scope="module")
def mm(tmp_path_factory):
    """MMAudio's two upstream files (tiny, random), a safetensors model file, and wrong files."""
    root = tmp_path_factory.mktemp("ckpts")
    paths = realfiles.write_ovi_ckpts(root / "ckpts")
    (root / "notes.txt").write_text("download v1-16.pth and best_netG.pt\n")
    (root / "notes.pth").write_text("not a checkpoint\n")
    return {"vae": paths["audio_vae"], "vocoder": paths["vocoder"], "model": paths["model"],
            "text": str(root / "notes.txt"), "text_pth": str(root / "notes.pth"),
            "missing": str(root / "missing" / "v1-16.pth")}


def convert(*args):
    return run_python("-m", "nodes.core_inputs", "mmaudio-vae", *args)


@pytest.mark.parametrize("vae, vocoder, needles", [
    ("text", "vocoder", ["1st argument (the MMAudio VAE)", "not a safetensors file", "download it again"]),
    ("missing", "vocoder", ["1st argument (the MMAudio VAE)", "file not found", "check the path"]),
    ("model", "vocoder", ["1st argument (the MMAudio VAE)", "holds no MMAudio VAE weights", "audio_model."]),
    ("vae", "text_pth", ["2nd argument (the vocoder)", "not a PyTorch checkpoint of plain tensors", "download it again"]),
    ("vae", "model", ["2nd argument (the vocoder)", "holds no MMAudio vocoder weights"]),
    ("vocoder", "vae", ["1st argument (the MMAudio VAE)", "looks like MMAudio's ext_weights/best_netG.pt",
                        "swap the first two arguments"]),
])
def test_converter_wrong_file_is_one_line_exit_2_and_writes_nothing(tmp_path, mm, vae, vocoder, needles):
    out = tmp_path / "new" / "mmaudio_vae_16k.safetensors"  # its folder is not made either
    r = convert(mm[vae], mm[vocoder], str(out))
    assert r.returncode == 2, r.stderr
    assert r.stdout == "" and r.stderr.endswith("\n") and r.stderr.count("\n") == 1, repr(r.stderr)
    line = r.stderr.strip()
    assert line.startswith("python -m nodes.core_inputs mmaudio-vae: error: "), line
    bad = mm[vae] if "1st" in needles[0] else mm[vocoder]
    expected = "v1-16.pth" if "1st" in needles[0] else "best_netG.pt"
    for needle in (*needles, bad, f"expected MMAudio's ext_weights/{expected}", "Fix: "):
        assert needle in line, (needle, line)
    assert "Traceback" not in line
    assert not out.parent.exists()


def test_converter_bad_output_name_and_bad_input_leave_an_existing_file_alone(tmp_path, mm):
    r = convert(mm["vae"], mm["vocoder"], str(tmp_path / "mmaudio.pth"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "3rd argument (the output)" in r.stderr and ".safetensors" in r.stderr
    assert os.listdir(tmp_path) == []
    out = tmp_path / "mm.safetensors"
    out.write_bytes(b"an older file")
    r = convert(mm["text"], mm["vocoder"], str(out))
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert out.read_bytes() == b"an older file" and sorted(os.listdir(tmp_path)) == ["mm.safetensors"]


def test_converter_usage_is_one_line_and_success_prints_no_warning(tmp_path, mm):
    r = convert(mm["vae"], mm["vocoder"])
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "usage: python -m nodes.core_inputs" in r.stderr
    out = tmp_path / "vae" / "mmaudio_vae_16k.safetensors"
    r = convert(mm["vae"], mm["vocoder"], str(out))
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # not even runpy's "found in sys.modules" warning
    assert r.stdout.strip() == f"wrote {out}" and out.is_file()
