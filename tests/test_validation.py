"""Bad input is refused at the door (issue 13): the CLI, the Python API and the nodes run the same
checks (harmony.validate) before any compute, and say what is wrong and how to fix it."""
import json
import os
import re
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch

import harmony.__main__ as cli
from harmony import media, validate
from harmony.pipeline import DEFAULT_MODEL, AVLatent, HarmonyPipeline, model_limits
from harmony.validate import InputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAN, INF = float("nan"), float("inf")


@pytest.fixture(scope="module")
def pipe():
    torch.set_num_threads(1)
    return HarmonyPipeline.from_pretrained(log=lambda m: None)


@pytest.fixture(scope="module")
def cond(pipe):
    return pipe.encode_text("a red ball bounces", "two thuds", "")


@pytest.fixture
def no_compute(pipe, monkeypatch):
    """Any encoding or sampling fails the test: errors must come before them."""
    import harmony.pipeline as hp

    def boom(*a, **k):
        raise AssertionError("compute ran before the input was checked")

    monkeypatch.setattr(hp, "sample", boom)
    monkeypatch.setattr(pipe.codecs.audio, "encode", boom)
    monkeypatch.setattr(pipe.codecs.video, "encode", boom)
    return pipe


def bundled_max_seconds():
    """The limit straight from the bundled file's config metadata (the one source of truth)."""
    from safetensors import safe_open

    with safe_open(DEFAULT_MODEL, "pt") as f:
        return float(json.loads(f.metadata()["harmony_config"])["meta"]["max_seconds"])


# ------------------------------------------------------------------ 1. numbers, ranges, integers


def test_numbers_name_input_value_and_fix_per_entrance():
    with pytest.raises(InputError) as e:
        validate.seconds(NAN, min_seconds=1, max_seconds=6, via="cli")
    assert str(e.value).startswith("--seconds=nan: must be a finite number between 1 and 6")
    assert str(e.value).endswith("pass e.g. --seconds 3")
    with pytest.raises(InputError, match=r"^seconds=inf: .*pass e.g. seconds=3$"):
        validate.seconds(INF, min_seconds=1, max_seconds=6)
    with pytest.raises(InputError, match=r"^seconds=0\.2: seconds must be at least 1 .*set 'seconds' to e.g. 3$"):
        validate.seconds(0.2, min_seconds=1, max_seconds=6, via="node")
    assert validate.seconds(60.0, min_seconds=1, max_seconds=6) == 60.0  # capped later, with a message
    for bad, kind in ((2.5, "float"), ("3", "str"), (True, "bool")):
        with pytest.raises(InputError, match=rf"^steps={bad!r}: must be a whole number >= 1, not a {kind}; "):
            validate.integer(bad, "steps", 20, low=1)
    assert validate.integer(np.int64(3), "steps", 20, low=1) == 3
    with pytest.raises(InputError, match=r"^--text-cfg=nan: must be a finite number; pass e\.g\. --text-cfg 1$"):
        validate.number(NAN, "text_cfg", 1, via="cli")
    with pytest.raises(InputError, match=r"^shift=0: must be a finite number greater than 0"):
        validate.number(0.0, "shift", 5, low=0, low_open=True)


def test_the_seconds_limit_comes_from_the_model_config(pipe, no_compute, cond):
    limit = bundled_max_seconds()
    assert model_limits()[1] == limit and pipe.max_seconds == limit
    with pytest.raises(InputError, match=rf"between 1 and {limit:g} \(the model's limit"):
        pipe.sample(cond, seconds=NAN)


@pytest.mark.parametrize("kw, pattern", [
    ({"seconds": NAN}, r"^seconds=nan: must be a finite number between"),
    ({"seconds": INF}, r"^seconds=inf: "),
    ({"shift": NAN}, r"^shift=nan: must be a finite number greater than 0; pass e\.g\. shift=5$"),
    ({"sv": INF}, r"^sv=inf: must be a finite number; pass e\.g\. sv=3$"),
    ({"sa": NAN}, r"^sa=nan: "),
    ({"text_cfg": NAN}, r"^text_cfg=nan: "),
    ({"steps": 2.5}, r"^steps=2\.5: must be a whole number >= 1, not a float; pass e\.g\. steps=20$"),
    ({"steps": "3"}, r"^steps='3': must be a whole number >= 1, not a str"),
    ({"steps": 0}, r"^steps=0: must be a whole number >= 1"),
    ({"seed": -1}, r"^seed=-1: must be a whole number from 0 to 2\*\*64-1"),
    ({"seed": 1.5}, r"^seed=1\.5: "),
    ({"guidance": "bogus"}, r"unknown guidance mode; use one of"),
    ({"solver": "rk4"}, r"^solver='rk4': unknown solver"),
])
def test_api_sample_refuses_bad_settings_before_compute(no_compute, cond, kw, pattern):
    args = {"seconds": 1.0, "steps": 1, **kw}
    with pytest.raises(InputError, match=pattern):
        no_compute.sample(cond, **args)


def test_api_scans_every_tensor_for_nan_and_inf(no_compute, cond):
    pipe = no_compute
    wave = torch.zeros(1, 32000)
    wave[0, 100] = NAN
    with pytest.raises(InputError, match=r"^driving audio contains NaN \(1 of 32000 values, first at index \[0, 100\]\)"):
        pipe.sample(cond, steps=1, driving_audio=(wave, 16000))
    frames = torch.rand(32, 64, 64, 3)
    frames[3, 1, 2, 0] = INF
    with pytest.raises(InputError, match=r"^driving video contains inf"):
        pipe.sample(cond, steps=1, driving_video=(frames, 16.0))
    image = torch.rand(64, 64, 3)
    image[0, 0, 0] = NAN
    with pytest.raises(InputError, match=r"^first frame contains NaN"):
        pipe.sample(cond, seconds=1.0, steps=1, first_frame=image)
    voice = torch.zeros(1, 24000)
    voice[0, -1] = -INF
    with pytest.raises(InputError, match=r"^reference voice contains inf"):
        pipe.sample(cond, seconds=1.0, steps=1, ref_voice=(voice, 16000))
    bad = type(cond)(cond.video_context.clone(), cond.audio_context, cond.ref_audio)
    bad.video_context[0, 0, 0] = NAN
    with pytest.raises(InputError, match=r"^cond\.video_context contains NaN"):
        pipe.sample(bad, seconds=1.0, steps=1)


def test_api_decode_refuses_a_nan_latent(pipe):
    lat = AVLatent(torch.full((1, 16, 4, 8, 8), NAN), torch.zeros(1, 32, 20), 16.0, 16000, 1.0)
    with pytest.raises(InputError, match=r"^latent\.video contains NaN \(4096 of 4096 values"):
        pipe.decode(lat)
    lat = AVLatent(torch.zeros(1, 16, 4, 8, 8), torch.zeros(1, 32, 20), 0.0, 16000, 1.0)
    with pytest.raises(InputError, match=r"^latent\.fps=0: must be a positive number"):
        pipe.decode(lat)


def test_api_refuses_empty_media_and_bad_rates(no_compute, cond):
    pipe = no_compute
    cases = [
        ((torch.zeros(1, 0, 32000), 16000), r"^driving audio: the waveform has 0 channels"),
        ((torch.zeros(0, 1, 32000), 16000), r"^driving audio: the AUDIO batch is empty"),
        ((torch.zeros(1, 0), 16000), r"^driving audio: the waveform has no samples"),
        ((torch.zeros(1, 32000), 0), r"^driving audio: sample_rate=0: must be a positive whole number of Hz"),
        ((torch.zeros(1, 32000), NAN), r"^driving audio: sample_rate=nan: "),
        ((torch.zeros(1, 32000), 16000.5), r"^driving audio: sample_rate=16000\.5: "),
        (torch.zeros(1, 32000), r"^driving_audio: expected a pair \(wave"),
    ]
    for value, pattern in cases:
        with pytest.raises(InputError, match=pattern):
            pipe.sample(cond, steps=1, driving_audio=value)
    with pytest.raises(InputError, match=r"^driving video: fps=0: must be a positive number of frames per second"):
        pipe.sample(cond, steps=1, driving_video=(torch.rand(32, 64, 64, 3), 0))
    with pytest.raises(InputError, match=r"^driving video: no frames"):
        pipe.sample(cond, steps=1, driving_video=(torch.rand(0, 64, 64, 3), 16.0))
    with pytest.raises(InputError, match=r"^driving video: fps=inf: "):
        pipe.sample(cond, steps=1, driving_video=(torch.rand(32, 64, 64, 3), INF))


# ------------------------------------------------------------------ 2. batches


def test_api_batches_are_refused_not_cut(no_compute, cond):
    with pytest.raises(InputError, match=r"^driving audio: the AUDIO holds a batch of 2 clips, but Harmony uses one "
                                         r"clip per run and will not drop the others silently"):
        no_compute.sample(cond, steps=1, driving_audio=(torch.zeros(2, 1, 32000), 16000))
    with pytest.raises(InputError, match=r"^first frame: got 3 frames .*first_frame=frames\[0\]"):
        no_compute.sample(cond, seconds=1.0, steps=1, first_frame=torch.rand(3, 64, 64, 3))


# ------------------------------------------------------------------ 3. long inputs


def test_driving_audio_is_cropped_before_resampling(pipe, monkeypatch):
    import harmony.media as hm

    sr = 44100
    long = torch.from_numpy(np.random.default_rng(0).normal(0, 0.1, (2, 60 * sr)).astype(np.float32))
    seen = []
    real = hm.resample_audio

    def spy(wave, sr_in, sr_out, *a, **k):
        seen.append(wave.shape[-1])
        return real(wave, sr_in, sr_out, *a, **k)

    monkeypatch.setattr(hm, "resample_audio", spy)
    lat = pipe.encode_audio(long, sr, seconds=2.0)
    assert len(seen) == 1 and seen[0] <= 2.05 * sr + 1  # 2 s + the resampler's reach, not 60 s
    # the crop changes nothing: same latent as resampling all of it and cutting afterwards
    full = torch.as_tensor(real(long.mean(0), sr, 16000))[:32000]
    ref = pipe.codecs.audio.encode(full[None])
    assert torch.allclose(lat, ref, atol=1e-5)


def test_driving_video_is_cropped_before_resampling_and_resizing(pipe, monkeypatch):
    import harmony.media as hm

    seen = []
    real = hm.resample_video

    def spy(frames, fps_in, fps_out, **kw):
        seen.append(frames.shape[0])
        return real(frames, fps_in, fps_out, **kw)

    monkeypatch.setattr(hm, "resample_video", spy)
    frames = torch.rand(600, 48, 48, 3)  # 20 s at 30 fps
    pipe.encode_video(frames, 30.0, n_frames=16)  # 1 s at the model's 16 fps
    assert seen == [31]  # ceil(16 * 30 / 16) + 1 source frames, not 600


def test_media_loaders_read_only_what_is_asked(tmp_path):
    sr = 8000
    wav = tmp_path / "long.wav"
    media.write_wav(wav, np.zeros((2, 20 * sr), np.float32), sr)
    wave, got_sr = media.read_audio(wav, max_seconds=2)
    assert got_sr == sr and wave.shape == (2, 2 * sr)
    clip = tmp_path / "clip.mp4"
    t = np.arange(3 * 16000) / 16000
    media.write_mp4(clip, np.random.default_rng(0).random((48, 32, 32, 3)), 16,
                    (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    frames, fps, wave, sr2 = media.read_video(clip, max_seconds=1)
    assert frames.shape[0] == 16 and abs(wave.shape[-1] - 16000) <= 1024
    wave, sr3 = media.read_audio(clip, max_seconds=0.5)  # through ffmpeg (not a wav)
    assert abs(wave.shape[-1] - 0.5 * sr3) <= 1024
    with pytest.raises(media.MediaError, match="max_seconds must be a positive number"):
        media.read_audio(wav, max_seconds=0)


def test_cli_reads_only_the_usable_part_and_says_so(tmp_path, capsys):
    sr = 8000
    wav = tmp_path / "long.wav"
    media.write_wav(wav, np.zeros((1, 20 * sr), np.float32), sr)
    wave, got_sr = cli._read_limited(media.read_audio, str(wav), "--audio", 6.0)
    assert wave.shape == (1, 6 * sr)
    assert f"--audio: using the first 6 s of {wav}" in capsys.readouterr().out


def test_long_prompt_is_cut_with_a_message_naming_the_limit(pipe):
    messages = []
    pipe.log = messages.append
    try:
        pipe.encode_text("a red ball bounces. " * 500, "two thuds", "")
        pipe.encode_text("a red ball bounces", "two thuds", "")
    finally:
        pipe.log = lambda m: None
    cut = [m for m in messages if "tokens long" in m]
    assert len(cut) == 1
    limit = pipe.conditioner.prompt_tokens.max_len
    # 5 tokens per sentence (a, red, ball, bounces, .) x 500
    assert cut[0].startswith("prompt is 2500 tokens long; this model reads only the first "
                             f"{limit} tokens")


def test_long_reference_voice_is_cropped_with_a_message(pipe, cond, monkeypatch):
    messages, seen = [], []
    pipe.log = messages.append
    real = pipe.encode_audio

    def spy(wave, sr, seconds=None, name="audio"):
        seen.append((name, wave.shape[-1]))
        return real(wave, sr, seconds, name)

    monkeypatch.setattr(pipe, "encode_audio", spy)
    try:
        pipe.sample(cond, seconds=1.0, steps=1, ref_voice=(torch.zeros(1, 60 * 16000), 16000))
    finally:
        pipe.log = lambda m: None
    assert seen == [("reference voice", int(pipe.max_seconds * 16000))]
    assert any(m.startswith("reference voice is 60.00 s: using its first") for m in messages)


# ------------------------------------------------------------------ 4. output paths


def test_output_path_refuses_everything_but_a_regular_file(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    cases = [
        (tmp_path, r"is a folder; give a file path inside it"),
        (fifo, r"is a FIFO \(named pipe\); only a regular file is ever replaced"),
        ("/dev/null", r"^-o /dev/null: refusing to write under /dev"),
        ("/proc/self/status", r"refusing to write under /proc"),
        ("/sys/kernel/clip.mp4", r"refusing to write under /sys"),
        (tmp_path / "missing" / "x.mp4", r"folder .*missing does not exist"),
    ]
    for path, pattern in cases:
        with pytest.raises(InputError, match=pattern):
            validate.output_path(path, "-o")
    link = tmp_path / "link.mp4"
    os.symlink("/dev/null", link)
    with pytest.raises(InputError, match=r"link\.mp4 \(-> /dev/null\): refusing"):
        validate.output_path(link, "-o")
    target = tmp_path / "real.mp4"
    target.write_bytes(b"old")
    link2 = tmp_path / "link2.mp4"
    os.symlink(target, link2)
    assert validate.output_path(link2, "-o") == str(target)
    assert validate.output_path(tmp_path / "new.mp4", "-o") == str(tmp_path / "new.mp4")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_output_path_refuses_a_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(InputError, match="is not writable"):
            validate.output_path(ro / "x.mp4", "-o")
    finally:
        ro.chmod(0o700)


def test_atomic_writer_never_replaces_what_is_not_a_regular_file(tmp_path, monkeypatch):
    fifo = tmp_path / "out.wav"
    os.mkfifo(fifo)
    with pytest.raises(media.MediaError, match=r"is a FIFO"):
        media.write_wav(fifo, np.zeros((1, 100), np.float32), 8000)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    with pytest.raises(media.MediaError, match=r"refusing to write under /dev"):
        media.write_mp4("/dev/null", np.zeros((2, 16, 16, 3), np.float32), 8)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    # a symlink to a regular file: the file is written, the link stays a link
    target, link = tmp_path / "t.wav", tmp_path / "l.wav"
    target.write_bytes(b"old")
    os.symlink(target, link)
    media.write_wav(link, np.zeros((1, 100), np.float32), 8000)
    assert os.path.islink(link) and media.read_audio(target)[0].shape == (1, 100)
    assert sorted(os.listdir(tmp_path)) == ["l.wav", "out.wav", "t.wav"]  # no temp file left

    # a failure while writing names the output, never the temp file
    def failing_open(name, mode):
        raise OSError(f"disk full while writing {name}")

    monkeypatch.setattr(media.wave_module, "open", failing_open)
    with pytest.raises(media.MediaError) as e:
        media.write_wav(tmp_path / "x.wav", np.zeros((1, 100), np.float32), 8000)
    assert "x.wav" in str(e.value) and ".tmp-" not in str(e.value)
    assert sorted(os.listdir(tmp_path)) == ["l.wav", "out.wav", "t.wav"]


# ------------------------------------------------------------------ 5. checkpoints of other families


def _strip_metadata(src, dst):
    from safetensors.torch import load_file, save_file

    save_file(load_file(src), dst)  # the same tensors, no harmony_config


def test_other_family_checkpoint_names_family_and_remedy(tmp_path):
    from safetensors.torch import save_file

    from harmony.checkpoint import CheckpointError, load_model, read_config

    path = tmp_path / "mymodel.safetensors"
    _strip_metadata(DEFAULT_MODEL, path)
    with pytest.raises(CheckpointError) as e:
        read_config(path)
    msg = str(e.value)
    assert "is a Harmony-layout checkpoint without 'harmony_config' metadata" in msg
    assert "write its config beside it as mymodel.json" in msg and '{"config": "<name>"}' in msg
    # the remedy works: a config name, or a full config dict (with its meta)
    (tmp_path / "mymodel.json").write_text(json.dumps({"config": "tiny"}))
    assert read_config(path).video.dim == 128
    full = load_model(DEFAULT_MODEL).cfg.to_dict()
    (tmp_path / "mymodel.json").write_text(json.dumps(full))
    assert load_model(path).cfg.meta["max_seconds"] == full["meta"]["max_seconds"]
    # config.json in the folder is the second place looked at; a foreign config.json is not ours
    os.remove(tmp_path / "mymodel.json")
    (tmp_path / "config.json").write_text(json.dumps({"dim": 3072, "model_type": "ti2v"}))
    with pytest.raises(CheckpointError, match="Harmony-layout checkpoint"):
        read_config(path)
    (tmp_path / "config.json").write_text(json.dumps("tiny"))
    assert read_config(path).audio.in_dim == 20
    # a bad sidecar is named
    (tmp_path / "mymodel.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"mymodel\.json: config file beside mymodel\.safetensors is not valid JSON"):
        read_config(path)
    # a Wan2.2 video-only file and an unrelated file are named as such
    wan = tmp_path / "wan" / "wan.safetensors"
    wan.parent.mkdir()
    save_file({"blocks.0.self_attn.q.weight": torch.zeros(2, 2), "patch_embedding.weight": torch.zeros(2)}, wan)
    with pytest.raises(CheckpointError, match="is a Wan video-only checkpoint .*Load Diffusion Model"):
        read_config(wan)
    other = tmp_path / "wan" / "sdxl.safetensors"
    save_file({"unet.conv_in.weight": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="match no model family this package knows"):
        read_config(other)


def test_other_family_remedy_works_from_the_node(tmp_path, monkeypatch):
    import shutil

    import nodes
    from nodes.errors import HarmonyModelError

    _strip_metadata(DEFAULT_MODEL, tmp_path / "mine.safetensors")
    shutil.copy(DEFAULT_MODEL.replace(".safetensors", ".text.safetensors"), tmp_path / "mine.text.safetensors")
    monkeypatch.setenv("HARMONY_MODELS_DIR", str(tmp_path))
    loader = nodes.NODE_CLASS_MAPPINGS["HarmonyModelLoader"]()
    with pytest.raises(HarmonyModelError, match=r"Harmony Model Loader: .*write its config beside it as mine\.json"):
        loader.load("mine.safetensors", "auto", "none", 4, "sdpa")
    from harmony.checkpoint import load_model

    (tmp_path / "mine.json").write_text(json.dumps(load_model(DEFAULT_MODEL).cfg.to_dict()))
    pipe = loader.load("mine.safetensors", "auto", "none", 4, "sdpa")[0]
    assert pipe.max_seconds == bundled_max_seconds()


# ------------------------------------------------------------------ 6. CLI: one line, exit codes, --debug


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "harmony", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


@pytest.mark.slow
def test_cli_prints_one_line_and_exits_2_for_bad_input(tmp_path):
    r = run_cli("generate", "--seconds", "nan", "-o", str(tmp_path / "x.mp4"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m harmony generate: error: --seconds=nan: ")
    assert lines[0].endswith("pass e.g. --seconds 3") and not (tmp_path / "x.mp4").exists()
    r = run_cli("generate", "--steps", "1", "-o", "/dev/null", "--debug")
    assert r.returncode == 2 and "Traceback" in r.stderr and "-o /dev/null: refusing to write under /dev" in r.stderr
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    r = run_cli("generate", "--steps", "2.5", env={"HARMONY_DEBUG": "1"})
    assert r.returncode == 2 and "invalid int value: '2.5' (give a whole number)" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1  # argparse's usage block is not dumped


@pytest.mark.parametrize("args, pattern", [
    (["--shift", "nan"], r"error: --shift=nan: must be a finite number greater than 0; pass e\.g\. --shift 5$"),
    (["--sv", "inf"], r"error: --sv=inf: must be a finite number; pass e\.g\. --sv 3$"),
    (["--seconds", "0.2"], r"error: --seconds=0\.2: seconds must be at least 1"),
    (["--seed", "-4"], r"error: --seed=-4: must be a whole number from 0"),
])
def test_cli_settings_checked_before_loading_the_model(args, pattern, capsys, monkeypatch):
    import harmony.pipeline as hp

    monkeypatch.setattr(hp.HarmonyPipeline, "from_pretrained",
                        classmethod(lambda *a, **k: pytest.fail("model loaded before the check")))
    with pytest.raises(SystemExit) as e:
        cli.main(["generate", *args, "-o", "unused.mp4"])
    assert e.value.code == 2
    assert __import__("re").search(pattern, capsys.readouterr().err.strip())


def test_cli_output_paths_are_checked_first_and_named(tmp_path, capsys, monkeypatch):
    import harmony.pipeline as hp

    monkeypatch.setattr(hp.HarmonyPipeline, "from_pretrained",
                        classmethod(lambda *a, **k: pytest.fail("model loaded before the -o check")))
    fifo = tmp_path / "fifo.mp4"
    os.mkfifo(fifo)
    for out, needle in ((tmp_path, f"-o {tmp_path} is a folder"), (fifo, f"-o {fifo} is a FIFO"),
                        (tmp_path / "no" / "x.mp4", f"-o {tmp_path / 'no' / 'x.mp4'}: folder")):
        with pytest.raises(SystemExit) as e:
            cli.main(["generate", "-o", str(out)])
        assert e.value.code == 2 and needle in capsys.readouterr().err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    with pytest.raises(SystemExit) as e:
        cli.main(["convert", DEFAULT_MODEL, str(tmp_path)])
    assert e.value.code == 2 and f"output {tmp_path} is a folder" in capsys.readouterr().err


def test_cli_other_errors_exit_1_with_a_hint(capsys, monkeypatch):
    def broken(argv):
        raise RuntimeError("device lost\nsecond line")

    monkeypatch.setitem(cli.COMMANDS, "bench", broken)
    with pytest.raises(SystemExit) as e:
        cli.main(["bench"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 1 and err == ("python -m harmony bench: error: RuntimeError: device lost second line "
                                         "(rerun with --debug for the traceback)")
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", "--debug"])
    assert e.value.code == 1 and "Traceback" in capsys.readouterr().err


# ------------------------------------------------------------------ nodes: the same checks


def test_node_inputs_go_through_the_same_checks(pipe, cond, monkeypatch, capsys):
    import nodes
    from nodes.conditioning import DRIVING_AUDIO, DRIVING_VIDEO, FIRST_FRAME
    from nodes.types import AVConditioning, HarmonyInputError

    M = nodes.NODE_CLASS_MAPPINGS
    text = AVConditioning(text=cond)
    add_audio, add_video = M["HarmonyAudioConditioning"]().add, M["HarmonyVideoConditioning"]().add
    audio_cases = [
        ({"waveform": torch.zeros(2, 1, 32000), "sample_rate": 16000},
         r"^input 'audio': the AUDIO holds a batch of 2 clips.* - connect one clip"),
        ({"waveform": torch.zeros(1, 0, 32000), "sample_rate": 16000}, r"^input 'audio': the waveform has 0 channels"),
        ({"waveform": torch.zeros(0, 1, 32000), "sample_rate": 16000}, r"^input 'audio': the AUDIO batch is empty"),
        ({"waveform": torch.zeros(1, 1, 32000), "sample_rate": 0}, r"^input 'audio': sample_rate=0: "),
        ({"waveform": torch.full((1, 1, 32000), NAN), "sample_rate": 16000}, r"^input 'audio' contains NaN"),
    ]
    for audio, pattern in audio_cases:
        with pytest.raises(HarmonyInputError, match=pattern):
            add_audio(text, audio, DRIVING_AUDIO)
    images = torch.rand(20, 64, 64, 3)
    images[2, 3, 4, 1] = INF
    with pytest.raises(HarmonyInputError, match=r"^input 'images' contains inf"):
        add_video(text, DRIVING_VIDEO, 16.0, images=images)
    with pytest.raises(HarmonyInputError, match=r"^Harmony Video Conditioning: fps=0: .*set 'fps' to e\.g\. 24$"):
        add_video(text, DRIVING_VIDEO, 0.0, images=torch.rand(20, 64, 64, 3))

    class Parts:
        images, frame_rate, audio = torch.rand(24, 32, 32, 3), 0, None

    class Video:
        def get_components(self):
            return Parts()

    with pytest.raises(HarmonyInputError, match=r"^input 'video': the VIDEO's frame_rate is 0"):
        add_video(text, DRIVING_VIDEO, 24.0, video=Video())
    # several images as first frame: the first is used, and the node says so
    i2av = add_video(text, FIRST_FRAME, 16.0, images=torch.rand(3, 64, 64, 3))[0]
    assert i2av.first_frame.shape == (64, 64, 3)
    assert "3 frames connected; the first one is the first frame (pick another with ImageFromBatch)" in \
        capsys.readouterr().out
    # the sampler checks its settings before the model is touched
    monkeypatch.setattr(pipe, "sample", lambda *a, **k: pytest.fail("sampled before the check"))
    sampler = M["HarmonySyncCFGSampler"]()
    base = dict(seed=0, steps=2, seconds=1.0, width=0, height=0, shift=5.0, guidance="synccfg", sv=3.0, sa=2.0,
                text_cfg=1.0, solver="euler")
    for key, value, pattern in (("seconds", NAN, r"seconds=nan: must be a finite number between 1 and "),
                                ("steps", 2.5, r"steps=2\.5: must be a whole number >= 1, not a float; "
                                               r"set 'steps' to e\.g\. 20$"),
                                ("shift", INF, r"shift=inf: "), ("sa", NAN, r"sa=nan: ")):
        with pytest.raises(HarmonyInputError, match=rf"^Harmony SyncCFG Sampler: {pattern}"):
            sampler.sample(pipe, text, **{**base, key: value})


def test_save_node_refuses_an_audio_batch(tmp_path, monkeypatch):
    import nodes
    from nodes.types import HarmonyInputError

    monkeypatch.setenv("HARMONY_OUTPUT_DIR", str(tmp_path))
    with pytest.raises(HarmonyInputError, match=r"^input 'audio': the AUDIO holds a batch of 2 clips"):
        nodes.NODE_CLASS_MAPPINGS["HarmonySaveAV"]().save(
            torch.rand(8, 32, 32, 3), {"waveform": torch.zeros(2, 1, 8000), "sample_rate": 16000}, 16.0,
            "clip", True, False)
    assert not any(f.endswith(".mp4") for _, _, files in os.walk(tmp_path) for f in files)


@pytest.mark.slow
def test_checkpoint_writer_never_replaces_what_is_not_a_regular_file(tmp_path):
    from harmony.weightfile import CheckpointError, save_safetensors

    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match=r"model\.safetensors is a FIFO"):
        save_safetensors({"x": torch.zeros(2)}, fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    with pytest.raises(CheckpointError, match="refusing to write under /dev"):
        save_safetensors({"x": torch.zeros(2)}, "/dev/null")
    out = save_safetensors({"x": torch.zeros(2)}, tmp_path / "new" / "m.safetensors")  # folders are made
    assert os.path.isfile(out) and sorted(os.listdir(tmp_path / "new")) == ["m.safetensors"]


# ------------------------------------------------------------------ issue 21: lying containers, footguns


def _lying_clip(path, rate):
    """Two 32x32 frames in an mp4 whose container claims `rate` fps (a few KB)."""
    cmd = [media._ffmpeg(), "-y", "-v", "error", "-f", "lavfi", "-i", "color=c=red:s=32x32:d=1:r=24",
           "-frames:v", "2", "-c:v", "libx264", "-r", str(rate), str(path)]
    subprocess.run(cmd, check=True, capture_output=True)
    return str(path)


@pytest.mark.parametrize("rate, shown", [("0.0002", "0.0002"), ("1000000", "1e+06")])
def test_cli_refuses_an_absurd_container_frame_rate_before_loading(tmp_path, capsys, monkeypatch, rate, shown):
    import harmony.pipeline as hp

    clip = _lying_clip(tmp_path / "lying.mp4", rate)
    assert media.probe(clip)["video"]["fps"] == float(rate)  # ffmpeg's "1000k fps" read as 1e6, not None
    monkeypatch.setattr(hp.HarmonyPipeline, "from_pretrained",
                        classmethod(lambda *a, **k: pytest.fail("model loaded before the frame-rate check")))
    with pytest.raises(SystemExit) as e:
        cli.main(["generate", "--video", clip, "-o", str(tmp_path / "out.mp4")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1
    assert (f"error: --video {clip}: frame rate {shown} fps is not plausible; expected 1-240 fps; re-encode the "
            "file at its real rate") in err and err.endswith("or give that rate with --video-fps 24")
    # the reader refuses it too (no decode), and reads it at a given rate, bounded by the seconds asked
    with pytest.raises(media.MediaError, match=rf"frame rate {re.escape(shown)} fps is not plausible; expected "
                                               r"1-240 fps; re-encode"):
        media.read_video(clip, max_seconds=6)
    frames, fps, _, _ = media.read_video(clip, max_seconds=6, fps=24)
    assert fps == 24.0 and frames.shape[0] == 2


def test_cli_container_without_a_frame_rate_is_named(tmp_path, capsys, monkeypatch):
    clip = _lying_clip(tmp_path / "clip.mp4", 24)
    monkeypatch.setattr(media, "probe", lambda p: {"video": {"width": 32, "height": 32, "fps": None},
                                                   "audio": None, "duration": None})
    with pytest.raises(SystemExit) as e:
        cli.main(["generate", "--video", clip, "-o", str(tmp_path / "out.mp4")])
    assert e.value.code == 2
    assert (f"--video {clip}: frame rate unknown (its container gives none); expected 1-240 fps"
            in capsys.readouterr().err)
    with pytest.raises(media.MediaError, match=r"frame rate unknown \(the container gives none\); expected 1-240"):
        media.read_video(clip)  # not a TypeError from float(None)
    with pytest.raises(SystemExit) as e:
        cli.main(["generate", "--video", clip, "--video-fps", "0.5", "-o", str(tmp_path / "out.mp4")])
    assert e.value.code == 2 and "--video-fps: frame rate 0.5 fps is not plausible" in capsys.readouterr().err


def test_api_refuses_an_implausible_frame_rate_before_compute(no_compute, cond):
    for fps, shown in ((1e-9, "1e-09"), (1e6, "1e+06"), (0.5, "0.5")):
        with pytest.raises(InputError, match=rf"^driving video: frame rate {re.escape(shown)} fps is not plausible; "
                                             r"expected 1-240 fps; pass the clip's real frame rate"):
            no_compute.sample(cond, steps=1, driving_video=(torch.rand(8, 64, 64, 3), fps))
    with pytest.raises(InputError, match=r"^video: frame rate 1e-09 fps is not plausible"):
        no_compute.conform_frames(torch.rand(1, 64, 64, 3), 1e-9)


def test_driving_video_is_cut_before_it_is_resampled(pipe, monkeypatch):
    """Whatever the rate, the resampler makes only the frames the run uses."""
    import harmony.media as hm

    made = []
    real = hm.resample_video

    def spy(frames, fps_in, fps_out, **kw):
        out = real(frames, fps_in, fps_out, **kw)
        made.append(out.shape[0])
        return out

    monkeypatch.setattr(hm, "resample_video", spy)
    pipe.encode_video(torch.rand(1, 48, 48, 3), 1.0, n_frames=16)  # 1 frame at 1 fps: 16 frames, not 16 s
    assert made == [16]
    assert hm.resample_video(np.zeros((1, 2, 2, 3)), 0.0002, 24, max_frames=121).shape[0] == 121
    assert pipe.conform_frames(torch.rand(2, 64, 64, 3), 1.0, max_frames=5).shape[0] == 5


def test_node_refuses_an_implausible_video_frame_rate(cond):
    import nodes
    from nodes.conditioning import DRIVING_VIDEO
    from nodes.types import AVConditioning, HarmonyInputError

    add_video = nodes.NODE_CLASS_MAPPINGS["HarmonyVideoConditioning"]().add
    text = AVConditioning(text=cond)

    class Parts:
        images, frame_rate, audio = torch.rand(24, 32, 32, 3), 1e-9, None

    class Video:
        def get_components(self):
            return Parts()

    with pytest.raises(HarmonyInputError, match=r"^input 'video': the VIDEO's frame_rate: frame rate 1e-09 fps is not "
                                                r"plausible; expected 1-240 fps; re-encode the file"):
        add_video(text, DRIVING_VIDEO, 24.0, video=Video())
    with pytest.raises(HarmonyInputError, match=r"^Harmony Video Conditioning: fps: frame rate 0\.5 fps is not "
                                                r"plausible; expected 1-240 fps; set 'fps' to the clip's real rate"):
        add_video(text, DRIVING_VIDEO, 0.5, images=torch.rand(20, 64, 64, 3))


@pytest.mark.parametrize("args, needle", [
    (["--size", "abc"], "error: --size: 'abc' is not HxW; pass e.g. --size 704x704"),
    (["--size", "64x64"], "error: --size 64x64: the frame size is chosen only for the real-scale stack"),
    (["--weights", ""], "error: --weights: the folder path is empty; give the folder holding the components"),
    (["--model", ""], "error: --model: the file path is empty; give the dual-tower model"),
    (["--audio", "a.wav", "--video", "v.mp4"], "error: --audio and --video: give one"),
    (["--video-fps", "24"], "error: --video-fps 24: it is the frame rate of a driving video; give --video FILE"),
])
def test_cli_footguns_are_errors_not_ignored(args, needle, capsys, monkeypatch):
    import harmony.pipeline as hp

    monkeypatch.setattr(hp.HarmonyPipeline, "from_pretrained",
                        classmethod(lambda *a, **k: pytest.fail("the bundled model was loaded")))
    with pytest.raises(SystemExit) as e:
        cli.main(["generate", *args, "-o", "unused.mp4"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and needle in err


@pytest.mark.parametrize("args, needle", [
    (["--steps", "-3"], "error: --steps=-3: must be a whole number >= 1; pass e.g. --steps 3000"),
    (["--batch", "0"], "error: --batch=0: must be a whole number >= 1; pass e.g. --batch 16"),
    (["--lr", "nan"], "error: --lr=nan: must be a finite number greater than 0"),
    (["--p-drop-text", "1.5"], "error: --p-drop-text=1.5: must be a finite number between 0 and 1"),
])
def test_train_refuses_bad_counts_at_parse_time(args, needle, capsys, monkeypatch, tmp_path):
    import harmony.train as ht

    monkeypatch.setattr(ht, "train", lambda tc: pytest.fail("training started"))
    with pytest.raises(SystemExit) as e:
        cli.main(["train", *args, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and needle in err
    assert not (tmp_path / "run").exists()


def test_node_names_its_input_for_a_corrupt_model_file(tmp_path, monkeypatch):
    import struct

    import nodes
    from nodes.types import HarmonyInputError

    text = json.dumps({"w": {"dtype": "F7_WHAT", "shape": [2], "data_offsets": [0, 2]}}).encode()
    (tmp_path / "broken.safetensors").write_bytes(struct.pack("<Q", len(text)) + text + bytes(2))
    monkeypatch.setenv("HARMONY_MODELS_DIR", str(tmp_path))
    loader = nodes.NODE_CLASS_MAPPINGS["HarmonyModelLoader"]()
    with pytest.raises(HarmonyInputError, match=r"^Harmony Model Loader: input 'model_name' 'broken\.safetensors' -> "
                                                r".*broken\.safetensors: tensor 'w' has dtype 'F7_WHAT'.*download it"):
        loader.load("broken.safetensors", "auto", "none", 4, "sdpa")
