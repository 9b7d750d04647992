"""The Save AV sync badge: verdict from |offset| in frames, and "uncertain" when the
measurement's confidence is below the calibrated threshold (issue 10 item 5)."""
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from nodes.save_av import SYNC_MIN_CONFIDENCE, measure_offset, sync_level

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FPS = 16.0
HIGH = SYNC_MIN_CONFIDENCE + 0.2


@pytest.mark.parametrize("offset_s, confidence, level", [
    (0.0, HIGH, "good"),
    (1 / FPS, HIGH, "good"),          # exactly one frame late
    (-1 / FPS, HIGH, "good"),
    (2 / FPS, HIGH, "fair"),
    (-3 / FPS, HIGH, "fair"),
    (4 / FPS, HIGH, "off"),
    (-0.375, HIGH, "off"),            # the red badge of issue 10 (-375 ms at 16 fps)
    (-0.375, SYNC_MIN_CONFIDENCE - 0.01, "uncertain"),   # low confidence: no verdict
    (0.0, SYNC_MIN_CONFIDENCE - 0.01, "uncertain"),      # not green either
    (0.0, None, "uncertain"),
    (None, None, "none"),
    (float("nan"), HIGH, "none"),
])
def test_sync_level(offset_s, confidence, level):
    assert sync_level(offset_s, confidence, FPS) == level


def _pulses(times, n_frames, fps, sr, lag_s=0.0):
    """A white flash on each event frame and a click at each time + lag."""
    frames = np.zeros((n_frames, 64, 64, 3), np.float32)
    wave = np.zeros(int(n_frames / fps * sr), np.float32)
    for t in times:
        k = int(round(t * fps))
        frames[k, 16:48, 16:48] = 1.0
        s = int(round((t + lag_s) * sr))
        wave[s:s + 400] = 0.8 * np.sin(np.arange(400) * 2 * np.pi * 880 / sr)
    return frames, wave


def test_measured_badge_green_for_synced_uncertain_for_unrelated():
    times = [0.5, 1.1, 1.9, 2.5]
    frames, wave = _pulses(times, 48, FPS, 16000)
    off, conf = measure_offset(frames, FPS, wave[None], 16000)
    assert sync_level(off, conf, FPS) == "good"
    late_frames, late_wave = _pulses(times, 48, FPS, 16000, lag_s=5 / FPS)
    off, conf = measure_offset(late_frames, FPS, late_wave[None], 16000)
    assert round(off * FPS) == 5 and sync_level(off, conf, FPS) == "off"
    noise = np.random.default_rng(0).normal(0, 0.1, wave.shape).astype(np.float32)  # no events at all
    off, conf = measure_offset(frames, FPS, noise[None], 16000)
    assert sync_level(off, conf, FPS) == "uncertain"


def _describe_offset_js():
    src = open(os.path.join(ROOT, "js", "harmony_av.js")).read()
    m = re.search(r"export function describeOffset\(.*?\n}\n", src, re.S)
    assert m, "describeOffset not found in js/harmony_av.js"
    return m.group(0).replace("export ", "")


@pytest.mark.skipif(shutil.which("node") is None, reason="node.js not installed")
def test_js_badge_shows_uncertain_instead_of_a_verdict():
    cases = [(-0.375, 0.2, 16, "uncertain", 0.58), (-0.375, 0.9, 16, "off", 0.58),
             (0.0625, 0.9, 16, "good", 0.58), (0.0, 0.3, 16, None, 0.58), (None, None, 16, None, 0.58)]
    script = _describe_offset_js() + "\nconst cases = " + json.dumps(cases) + ";\n" + \
        "console.log(JSON.stringify(cases.map(c => describeOffset(c[0], c[1], c[2], c[3], c[4]))));\n"
    out = json.loads(subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True).stdout)
    assert [o["level"] for o in out] == ["uncertain", "off", "good", "uncertain", "none"]
    assert "uncertain" in out[0]["text"] and "-375 ms" in out[0]["text"] and "0.58" in out[0]["text"]
    assert "audio early" in out[1]["text"]
