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


@pytest.mark.slow
def test_generate_writes_mp4_with_video_and_audio(tmp_path):
    out = tmp_path / "clip.mp4"
    r = run_cli("generate", "--steps", "3", "--seconds", "1.5", "--seed", "3", "-o", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    frames, fps, wave, sr = media.read_video(str(out))
    assert frames.shape[1:] == (64, 64, 3) and abs(fps - 16) < 0.01
    assert abs(frames.shape[0] - 24) <= 1
    assert wave is not None and sr == 16000 and abs(wave.shape[-1] - 24000) < 1600
    assert float(np.abs(wave).max()) > 0  # there is sound


@pytest.mark.slow
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
    assert r.stdout.count("2 channels mixed to mono") == 1
    frames, fps, wave, sr_out = media.read_video(str(out))
    assert wave is not None and abs(frames.shape[0] / fps - 1.2) < 0.1
    assert wave.shape[0] == 1  # the model card's mono output, though the driving file is stereo


@pytest.mark.slow
def test_generate_reports_bad_input_clearly(tmp_path):
    r = run_cli("generate", "--audio", str(tmp_path / "missing.wav"))
    assert r.returncode == 2 and "--audio" in r.stderr and "not found" in r.stderr
    bad = tmp_path / "model.ckpt"
    bad.write_bytes(b"\x80\x04not a safetensors file")
    r = run_cli("generate", "--model", str(bad), "-o", str(tmp_path / "x.mp4"))
    assert r.returncode != 0 and "safetensors" in r.stderr
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.slow
@pytest.mark.parametrize("job", ["T2AV", "V2A"])
def test_evaluate_command_prints_ceiling_floor_and_model_rows(job):
    r = run_cli("evaluate", "-n", "1", "--jobs", job, "--steps", "2", "--guidance", "synccfg",
                "--seconds", "1.5")
    assert r.returncode == 0, r.stderr[-2000:]
    for needle in ("real+codec", "audio shifted", "audio shuffled", f"{job} synccfg"):
        assert needle in r.stdout, r.stdout


# ----------------------------------------------------------------------------- help and messages

@pytest.mark.slow
def test_top_level_help_shows_one_example_per_job_and_every_command():
    r = run_cli("--help")
    assert r.returncode == 0, r.stderr
    for needle in ("T2AV", "I2AV", "A2V", "V2A", "generate --image", "generate --audio", "generate --video",
                   "bench", "train", "evaluate", "convert"):
        assert needle in r.stdout, needle
    assert "``" not in r.stdout  # plain text, not reST


def _parser_of(command, monkeypatch):
    """The argparse parser a subcommand builds (its parse_args intercepted before any work)."""
    from harmony import __main__ as cli_main
    from harmony import cli

    seen = []

    def grab(self, args=None, namespace=None):
        seen.append(self)
        raise SystemExit(0)

    monkeypatch.setattr(cli.Parser, "parse_args", grab)
    with pytest.raises(SystemExit):
        cli_main.COMMANDS[command]([])
    return seen[0]


@pytest.mark.parametrize("command", ["generate", "bench", "train", "evaluate", "convert", "encode-clips"])
def test_every_option_has_help_with_its_default(command, monkeypatch):
    parser = _parser_of(command, monkeypatch)
    text = parser.format_help()
    options = [a for a in parser._actions if a.dest != "help"]
    assert options
    for action in options:
        assert action.help and action.help.strip(), f"{command} {action.option_strings or action.dest}: no help"
        if action.option_strings and action.default not in (None, False, ""):
            assert f"(default: {action.default})" in " ".join(text.split()), (command, action.dest)


@pytest.mark.slow
def test_out_of_range_and_malformed_options_give_one_error_line(tmp_path):
    for args, needle in ((["--seconds", "0.5"], "seconds"), (["--seconds", "abc"], "--seconds"),
                         (["--fit", "zoom"], "--fit")):
        r = run_cli("generate", *args, "-o", str(tmp_path / "x.mp4"))
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert r.returncode == 2 and len(lines) == 1 and needle in lines[0], r.stderr
        assert "Traceback" not in r.stderr
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.slow
def test_i2av_crops_a_wide_image_and_names_unknown_words_once(tmp_path):
    from PIL import Image

    wide = np.zeros((48, 96, 3), np.uint8)
    wide[:, 24:72] = 255  # a white centre square on black sides,
    wide[::6, 24:72] = 0  # with thin black lines the tiny video codec blurs away
    Image.fromarray(wide).save(tmp_path / "wide.png")
    out = tmp_path / "i2av.mp4"
    r = run_cli("generate", "a small red dragon bounces twice. plain blue background.", "--image",
                str(tmp_path / "wide.png"), "--steps", "1", "--seconds", "1", "-o", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("centre-cropped") == 1, r.stdout
    assert "--image" in r.stdout or "first frame: 96x48 centre-cropped to 48x48" in r.stdout
    unknown = [line for line in r.stdout.splitlines() if "not in this model's vocabulary" in line]
    assert len(unknown) == 1 and "'dragon'" in unknown[0] and "'red'" not in unknown[0]
    # frame 0 is the cropped image itself (its detail put back), unless the plain decode is asked for
    plain = tmp_path / "plain.mp4"
    r = run_cli("generate", "--image", str(tmp_path / "wide.png"), "--steps", "1", "--seconds", "1",
                "--plain-decode", "-o", str(plain))
    assert r.returncode == 0, r.stderr[-2000:]
    want = media.fit_frames(wide[None].astype(np.float32) / 255, 64, 64, "crop", "image")[0]
    errs = [np.abs(media.read_video(str(p))[0][0] - want).mean() for p in (out, plain)]
    assert errs[0] < 0.05 < errs[1], errs


@pytest.mark.slow
def test_v2a_conforms_the_driving_video_once(tmp_path):
    frames = np.zeros((29, 48, 96, 3), np.float32)  # 1.2 s at 24 fps, 2:1
    frames[:, :, 24:72] = np.linspace(0, 1, 29, dtype=np.float32)[:, None, None, None]
    src = tmp_path / "drive.mp4"
    media.write_mp4(str(src), frames, 24)
    out = tmp_path / "v2a.mp4"
    r = run_cli("generate", "--video", str(src), "--steps", "1", "-o", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "V2A" in r.stdout
    assert r.stdout.count("from 24 fps to 16 fps") == 1, r.stdout
    assert r.stdout.count("96x48 centre-cropped to 48x48") == 1, r.stdout
    got, fps, wave, _ = media.read_video(str(out))
    assert got.shape[1:] == (64, 64, 3) and abs(fps - 16) < 0.01 and wave is not None
    assert got[:, :, :4].mean() > 0.2  # the bright centre fills the frame: no black sides kept
