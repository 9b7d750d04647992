"""What every real-host test shares: where ComfyUI is, why a test cannot run, and small HTTP helpers.

``COMFYUI_DIR``: a ComfyUI source checkout (``.ci/e2e`` extracts the 0.3.64 snapshot);
``COMFYUI_PYTHON``: the interpreter that runs it (default: this one).
"""
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
COMFYUI_PYTHON = os.environ.get("COMFYUI_PYTHON", sys.executable)
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def host_problem():
    """Why the real-host tests cannot run here (a sentence), or None."""
    if not COMFYUI_DIR:
        return "COMFYUI_DIR is not set: point it at a ComfyUI source checkout to run the real-host tests"
    if not os.path.isfile(os.path.join(COMFYUI_DIR, "main.py")):
        return f"COMFYUI_DIR={COMFYUI_DIR!r} has no main.py (not a ComfyUI checkout)"
    if not (os.path.isfile(COMFYUI_PYTHON) or shutil.which(COMFYUI_PYTHON)):
        return f"COMFYUI_PYTHON={COMFYUI_PYTHON!r} does not exist"
    return None


def pack_home(base, pack_root, pack_name):
    """Make ``base`` a ComfyUI base directory whose custom_nodes folder holds only the pack (a
    symlink ``pack_name`` to ``pack_root``) and empty user / input / output / temp / models folders."""
    os.makedirs(os.path.join(base, "custom_nodes"))
    os.symlink(pack_root, os.path.join(base, "custom_nodes", pack_name))
    for d in ("user", "input", "output", "temp", "models"):
        os.makedirs(os.path.join(base, d))
    return base


def browser_problem():
    """Why the real-host tests that drive the frontend in Chromium cannot run here, or None."""
    problem = host_problem()
    if problem:
        return problem
    if not os.path.isfile(CHROMIUM):
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set CHROMIUM)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed (pip install playwright)"
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode())


@contextlib.contextmanager
def running_comfyui(base, extra_args=(), env=None, start_timeout=180):
    """Start ComfyUI (``--cpu``, base and user directories under ``base``, an in-memory database)
    on a free port, wait until it answers, yield ``(url, log_path)``, and stop it afterwards.
    A server that exits or does not answer in ``start_timeout`` s fails the test with its log."""
    import pytest

    port = free_port()
    log_path = base / "comfyui.log"
    log = open(log_path, "w")
    cmd = [COMFYUI_PYTHON, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
           "--disable-auto-launch", "--base-directory", str(base), "--user-directory", str(base / "user"),
           "--database-url", "sqlite:///:memory:", *extra_args]
    proc = subprocess.Popen(cmd, cwd=COMFYUI_DIR, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + start_timeout
        while True:
            if proc.poll() is not None:
                pytest.fail(f"ComfyUI exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                get_json(url + "/system_stats", timeout=2)
                break
            except OSError:
                if time.time() > deadline:
                    pytest.fail(f"ComfyUI did not answer in {start_timeout} s:\n{log_path.read_text()[-3000:]}")
                time.sleep(1)
        yield url, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
