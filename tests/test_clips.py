"""The real-clip dataset (harmony.clips): a folder of mp4s with sidecars, encoded once with the tiny
real-layout Wan2.2 VAE, MMAudio VAE and umT5 into a sharded latent cache, and trained on.

``pytest -k clip_folder`` selects these tests."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from harmony import media  # noqa: E402
from harmony.clips import ClipCache, ClipError, Encoders, encode_folder, read_sidecar  # noqa: E402

from realfiles import write_ovi_ckpts  # noqa: E402

SIZE = (32, 32)
SECONDS = 1.0
GOOD = {"a.mp4": {"prompt": "a red ball bounces", "caption": "two loud thud", "transcript": "hello there"},
        "b.mp4": {"prompt": "a ball", "caption": "thud", "transcript": "hello"},
        "sub/c.mp4": {"prompt": "two red ball", "caption": "loud", "transcript": ""}}
BAD_KINDS = {"silent.mp4": "no audio", "short.mp4": "too short", "broken.mp4": "undecodable",
             "nofield.mp4": "sidecar", "nosidecar.mp4": "no sidecar"}


def _clip(seconds, fps, hw, sr, channels, seed):
    """Moving pattern frames [F, H, W, 3] and a tone [C, T]."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * fps))
    h, w = hw
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    frames = np.stack([np.stack([np.sin(6 * x + 0.3 * i + c) * 0.4 + 0.5 + 0.05 * rng.standard_normal((h, w))
                                 for c in range(3)], -1) for i in range(n)]).clip(0, 1).astype(np.float32)
    t = np.arange(int(seconds * sr)) / sr
    wave = np.stack([0.3 * np.sin(2 * math.pi * (220 + 110 * c + 40 * seed) * t) for c in range(channels)])
    return frames, wave.astype(np.float32)


def _write(folder, name, sidecar=None, seconds=1.5, fps=24, hw=SIZE, sr=16000, channels=1, audio=True, seed=0,
           csv=False):
    path = os.path.join(folder, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    frames, wave = _clip(seconds, fps, hw, sr, channels, seed)
    media.write_mp4(path, frames, fps, wave if audio else None, sr)
    if sidecar is not None:
        stem = os.path.splitext(path)[0]
        if csv:
            import csv as csv_module

            with open(stem + ".csv", "w", newline="") as fh:
                wr = csv_module.DictWriter(fh, fieldnames=list(sidecar))
                wr.writeheader()
                wr.writerow(sidecar)
        else:
            with open(stem + ".json", "w") as fh:
                json.dump(sidecar, fh)
    return path


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    folder = os.path.join(root, "clips")
    os.makedirs(folder)
    paths = write_ovi_ckpts(os.path.join(root, "ckpts"))
    _write(folder, "a.mp4", GOOD["a.mp4"], seed=1)
    _write(folder, "b.mp4", GOOD["b.mp4"], fps=30, hw=(40, 48), sr=44100, channels=2, seed=2, csv=True)
    _write(folder, "sub/c.mp4", GOOD["sub/c.mp4"], seconds=1.3, seed=3)
    _write(folder, "silent.mp4", GOOD["a.mp4"], audio=False, seed=4)
    _write(folder, "short.mp4", GOOD["a.mp4"], seconds=0.5, seed=5)
    with open(os.path.join(folder, "broken.mp4"), "wb") as fh:
        fh.write(np.random.default_rng(0).bytes(4000))
    with open(os.path.join(folder, "broken.json"), "w") as fh:
        json.dump(GOOD["a.mp4"], fh)
    _write(folder, "nofield.mp4", {"prompt": "a ball", "caption": "thud"}, seed=6)
    _write(folder, "nosidecar.mp4", None, seed=7)
    return folder, paths


def _encoders(paths):
    return Encoders(paths["video_vae"], paths["audio_vae"], paths["text_encoder"], paths["tokenizer"])


@pytest.fixture(scope="module")
def cache(clip_folder, tmp_path_factory):
    """Encoded by two processes: rank 0 through the CLI with torchrun's RANK / WORLD_SIZE, rank 1 by
    the API with explicit arguments."""
    from harmony.__main__ import main

    folder, paths = clip_folder
    out = os.path.join(tmp_path_factory.mktemp("cache"), "cache")
    env = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE")}
    os.environ.update(RANK="0", WORLD_SIZE="2")
    try:
        main(["encode-clips", folder, "--out", out, "--video-vae", paths["video_vae"], "--audio-vae",
              paths["audio_vae"], "--text-encoder", paths["text_encoder"], "--seconds", str(SECONDS),
              "--size", "32x32", "--shard-clips", "1", "--device", "cpu"])
    finally:
        for k, v in env.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    assert not os.path.exists(os.path.join(out, "index.json"))  # rank 1 has not run yet
    with pytest.raises(FileNotFoundError, match="r000-of-002.json"):
        ClipCache(out)
    encode_folder(folder, out, _encoders(paths), SECONDS, SIZE, rank=1, world=2, log=lambda m: None)
    return out, paths, folder


def test_clip_folder_sidecars(tmp_path):
    video = tmp_path / "x.mp4"
    with pytest.raises(ClipError, match="no sidecar"):
        read_sidecar(video)
    (tmp_path / "x.csv").write_text("prompt,caption,transcript\na ball,thud,\n")
    assert read_sidecar(video) == {"prompt": "a ball", "caption": "thud", "transcript": ""}
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ClipError, match="both a .json and a .csv"):
        read_sidecar(video)
    (tmp_path / "x.csv").unlink()
    (tmp_path / "x.json").write_text('{"prompt": "a", "caption": 3}')
    with pytest.raises(ClipError, match="lacks caption, transcript"):
        read_sidecar(video)
    (tmp_path / "x.json").write_text('{"prompt": "a"')
    with pytest.raises(ClipError, match="unreadable"):
        read_sidecar(video)


@pytest.mark.slow
def test_clip_folder_cache_lists_bad_clips_and_shards_by_rank(cache):
    out, _, _ = cache
    index = json.load(open(os.path.join(out, "index.json")))
    files = sorted(list(GOOD) + list(BAD_KINDS))
    assert index["world"] == 2 and index["settings"]["files"] == len(files)
    assert [c["file"] for c in index["clips"]] == sorted(GOOD)
    assert {s["file"]: s["kind"] for s in index["skipped"]} == BAD_KINDS
    assert index["skipped_by_kind"] == {k: 1 for k in BAD_KINDS.values()}
    assert "needs 1.04 s" in next(s["reason"] for s in index["skipped"] if s["kind"] == "too short")
    for c in index["clips"]:  # rank r encoded the clips whose sorted position is r mod 2
        assert c["id"] == files.index(c["file"]) and c["shard"].startswith(f"r00{c['id'] % 2}-of-002-")
        assert {k: c[k] for k in ("prompt", "caption", "transcript")} == GOOD[c["file"]]
    s = index["settings"]  # the Wan2.2 geometry of 1 s at 24 fps: 25 frames (4k+1), 7 latent frames
    assert (s["n_frames"], s["video_latent"], s["audio_latent"]) == (25, [48, 7, 2, 2], [32, 20])


@pytest.mark.slow
def test_clip_folder_cache_equals_encoding_the_clip_directly(cache):
    """Clip a.mp4 (24 fps, 32x32, 16 kHz: nothing to resample or fit) read and encoded by hand."""
    from safetensors import safe_open

    from harmony.codecs.mmaudio import MMAudioCodec
    from harmony.codecs.mmaudio_vae import load_mmaudio_vae
    from harmony.codecs.wan_vae import load_wan_vae
    from harmony.umt5 import load_umt5, ovi_prompt

    out, paths, folder = cache
    index = json.load(open(os.path.join(out, "index.json")))
    entry = next(c for c in index["clips"] if c["file"] == "a.mp4")
    frames, fps, wave, sr = media.read_video(os.path.join(folder, "a.mp4"))
    assert (fps, sr, wave.shape[0]) == (24.0, 16000, 1)
    with torch.no_grad():
        v = load_wan_vae(paths["video_vae"]).encode(torch.from_numpy(frames[:25])[None])[0]
        a = MMAudioCodec(load_mmaudio_vae(paths["audio_vae"])).encode(torch.from_numpy(wave[0, :16000])[None])[0]
    side = GOOD["a.mp4"]
    emb, n = load_umt5(paths["text_encoder"], paths["tokenizer"], dtype=torch.float32).encode(
        [ovi_prompt(side["prompt"], side["transcript"], side["caption"])])
    with safe_open(os.path.join(out, entry["shard"]), "pt") as fh:
        j = entry["id"]
        torch.testing.assert_close(fh.get_tensor(f"video.{j}"), v, rtol=0, atol=1e-6)
        torch.testing.assert_close(fh.get_tensor(f"audio.{j}"), a, rtol=0, atol=1e-6)
        torch.testing.assert_close(fh.get_tensor(f"text.{j}"), emb[0, : int(n[0])], rtol=0, atol=1e-6)
    assert v.abs().sum() > 0 and a.abs().sum() > 0


@pytest.mark.slow
def test_clip_folder_trains_two_steps_on_the_cache(cache, tmp_path, capsys):
    """From an Ovi-layout file (--init-from), as a real fine-tune starts."""
    from harmony.config import apply_overrides, get_config
    from harmony.train import main as train_main
    from realfiles import random_model, write_ovi, write_ovi_configs

    out, _, _ = cache
    overrides = "dim=64,ffn_dim=128,num_heads=2,num_layers=2,text_dim=32"
    cfg = apply_overrides(get_config("5b-global"), overrides)
    clips = ClipCache(out)
    with pytest.raises(ValueError, match="video text width: cache 32, model 64"):
        clips.check(apply_overrides(get_config("5b-global"), "dim=64,num_heads=2,text_dim=64"))
    pool = clips.pool(seed=0, rank=1, world=2)  # training process 1 of 2 holds clips 1, 3, ...
    assert pool.size == 1 and pool.data["prompt"] == [clips.index["clips"][1]["prompt"]]
    text = clips.text(cfg)
    c = clips.index["clips"][0]
    cond = text([c["prompt"], ""], [c["caption"], ""], [c["transcript"], ""])
    n = text.texts[c["text"]].shape[0]
    assert cond.video_context.shape == (2, 512, 32) and cond.ref_audio is None
    assert torch.equal(cond.video_context[0, :n], text.texts[c["text"]]) and not cond.video_context[0, n:].any()
    assert torch.equal(cond.video_context[1, : text.texts[""].shape[0]], text.texts[""])  # dropped text

    with pytest.raises(SystemExit):
        train_main(["--clip-cache", out, "--latents", "pool.safetensors"])
    assert "--clip-cache and --latents: give one" in capsys.readouterr().err
    ovi = write_ovi(str(tmp_path / "model.safetensors"), random_model(cfg, seed=3))
    write_ovi_configs(str(tmp_path), cfg)
    run = str(tmp_path / "run")
    capsys.readouterr()
    train_main(["--clip-cache", out, "--config", "5b-global", "--overrides", overrides, "--steps", "2",
                "--batch", "2", "--warmup", "1", "--log-every", "1", "--out", run, "--init-from", ovi])
    said = capsys.readouterr().out
    assert "init-from Ovi: text path: the clip cache's umT5 embeddings (32 wide, frozen)" in said
    assert "word-level" not in said
    rows = [json.loads(line) for line in open(os.path.join(run, "train_log.jsonl"))]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(math.isfinite(r[k]) for r in rows for k in ("loss", "joint", "a2v", "v2a"))
    from safetensors import safe_open

    with safe_open(os.path.join(run, "harmony_tiny.safetensors"), "pt") as fh:
        meta = json.loads(fh.metadata()["harmony_config"])["meta"]
    assert meta["trained_seconds"] == SECONDS and meta["clip_cache"] == out
    # the geometry of the cache's codecs (Wan2.2 VAE, MMAudio) and Ovi's clip limit, not the toy codecs'
    assert (meta["video_fps"], meta["audio_sample_rate"], meta["max_seconds"]) == (24, 16000, 5.0)
