"""The README's main job (`python -m harmony generate`) and the evaluation command, end to end."""
import os
import subprocess
import sys

import numpy as np
import pytest

from harmony import media
from harmony.pipeline import DEFAULT_MODEL

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "harmony", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_bundled_default_model_is_shipped():
    assert os.path.isfile(DEFAULT_MODEL), "the bundled tiny model must be in the repository"
    assert os.path.getsize(DEFAULT_MODEL) < 20 * 2**20
    assert os.path.isfile(DEFAULT_MODEL.replace(".safetensors", ".text.safetensors"))


def test_generate_writes_mp4_with_video_and_audio(tmp_path):
    out = tmp_path / "clip.mp4"
    r = run_cli("generate", "--steps", "3", "--seconds", "1.5", "--seed", "3", "-o", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    frames, fps, wave, sr = media.read_video(str(out))
    assert frames.shape[1:] == (64, 64, 3) and abs(fps - 16) < 0.01
    assert abs(frames.shape[0] - 24) <= 1
    assert wave is not None and sr == 16000 and abs(wave.shape[-1] - 24000) < 1600
    assert float(np.abs(wave).max()) > 0  # there is sound


def test_generate_a2v_from_an_audio_file_at_another_rate(tmp_path):
    sr = 22050
    t = np.arange(int(1.2 * sr)) / sr
    tone = (0.3 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32)
    wav = tmp_path / "drive.wav"
    media.write_wav(str(wav), np.stack([tone, tone]), sr)
    out = tmp_path / "a2v.mp4"
    r = run_cli("generate", "a face says two syllables", "--audio", str(wav), "--steps", "2", "-o", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "A2V" in r.stdout
    frames, fps, wave, sr_out = media.read_video(str(out))
    assert wave is not None and abs(frames.shape[0] / fps - 1.2) < 0.1


def test_generate_reports_bad_input_clearly(tmp_path):
    r = run_cli("generate", "--audio", str(tmp_path / "missing.wav"))
    assert r.returncode == 2 and "--audio" in r.stderr and "not found" in r.stderr
    bad = tmp_path / "model.ckpt"
    bad.write_bytes(b"\x80\x04not a safetensors file")
    r = run_cli("generate", "--model", str(bad), "-o", str(tmp_path / "x.mp4"))
    assert r.returncode != 0 and "safetensors" in r.stderr
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.parametrize("job", ["T2AV", "V2A"])
def test_evaluate_command_prints_ceiling_floor_and_model_rows(job):
    r = run_cli("evaluate", "-n", "1", "--jobs", job, "--steps", "2", "--guidance", "synccfg",
                "--seconds", "1.5")
    assert r.returncode == 0, r.stderr[-2000:]
    for needle in ("real+codec", "audio shifted", "audio shuffled", f"{job} synccfg"):
        assert needle in r.stdout, r.stdout
