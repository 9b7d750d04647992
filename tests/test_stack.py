"""The real-scale stack (harmony/assemble.py, components, framesize, lazy_codecs, umt5_conditioner) on tiny
random files in the real layouts and formats:
Ovi's ckpts folder (Ovi/model.safetensors + video.json/audio.json, Wan2.2-TI2V-5B/{Wan2.2_VAE.pth,
models_t5_umt5-xxl-enc-bf16.pth, google/umt5-xxl}, MMAudio/ext_weights/{v1-16.pth, best_netG.pt})."""
import argparse
import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("transformers")

from harmony import assemble, components, framesize, lazy_codecs, umt5_conditioner  # noqa: E402

import realfiles as rf  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# one thread: the tiny models are far slower with several threads on a busy machine
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpts")
    return root, rf.write_ovi_ckpts(root)


def _args(**kw):
    base = {k: None for k in ("model", "text_encoder", "tokenizer", "video_vae", "audio_vae", "vocoder", "weights")}
    return argparse.Namespace(**{**base, **kw})


def test_folder_finds_every_component_under_its_usual_name(ckpts):
    root, paths = ckpts
    assert components.resolve(_args(weights=str(root))) == paths
    # an explicit flag wins over the folder; the tokenizer is looked for beside the text encoder
    other = os.path.join(root, "elsewhere.safetensors")
    with open(other, "wb") as f:
        f.write(b"x")
    got = components.resolve(_args(weights=str(root), model=other))
    assert got["model"] == other and got["tokenizer"] == paths["tokenizer"]
    explicit = components.resolve(_args(**{k: v for k, v in paths.items() if k != "tokenizer"}))
    assert explicit == paths


@pytest.mark.parametrize("drop,flag,usual", [("vocoder", "--vocoder", "best_netG.pt"),
                                             ("video_vae", "--video-vae", "Wan2.2_VAE.pth"),
                                             ("text_encoder", "--text-encoder", "models_t5_umt5-xxl-enc-bf16.pth"),
                                             ("model", "--model", "Ovi/model.safetensors"),
                                             ("audio_vae", "--audio-vae", "v1-16.pth"),
                                             ("tokenizer", "--tokenizer", "google/umt5-xxl")])
def test_missing_component_names_flag_and_usual_file(ckpts, tmp_path, drop, flag, usual):
    _, paths = ckpts
    given = {k: v for k, v in paths.items() if k not in (drop, "tokenizer")}
    if drop not in ("text_encoder", "tokenizer"):
        given["tokenizer"] = paths["tokenizer"]
    if drop == "tokenizer":  # a text encoder with no google/umt5-xxl folder beside it
        lone = tmp_path / "umt5_xxl_bf16.safetensors"
        lone.write_bytes(b"x")
        given["text_encoder"] = str(lone)
    with pytest.raises(components.ComponentError) as e:
        components.resolve(_args(**given))
    assert str(e.value).startswith(f"{flag} is missing") and usual in str(e.value)


def test_component_path_not_found_names_the_flag(ckpts, tmp_path):
    _, paths = ckpts
    with pytest.raises(components.ComponentError, match="^--audio-vae: file not found: .*nowhere.pth.*v1-16.pth"):
        components.resolve(_args(**{**paths, "audio_vae": str(tmp_path / "nowhere.pth")}))
    with pytest.raises(components.ComponentError, match="^--weights: folder not found"):
        components.resolve(_args(weights=str(tmp_path / "no_folder")))


@pytest.mark.parametrize("key,flag,wrong", [("vocoder", "--vocoder", "audio_vae"),
                                            ("audio_vae", "--audio-vae", "vocoder"),
                                            ("video_vae", "--video-vae", "audio_vae"),
                                            ("text_encoder", "--text-encoder", "video_vae")])
def test_wrong_component_file_is_named_before_the_model_loads(ckpts, monkeypatch, key, flag, wrong):
    """Each file is checked from its header when the stack is built: a file given for the wrong flag is
    an error naming that flag, before the model (or any codec weight) is read."""
    from harmony import checkpoint

    _, paths = ckpts
    monkeypatch.setattr(checkpoint, "load_model", lambda *a, **k: pytest.fail("the model was loaded first"))
    with pytest.raises(components.ComponentError, match=f"^{flag} "):
        assemble.load_stack({**paths, key: paths[wrong]}, device="cpu", log=lambda m: None)


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch " + os.environ["HARMONY_PWNED"],))


def test_crafted_pickle_component_is_refused(ckpts, tmp_path, monkeypatch):
    import torch

    _, paths = ckpts
    marker = tmp_path / "pwned"
    monkeypatch.setenv("HARMONY_PWNED", str(marker))
    evil = tmp_path / "v1-16.pth"
    torch.save({"encoder.conv_in.weight": _Payload()}, evil)
    from harmony.weightfile import WeightFileError

    with pytest.raises(WeightFileError, match="^--audio-vae .*weights_only"):
        assemble.load_stack({**paths, "audio_vae": str(evil)}, device="cpu", log=lambda m: None)
    assert not marker.exists()


def test_size_rule():
    assert framesize.parse_size(None) == (704, 704) and framesize.parse_size("64x96") == (64, 96)
    for bad in ("720x720", "64", "0x64", "axb"):
        with pytest.raises(ValueError, match="--size"):
            framesize.parse_size(bad)


def test_five_seconds_have_ovis_latent_shapes(ckpts):
    """5 s: 31 video latent frames (121 frames = 1 + 4 * 30) of 64/16 x 64/16, 157 audio latents (5 * 31.25)."""
    _, paths = ckpts
    pipe = assemble.load_stack(paths, size=(64, 64), device="cpu", log=lambda m: None)
    cond = pipe.encode_text("a red ball bounces", "two loud thud", "hello there")
    assert cond.video_context.shape == (1, 512, rf.UMT5_SIZE["dim"])
    # "a red ball bounces <S>hello there<E> Audio: two loud thud": 10 whitespace words + </s> = 11 rows
    rows = cond.video_context[0].abs().amax(dim=1)
    assert (rows[:11] > 0).all() and rows[11:].max() == 0  # then zero rows (Wan's padding)
    assert (cond.audio_context == cond.video_context).all()  # Ovi: one prompt for both towers
    lat = pipe.sample(cond, seconds=5, steps=1, guidance="none")
    assert tuple(lat.video.shape) == (1, 48, 31, 4, 4)
    assert tuple(lat.audio.shape) == (1, 157, 20)


@pytest.mark.slow
def test_generate_cli_to_mp4(ckpts, tmp_path):
    from harmony import media

    root, _ = ckpts
    out = tmp_path / "clip.mp4"
    cmd = [sys.executable, "-m", "harmony", "generate", "a red ball bounces", "--caption", "two loud thud",
           "--transcript", "hello there", "--weights", str(root), "--size", "64x96", "--seconds", "1",
           "--steps", "2", "-o", str(out)]
    res = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
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


@pytest.mark.slow
def test_generate_cli_component_flags_make_ovis_five_seconds(ckpts, tmp_path):
    """The component flags (tokenizer found beside the text encoder), 5 s: 121 frames at 24 fps
    (1 + 4 * 30, 31 latent frames), 16 kHz sound of 5 s; SyncCFG (the default) at real scale."""
    from harmony import media

    _, paths = ckpts
    out = tmp_path / "five.mp4"
    cmd = [sys.executable, "-m", "harmony", "generate", "a red ball bounces", "--transcript", "hello there",
           "--model", paths["model"], "--text-encoder", paths["text_encoder"], "--video-vae", paths["video_vae"],
           "--audio-vae", paths["audio_vae"], "--vocoder", paths["vocoder"], "--size", "64x64", "--seconds", "5",
           "--steps", "1", "-o", str(out)]
    res = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "T2AV, 121 frames at 24 fps, 5.00 s audio at 16000 Hz" in res.stdout
    info = media.probe(out)
    assert (info["video"]["width"], info["video"]["height"]) == (64, 64)
    assert abs(info["video"]["fps"] - 24) < 1e-6 and info["audio"]["sample_rate"] == 16000
    dec = subprocess.run([media._ffmpeg(), "-hide_banner", "-i", str(out), "-map", "0:v:0", "-f", "null", "-"],
                         capture_output=True, text=True)
    assert int(re.findall(r"frame=\s*(\d+)", dec.stderr)[-1]) == 121
    _, _, wave, sr = media.read_video(out)
    assert sr == 16000 and abs(wave.shape[-1] - 5 * 16000) <= 1024
    # what was read, in order: the text encoder (freed), then each codec part when first needed
    said = [ln for ln in res.stdout.splitlines() if "reading the" in ln]
    assert [ln.split("reading the ")[1].split(" (")[0] for ln in said] == [
        "text encoder", "MMAudio VAE", "Wan2.2 VAE encoder", "Wan2.2 VAE decoder", "BigVGAN vocoder"], said


@pytest.mark.slow
def test_generate_cli_missing_component_is_a_usage_error(ckpts, tmp_path):
    _, paths = ckpts
    cmd = [sys.executable, "-m", "harmony", "generate", "x", "--model", paths["model"], "--text-encoder",
           paths["text_encoder"], "--video-vae", paths["video_vae"], "--audio-vae", paths["audio_vae"],
           "-o", str(tmp_path / "x.mp4")]
    res = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    assert "--vocoder is missing" in res.stderr and "best_netG.pt" in res.stderr


# --------------------------------------------------------------------------- SyncCFG anchors at real scale

def _quiet(msg):
    pass


def test_silence_anchor_is_the_mmaudio_latent_of_digital_silence(ckpts):
    """Silent audio = MMAudio's latent of digital silence, worked out here without the codec's mel
    path: the log10 mel of zeros is -5 in every bin (the 1e-5 floor), through the VAE from its file."""
    import torch

    from harmony.codecs.mmaudio_vae import load_mmaudio_vae
    from harmony.guidance import Guidance, SyncCFG

    _, paths = ckpts
    pipe = assemble.load_stack(paths, size=(64, 64), device="cpu", log=_quiet)
    silent, blank = pipe.anchors(blank=False)
    assert blank is None and pipe.codecs.video.loaded == set()  # no video encoder for the silence
    n = 313  # 10 s of silence, 31.25 latents per second
    vae = load_mmaudio_vae(paths["audio_vae"])
    z = vae.encode(torch.full((1, 80, 2 * n), -5.0))[0].T.detach()  # [n, 20]
    assert silent.shape == (20,)
    torch.testing.assert_close(silent, z[n // 2], atol=1e-5, rtol=1e-5)
    # one token repeated = that latent away from its ends (the first 15 / last 13 tokens see the edges)
    assert (z[15:n - 13] - silent).abs().max() < 1e-4
    assert (z[0] - silent).abs().max() > 1e-3  # the edge token is not it: the rule drops the edges
    # the codec's own path (waveform -> mel -> VAE) gives the same latent for zeros
    torch.testing.assert_close(pipe.codecs.audio.encode(torch.zeros(1, n * 512))[0], z, atol=1e-5, rtol=1e-5)
    # guidance repeats it over the clip
    g = SyncCFG(pipe.model, None, Guidance("synccfg"), silent_audio_token=silent)
    za = torch.randn(1, 32, 20)
    assert torch.equal(g.silent_audio(za), silent.expand(1, 32, 20))


def test_static_video_anchor_is_the_first_frame_held_still(ckpts):
    """Static video = one latent frame repeated: a frame encoded alone through the Wan2.2 VAE (the VAE
    loaded here straight from its file); with no frame given, a mid-grey frame (the blank frame)."""
    import torch

    from harmony.codecs.wan_vae import load_wan_vae
    from harmony.guidance import Guidance, SyncCFG
    from harmony.jobs import Job

    _, paths = ckpts
    pipe = assemble.load_stack(paths, size=(64, 64), device="cpu", log=_quiet)
    silent, blank = pipe.anchors()
    wan = load_wan_vae(paths["video_vae"])
    grey = torch.full((1, 1, 64, 64, 3), 0.5)
    assert blank.shape == (48, 1, 4, 4)
    torch.testing.assert_close(blank, wan.encode(grey)[0], atol=1e-5, rtol=1e-5)
    # the Wan VAE is causal with the first frame alone: a clip's first latent frame is its frame 0 alone
    clip = torch.rand(1, 5, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(wan.encode(clip)[:, :, :1], wan.encode(clip[:, :1]), atol=1e-5, rtol=1e-5)
    zv = torch.randn(1, 48, 7, 4, 4)

    def held(job):
        st = SyncCFG(pipe.model, None, Guidance("synccfg"), job, silent_audio_token=silent,
                     blank_video_frame=blank).static_video(zv)
        assert st.shape == zv.shape
        assert all(torch.equal(st[:, :, i], st[:, :, 0]) for i in range(7))  # identical copies
        return st[:, :, :1]

    torch.testing.assert_close(held(Job()), blank[None])  # T2AV, no estimate yet: the blank frame
    job = Job()  # I2AV: the given image, encoded alone
    job.first_frame = pipe.encode_video(clip[0, :1], None, 1)[:, :, :1]
    torch.testing.assert_close(held(job), wan.encode(clip[:, :1]), atol=1e-5, rtol=1e-5)
    job = Job()  # V2A: the driving video's frame 0
    job.clean_video = pipe.encode_video(clip[0], 24.0, 5)
    torch.testing.assert_close(held(job), wan.encode(clip[:, :1]), atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- what is loaded, and when

@pytest.fixture
def reads(monkeypatch):
    """Every weight-file read after the stack is built, counted by file name (all the tiny
    components but the model are upstream .pth files, read through torch.load)."""
    import collections

    import torch

    count = collections.Counter()
    real = torch.load

    def counting(f, *a, **k):
        count[os.path.basename(os.fspath(f))] += 1
        return real(f, *a, **k)

    def start():
        monkeypatch.setattr(torch, "load", counting)
        return count
    return start


UMT5, WAN, MMVAE, VOC = "models_t5_umt5-xxl-enc-bf16.pth", "Wan2.2_VAE.pth", "v1-16.pth", "best_netG.pt"


def test_text_encoder_is_freed_after_encoding(ckpts, reads, monkeypatch):
    import gc
    import weakref

    import torch

    from harmony import umt5

    _, paths = ckpts
    pipe = assemble.load_stack(paths, size=(64, 64), device="cpu", log=_quiet)
    assert pipe.conditioner.model is None  # nothing of the encoder's weights after loading the stack
    # the embedding to expect: the same file, loaded and used here by hand
    enc = umt5.load_umt5(paths["text_encoder"], paths["tokenizer"], dtype=torch.float32, text_len=512)
    want, _ = enc.encode([umt5.ovi_prompt("a red ball bounces", "hello there", "two loud thud")])
    del enc
    count = reads()
    models = []
    real_load = umt5.load_umt5

    def spy(*a, **k):
        enc = real_load(*a, **k)
        models.append(weakref.ref(enc.model))
        return enc
    monkeypatch.setattr(umt5, "load_umt5", spy)

    cond = pipe.encode_text("a red ball bounces", "two loud thud", "hello there")
    gc.collect()
    assert count[UMT5] == 1 and len(models) == 1
    assert pipe.conditioner.model is None and models[0]() is None  # its parameters are gone
    torch.testing.assert_close(cond.video_context, want)
    # the same prompt again, and the empty prompt (CFG's unconditional side): kept, nothing re-read
    torch.testing.assert_close(pipe.encode_text("a red ball bounces", "two loud thud", "hello there").video_context,
                               want)
    assert pipe.encode_text("", "", "").video_context.abs().max() > 0
    assert count[UMT5] == 1
    # a new prompt reads the encoder again, and frees it again
    other = pipe.encode_text("two red ball", "", "")
    gc.collect()
    assert count[UMT5] == 2 and len(models) == 2 and models[1]() is None and pipe.conditioner.model is None
    assert not torch.equal(other.video_context, cond.video_context)
    assert set(count) == {UMT5}  # no codec was read for text


def test_codecs_are_read_when_needed_and_once(ckpts, reads):
    """T2AV: no codec for plain CFG; SyncCFG reads the MMAudio VAE (silence) and the Wan encoder (the
    blank frame, T2AV's first step); decoding reads the Wan decoder and the vocoder; nothing twice."""
    _, paths = ckpts
    pipe = assemble.load_stack(paths, size=(64, 64), device="cpu", log=_quiet)
    video, audio = pipe.codecs.video, pipe.codecs.audio
    assert all(p.is_meta for p in video.vae.parameters()) and audio.codec is None
    cond = pipe.encode_text("a red ball bounces", "", "")
    count = reads()
    pipe.sample(cond, seconds=1, steps=1, guidance="cfg")
    pipe.sample(cond, seconds=1, steps=1, guidance="none")
    assert sum(count.values()) == 0  # no codec, no text encoder (the empty prompt was kept)
    lat = pipe.sample(cond, seconds=1, steps=1, guidance="synccfg")
    assert dict(count) == {MMVAE: 1, WAN: 1} and video.loaded == {"encoder"}
    assert all(p.is_meta for p in video.vae.decoder.parameters()) and audio.codec.vocoder is None
    frames, wave, sr, fps = pipe.decode(lat)
    assert dict(count) == {MMVAE: 1, WAN: 2, VOC: 1} and video.loaded == {"encoder", "decoder"}
    assert not any(p.is_meta for p in video.vae.parameters())
    assert frames.shape == (25, 64, 64, 3) and sr == 16000 and fps == 24
    pipe.decode(pipe.sample(cond, seconds=1, steps=1, guidance="synccfg"))
    assert dict(count) == {MMVAE: 1, WAN: 2, VOC: 1}  # nothing read twice


def test_video_encoder_only_for_an_image_or_a_video(ckpts, reads):
    import torch

    _, paths = ckpts
    pipe = assemble.load_stack(paths, size=(64, 64), device="cpu", log=_quiet)
    video = pipe.codecs.video
    cond = pipe.encode_text("a red ball bounces", "", "")
    count = reads()
    wave = 0.1 * torch.randn(1, 16000, generator=torch.Generator().manual_seed(1))
    pipe.decode(pipe.sample(cond, seconds=1, steps=1, driving_audio=(wave, 16000)))  # A2V, SyncCFG
    assert video.loaded == {"decoder"} and dict(count) == {MMVAE: 1, WAN: 1, VOC: 1}
    image = torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(2))
    lat = pipe.sample(cond, seconds=1, steps=1, first_frame=image)  # I2AV: the image is held still
    assert video.loaded == {"encoder", "decoder"} and count[WAN] == 2
    assert pipe._blanks == {}  # no blank frame was needed
    frames = torch.rand(25, 64, 64, 3, generator=torch.Generator().manual_seed(3))
    pipe.sample(cond, seconds=1, steps=1, driving_video=(frames, 24.0))  # V2A
    assert dict(count) == {MMVAE: 1, WAN: 2, VOC: 1}
    assert lat.job == "I2AV"


def test_text_encoder_header_check_reads_comfyui_layouts(ckpts, tmp_path):
    """The stack reads the text encoder's config from the file's header (safetensors, or a mapped .pth)
    before any weight: ComfyUI's bf16 and scaled-fp8 files give the same config and embeddings as
    loading them in full."""
    import torch
    from safetensors.torch import save_file

    from harmony import umt5

    _, paths = ckpts
    hf = {umt5._wan_to_hf(k): v for k, v in rf.umt5_wan_state().items()}
    bf16 = tmp_path / "umt5_xxl_bf16.safetensors"
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in hf.items()}, str(bf16))
    scaled = {"scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn)}
    for k, v in hf.items():
        if v.dim() == 2 and "relative_attention_bias" not in k and k != "shared.weight":
            s = v.abs().max() / 448.0
            scaled[k], scaled[k[:-len("weight")] + "scale_weight"] = (v / s).to(torch.float8_e4m3fn), s.reshape(())
        else:
            scaled[k] = v
    fp8 = tmp_path / "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
    save_file(scaled, str(fp8))
    for path in (paths["text_encoder"], bf16, fp8):
        cond = umt5_conditioner.UMT5Conditioner(
            umt5_conditioner.UMT5File(path, paths["tokenizer"], dtype=torch.float32, log=_quiet), log=_quiet)
        assert cond.model is None  # checked from the header: nothing loaded
        assert (cond.dim, cond.encoder.config.num_layers, cond.encoder.config.num_heads) == (
            rf.UMT5_SIZE["dim"], rf.UMT5_SIZE["layers"], rf.UMT5_SIZE["heads"])
        got = cond(["a red ball bounces"], [""], ["hello there"], [None]).video_context
        want, _ = umt5.load_umt5(path, paths["tokenizer"], dtype=torch.float32).encode(
            [umt5.ovi_prompt("a red ball bounces", "hello there")])
        assert torch.equal(got, want) and cond.model is None


def test_wan_vae_halves_from_a_safetensors_file(ckpts, tmp_path):
    """ComfyUI's wan2.2_vae.safetensors form (here under a ``vae.`` prefix): each half read alone gives
    what the whole VAE, loaded in full, gives."""
    import torch
    from safetensors.torch import save_file

    from harmony.codecs.wan_vae import load_wan_vae

    _, paths = ckpts
    full = load_wan_vae(paths["video_vae"])
    st = tmp_path / "wan2.2_vae.safetensors"
    save_file({"vae." + k: v.contiguous() for k, v in torch.load(paths["video_vae"], weights_only=True).items()},
              str(st))
    lazy = lazy_codecs.LazyWanVAE(st, frame_size=(32, 32), log=_quiet)
    assert lazy.latent_channels == 48 and lazy.loaded == set()
    frames = torch.rand(1, 5, 32, 32, 3, generator=torch.Generator().manual_seed(4))
    z = lazy.encode(frames)
    assert lazy.loaded == {"encoder"} and all(p.is_meta for p in lazy.vae.decoder.parameters())
    torch.testing.assert_close(z, full.encode(frames), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lazy.decode(z), full.decode(z), atol=1e-5, rtol=1e-5)
    assert lazy.loaded == {"encoder", "decoder"}


# ------------------------------------------------------------------ issue 21: sizes, candidates, pairing, bad files


def test_size_has_an_upper_bound_from_the_memory_plan():
    gib = 2**30
    assert framesize.check_size_fits((704, 704), 5.0, memory=(24 * gib, "a 24 GiB card")) == (704, 704)
    with pytest.raises(ValueError) as e:
        framesize.check_size_fits((100000, 100000), 5.0, memory=(24 * gib, "a 24 GiB card"))
    msg = str(e.value)
    assert msg.startswith("--size: 100000x100000 is too large: one sampling step of a 5 s clip at this size "
                          "(302,734,375 video tokens) needs about")
    assert "by the memory plan (0.22 MiB per video token, SyncCFG at batch 3, weights not counted), more than a " \
           "24 GiB card; the largest square size that fits is about" in msg and msg.endswith("pass e.g. --size 704x704")


def test_generate_cli_refuses_a_huge_size_before_anything_loads(ckpts, tmp_path, capsys, monkeypatch):
    import harmony.__main__ as cli

    root, _ = ckpts
    monkeypatch.setattr(assemble, "load_stack", lambda *a, **k: pytest.fail("components loaded before the size check"))
    with pytest.raises(SystemExit) as e:
        cli.main(["generate", "--weights", str(root), "--size", "100000x100000", "--seconds", "5",
                  "-o", str(tmp_path / "x.mp4")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1
    assert "error: --size: 100000x100000 is too large: one sampling step of a 5 s clip" in err
    assert "the largest square size that fits is about" in err


def test_api_size_goes_through_the_same_check(ckpts, monkeypatch):
    from harmony import checkpoint

    _, paths = ckpts
    monkeypatch.setattr(checkpoint, "load_model", lambda *a, **k: pytest.fail("the model was loaded first"))
    with pytest.raises(ValueError, match=r"^size: -32x64: height and width must be positive multiples of 32 .*; "
                                         r"pass e\.g\. size=\(704, 704\)$"):
        assemble.load_stack(paths, size=(-32, 64), device="cpu", log=lambda m: None)
    with pytest.raises(ValueError, match=r"^size=\(64\.0, 64\): expected \(height, width\) as two whole numbers"):
        assemble.load_stack(paths, size=(64.0, 64), device="cpu", log=lambda m: None)
    with pytest.raises(ValueError, match=r"^size: 100000x100000 is too large"):
        assemble.load_stack(paths, size=(100000, 100000), device="cpu", log=lambda m: None)


def test_two_candidates_in_the_weights_folder_are_an_error(ckpts, tmp_path):
    _, paths = ckpts
    for d in ("a/Ovi", "b/Ovi"):
        (tmp_path / d).mkdir(parents=True)
        (tmp_path / d / "model.safetensors").write_bytes(b"x")
    with pytest.raises(components.ComponentError) as e:
        components.resolve(_args(weights=str(tmp_path), **{k: v for k, v in paths.items() if k != "model"}))
    msg = str(e.value)
    assert msg.startswith(f"--weights {tmp_path}: 2 candidates for --model (")
    assert str(tmp_path / "a/Ovi/model.safetensors") in msg and str(tmp_path / "b/Ovi/model.safetensors") in msg
    assert "will not pick one silently: choose with --model FILE" in msg
    # one file matching two usual names (Ovi/model.safetensors, model.safetensors) is one candidate
    (tmp_path / "b/Ovi/model.safetensors").unlink()
    assert components.resolve(_args(weights=str(tmp_path), **{k: v for k, v in paths.items() if k != "model"}))["model"] \
        == str(tmp_path / "a/Ovi/model.safetensors")


@pytest.mark.parametrize("key,make,pattern", [
    ("text_encoder", "narrow_umt5", r"^--text-encoder .* gives 48-wide embeddings but the --model .* video tower "
                                    r"reads 32: they are not a pair"),
    ("video_vae", "wan21_channels", r"^--video-vae .* has 16 latent channels, the --model .* video tower reads 48: "
                                    r"use the Wan2\.2 VAE"),
])
def test_pairing_is_checked_from_headers_before_the_model_loads(ckpts, tmp_path, monkeypatch, key, make, pattern):
    import torch

    from harmony import checkpoint
    from harmony.codecs.wan_vae import WanVAE

    _, paths = ckpts
    path = tmp_path / ("umt5.pth" if key == "text_encoder" else "vae.pth")
    if make == "narrow_umt5":
        torch.save({k: v.to(torch.bfloat16) for k, v in rf.umt5_wan_state(dim=48).items()}, path)
    else:  # the Wan2.2 layout with the Wan2.1 VAE's 16 latent channels
        torch.save(WanVAE(dim=6, dec_dim=8, z_dim=16).state_dict(), path)
    monkeypatch.setattr(checkpoint, "load_model", lambda *a, **k: pytest.fail("the model was loaded first"))
    with pytest.raises(components.ComponentError, match=pattern):
        assemble.load_stack({**paths, key: str(path)}, size=(64, 64), device="cpu", log=lambda m: None)


def _corrupt(path, case):
    import json
    import struct

    entries = {"truncated": {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}},
               "offset past the end": {"w": {"dtype": "F32", "shape": [4], "data_offsets": [1 << 40, (1 << 40) + 16]}},
               "F7_WHAT": {"w": {"dtype": "F7_WHAT", "shape": [4], "data_offsets": [0, 16]}},
               "10^12 elements": {"w": {"dtype": "BF16", "shape": [10**6, 10**6], "data_offsets": [0, 16]}}}[case]
    text = json.dumps(entries).encode()
    data = bytes(8 if case == "truncated" else 16)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return str(path)


@pytest.mark.parametrize("case,pattern", [("truncated", r"truncated: .*; download it again$"),
                                          ("offset past the end", r"truncated: .*past the end of the file"),
                                          ("F7_WHAT", r"has dtype 'F7_WHAT', which is not one this reader knows"),
                                          ("10^12 elements", r"1,000,000,000,000 values.*data_offsets span 16 bytes")])
@pytest.mark.parametrize("key,name", [("model", "model.safetensors"), ("text_encoder", "umt5_xxl_bf16.safetensors"),
                                      ("video_vae", "wan2.2_vae.safetensors"), ("audio_vae", "v1-16.safetensors"),
                                      ("vocoder", "best_netG.safetensors")])
def test_corrupt_component_file_names_its_flag(ckpts, tmp_path, monkeypatch, case, pattern, key, name):
    from harmony import checkpoint
    from harmony.weightfile import WeightFileError

    _, paths = ckpts
    bad = _corrupt(tmp_path / name, case)
    flag = components.component(key).flag
    monkeypatch.setattr(checkpoint, "load_model", lambda *a, **k: pytest.fail("the model was loaded first"))
    with pytest.raises(WeightFileError, match=rf"^{flag} {bad}: .*{pattern}") as e:
        assemble.load_stack({**paths, key: bad}, size=(64, 64), device="cpu", log=lambda m: None)
    assert e.value.what == flag and isinstance(e.value, ValueError)  # the CLI: one line, exit 2
