"""The real-scale stack (harmony/stack.py) on tiny random files in the real layouts and formats:
Ovi's ckpts folder (Ovi/model.safetensors + video.json/audio.json, Wan2.2-TI2V-5B/{Wan2.2_VAE.pth,
models_t5_umt5-xxl-enc-bf16.pth, google/umt5-xxl}, MMAudio/ext_weights/{v1-16.pth, best_netG.pt})."""
import argparse
import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("transformers")

from harmony import stack  # noqa: E402

import realfiles as rf  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpts")
    return root, rf.write_ovi_ckpts(root)


def _args(**kw):
    base = {k: None for k in ("model", "text_encoder", "tokenizer", "video_vae", "audio_vae", "vocoder", "weights")}
    return argparse.Namespace(**{**base, **kw})


def test_folder_finds_every_component_under_its_usual_name(ckpts):
    root, paths = ckpts
    assert stack.resolve(_args(weights=str(root))) == paths
    # an explicit flag wins over the folder; the tokenizer is looked for beside the text encoder
    other = os.path.join(root, "elsewhere.safetensors")
    with open(other, "wb") as f:
        f.write(b"x")
    got = stack.resolve(_args(weights=str(root), model=other))
    assert got["model"] == other and got["tokenizer"] == paths["tokenizer"]
    explicit = stack.resolve(_args(**{k: v for k, v in paths.items() if k != "tokenizer"}))
    assert explicit == paths


@pytest.mark.parametrize("drop,flag,usual", [("vocoder", "--vocoder", "best_netG.pt"),
                                             ("video_vae", "--video-vae", "Wan2.2_VAE.pth"),
                                             ("text_encoder", "--text-encoder", "models_t5_umt5-xxl-enc-bf16.pth")])
def test_missing_component_names_flag_and_usual_file(ckpts, drop, flag, usual):
    _, paths = ckpts
    given = {k: v for k, v in paths.items() if k not in (drop, "tokenizer")}
    if drop != "text_encoder":
        given["tokenizer"] = paths["tokenizer"]
    with pytest.raises(stack.ComponentError) as e:
        stack.resolve(_args(**given))
    assert str(e.value).startswith(f"{flag} is missing") and usual in str(e.value)


def test_size_rule():
    assert stack.parse_size(None) == (704, 704) and stack.parse_size("64x96") == (64, 96)
    for bad in ("720x720", "64", "0x64", "axb"):
        with pytest.raises(ValueError, match="--size"):
            stack.parse_size(bad)


def test_five_seconds_have_ovis_latent_shapes(ckpts):
    """5 s: 31 video latent frames (121 frames = 1 + 4 * 30) of 64/16 x 64/16, 157 audio latents (5 * 31.25)."""
    _, paths = ckpts
    pipe = stack.load_stack(paths, size=(64, 64), device="cpu", log=lambda m: None)
    cond = pipe.encode_text("a red ball bounces", "two loud thud", "hello there")
    assert cond.video_context.shape == (1, 512, rf.UMT5_SIZE["dim"])
    # "a red ball bounces <S>hello there<E> Audio: two loud thud": 10 whitespace words + </s> = 11 rows
    rows = cond.video_context[0].abs().amax(dim=1)
    assert (rows[:11] > 0).all() and rows[11:].max() == 0  # then zero rows (Wan's padding)
    assert (cond.audio_context == cond.video_context).all()  # Ovi: one prompt for both towers
    lat = pipe.sample(cond, seconds=5, steps=1, guidance="none")
    assert tuple(lat.video.shape) == (1, 48, 31, 4, 4)
    assert tuple(lat.audio.shape) == (1, 157, 20)


def test_generate_cli_to_mp4(ckpts, tmp_path):
    from harmony import media

    root, _ = ckpts
    out = tmp_path / "clip.mp4"
    cmd = [sys.executable, "-m", "harmony", "generate", "a red ball bounces", "--caption", "two loud thud",
           "--transcript", "hello there", "--weights", str(root), "--size", "64x96", "--seconds", "1",
           "--steps", "2", "-o", str(out)]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "model.safetensors: Ovi fusion model" in res.stdout
    info = media.probe(out)
    assert (info["video"]["width"], info["video"]["height"]) == (96, 64)
    assert abs(info["video"]["fps"] - 24) < 1e-6 and info["audio"]["sample_rate"] == 16000
    assert "25 frames at 24 fps, 1.00 s audio at 16000 Hz" in res.stdout
    # the video stream as ffmpeg decodes it: 1 s at 24 fps -> 7 latent frames -> 1 + 4 * 6 = 25 frames
    dec = subprocess.run([media._ffmpeg(), "-hide_banner", "-i", str(out), "-map", "0:v:0", "-f", "null", "-"],
                         capture_output=True, text=True)
    decoded = int(re.findall(r"frame=\s*(\d+)", dec.stderr)[-1])
    assert decoded == 25
    _, _, wave, sr = media.read_video(out)
    assert sr == 16000 and abs(wave.shape[-1] - 16000) <= 1024  # 1 s of 16 kHz audio (AAC framing)


def test_generate_cli_missing_component_is_a_usage_error(ckpts, tmp_path):
    _, paths = ckpts
    cmd = [sys.executable, "-m", "harmony", "generate", "x", "--model", paths["model"], "--text-encoder",
           paths["text_encoder"], "--video-vae", paths["video_vae"], "--audio-vae", paths["audio_vae"],
           "-o", str(tmp_path / "x.mp4")]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    assert "--vocoder is missing" in res.stderr and "best_netG.pt" in res.stderr
