"""What every real-host test shares: where ComfyUI is, why a test cannot run, and small HTTP helpers.

``COMFYUI_DIR``: a ComfyUI source checkout (``.ci/e2e`` extracts the 0.3.64 snapshot);
``COMFYUI_PYTHON``: the interpreter that runs it (default: this one).
"""
import json
import os
import shutil
import socket
import sys
import urllib.request

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
COMFYUI_PYTHON = os.environ.get("COMFYUI_PYTHON", sys.executable)


def host_problem():
    """Why the real-host tests cannot run here (a sentence), or None."""
    if not COMFYUI_DIR:
        return "COMFYUI_DIR is not set: point it at a ComfyUI source checkout to run the real-host tests"
    if not os.path.isfile(os.path.join(COMFYUI_DIR, "main.py")):
        return f"COMFYUI_DIR={COMFYUI_DIR!r} has no main.py (not a ComfyUI checkout)"
    if not (os.path.isfile(COMFYUI_PYTHON) or shutil.which(COMFYUI_PYTHON)):
        return f"COMFYUI_PYTHON={COMFYUI_PYTHON!r} does not exist"
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode())
