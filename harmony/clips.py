"""Real clips for training: a folder of videos with sidecars, encoded once into a latent cache.

``python -m harmony encode-clips FOLDER --out CACHE --video-vae … --audio-vae … --text-encoder …``
reads every video under ``FOLDER`` (``.mp4`` / ``.mov`` / ``.mkv`` / ``.webm``, sorted by path)
with a sidecar beside it, ``clip.json`` (``{"prompt": …, "caption": …, "transcript": …}``) or
``clip.csv`` (a header row ``prompt,caption,transcript`` and one row), and writes:

- ``CACHE/r<rank>-of-<N>-s<k>.safetensors``: per clip ``video.<id>`` (Wan2.2 VAE latent
  ``[48, F, h, w]``), ``audio.<id>`` (MMAudio latent ``[L, 20]``), ``text.<id>`` (the umT5
  embedding of Ovi's one-string prompt, cut to its tokens ``[n, dim]``), and ``text.empty``
  (the empty prompt: the trainer's text dropout);
- ``CACHE/r<rank>-of-<N>.json``: that process's clips and skipped files with reasons;
- ``CACHE/index.json``: all parts merged, written by the process that finishes last.

Every clip is cut to ``--seconds`` at the codecs' rates and geometry
(:func:`harmony.jobs.clip_geometry`: 24 fps, 4k+1 frames, 16 kHz mono) and fitted to
``--size``. A bad clip (no sidecar or a field missing, undecodable, no audio, too short) is
listed with its reason and skipped, never fatal. Process ``rank`` of ``N`` encodes every N-th
clip (``--rank/--world-size``, or ``RANK``/``WORLD_SIZE`` as torchrun sets them); the text
encoder runs first and is freed before the VAEs are read.

``python -m harmony train --clip-cache CACHE`` trains on it: :class:`ClipCache` checks it
against the model's config, :meth:`ClipCache.pool` gives the trainer's ``LatentPool`` of
the clips (training process r of W holds clips r, r+W, …) and :class:`CachedText` stands in
for the trainer's text encoder (umT5 is frozen: its stored embeddings are used).
"""
from __future__ import annotations

import csv
import json
import os
import time
from typing import Callable, Optional

import torch
import torch.nn as nn

from .train_data import LatentPool

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm")
SIDECAR_FIELDS = ("prompt", "caption", "transcript")
"""A sidecar's fields: what is seen, what is heard (the audio caption), the words spoken
(caption and transcript may be empty strings; every field must be there)."""
INDEX = "index.json"
FORMAT = "harmony-clip-cache"
STORE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


class ClipError(ValueError):
    """A clip that cannot be used; ``kind`` sorts the reasons (``no sidecar``, ``sidecar``,
    ``undecodable``, ``no video``, ``no audio``, ``too short``)."""

    def __init__(self, kind: str, detail: str = ""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


# --------------------------------------------------------------------------- the folder

def find_clips(folder) -> list:
    """Paths (relative to ``folder``, '/'-separated, sorted) of every video under it."""
    base = os.fspath(folder)
    found = []
    for root, dirs, files in os.walk(base):
        dirs.sort()
        found += [os.path.relpath(os.path.join(root, f), base).replace(os.sep, "/") for f in files
                  if f.lower().endswith(VIDEO_SUFFIXES)]
    return sorted(found)


def read_sidecar(video_path) -> dict:
    """The ``.json`` or ``.csv`` beside ``video_path`` -> ``{prompt, caption, transcript}`` (strings);
    a :class:`ClipError` when there is none, two, or a field is missing or not text."""
    stem = os.path.splitext(os.fspath(video_path))[0]
    have = [stem + s for s in (".json", ".csv") if os.path.isfile(stem + s)]
    if not have:
        raise ClipError("no sidecar", f"put {os.path.basename(stem)}.json or .csv beside the video")
    if len(have) > 1:
        raise ClipError("sidecar", "both a .json and a .csv; keep one")
    path = have[0]
    try:
        if path.endswith(".json"):
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        else:
            with open(path, newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
            if len(rows) != 1:
                raise ClipError("sidecar", f"{os.path.basename(path)} has {len(rows)} data rows, expected "
                                "a header row and one row")
            data = rows[0]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as e:
        raise ClipError("sidecar", f"{os.path.basename(path)} unreadable ({e})") from None
    if not isinstance(data, dict):
        raise ClipError("sidecar", f"{os.path.basename(path)} is not an object with {', '.join(SIDECAR_FIELDS)}")
    missing = [k for k in SIDECAR_FIELDS if not isinstance(data.get(k), str)]
    if missing:
        raise ClipError("sidecar", f"{os.path.basename(path)} lacks {', '.join(missing)} (text fields "
                        f"{', '.join(SIDECAR_FIELDS)}; an empty string is allowed for caption and transcript)")
    if not data["prompt"].strip():
        raise ClipError("sidecar", f"{os.path.basename(path)} has an empty prompt")
    return {k: data[k] for k in SIDECAR_FIELDS}


def load_clip(path, geometry, fps: float, sample_rate: int, size, fit: str = "crop"):
    """A clip's first ``geometry.seconds`` at the codecs' rates: ``(frames [n_frames, H, W, 3]`` 0..1
    float tensor, ``wave [round(seconds * sample_rate)]`` mono float tensor); a :class:`ClipError`
    when it cannot be decoded, lacks a stream or is too short."""
    from . import media

    n_frames = geometry.n_frames
    try:
        info = media.probe(path)
        if info["video"] is None:
            raise ClipError("no video", "the file has no video stream")
        if info["audio"] is None:
            raise ClipError("no audio", "the file has no audio stream")
        frames, src_fps, wave, src_sr = media.read_video(path, max_seconds=n_frames / fps + 0.25)
    except media.MediaError as e:
        raise ClipError("undecodable", str(e).splitlines()[0][:300]) from None
    need = n_frames / fps
    frames = media.resample_video(frames, src_fps, fps, max_frames=n_frames)
    if frames.shape[0] < n_frames:
        raise ClipError("too short", f"{frames.shape[0] / fps:.2f} s of video, needs {need:.2f} s "
                        f"({n_frames} frames at {fps:g} fps for --seconds {geometry.seconds:g})")
    wave = media.resample_audio(media.to_mono(wave), src_sr, sample_rate)[0]
    n_samples = int(round(geometry.seconds * sample_rate))
    # an audio track a frame shorter than the picture (codec padding) is padded with silence
    if wave.shape[0] < n_samples - sample_rate / fps:
        raise ClipError("too short", f"{wave.shape[0] / sample_rate:.2f} s of audio, needs "
                        f"{geometry.seconds:g} s")
    wave = torch.nn.functional.pad(torch.from_numpy(wave[:n_samples]), (0, max(0, n_samples - wave.shape[0])))
    frames = media.fit_frames(torch.from_numpy(frames), size[0], size[1], fit)
    return frames.float(), wave.float()


# --------------------------------------------------------------------------- encoding

class Encoders:
    """The three encoders of a cache, read with the codecs' and umT5's own loaders:
    the Wan2.2 VAE (:func:`harmony.codecs.wan_vae.load_wan_vae`), the MMAudio VAE
    (:func:`harmony.codecs.mmaudio_vae.load_mmaudio_vae`; no vocoder is needed to encode) and
    umT5 (:func:`harmony.umt5.load_umt5`), each read only when first used; umT5 can be freed."""

    def __init__(self, video_vae, audio_vae, text_encoder, tokenizer=None, device="cpu",
                 text_dtype: Optional[torch.dtype] = None):
        self.paths = {"video_vae": os.fspath(video_vae), "audio_vae": os.fspath(audio_vae),
                      "text_encoder": os.fspath(text_encoder)}
        if tokenizer is None:  # where Wan2.2-TI2V-5B keeps it (as harmony.components.resolve looks)
            tokenizer = os.path.join(os.path.dirname(self.paths["text_encoder"]), "google", "umt5-xxl")
        self.paths["tokenizer"] = os.fspath(tokenizer)
        for key, path in self.paths.items():
            ok = os.path.isdir(path) if key == "tokenizer" else os.path.isfile(path)
            if not ok:
                raise FileNotFoundError(f"--{key.replace('_', '-')}: {'folder' if key == 'tokenizer' else 'file'} "
                                        f"not found: {path}")
        self.device = torch.device(device)
        self.text_dtype = text_dtype or (torch.float32 if self.device.type == "cpu" else torch.bfloat16)
        self._video = self._audio = self._text = None

    @property
    def video(self):
        from .codecs.wan_vae import load_wan_vae

        if self._video is None:
            self._video = load_wan_vae(self.paths["video_vae"], device=self.device)
        return self._video

    @property
    def audio(self):
        from .codecs.mmaudio import MMAudioCodec
        from .codecs.mmaudio_vae import load_mmaudio_vae

        if self._audio is None:
            self._audio = MMAudioCodec(load_mmaudio_vae(self.paths["audio_vae"], device=self.device)).eval()
        return self._audio

    @property
    def text(self):
        from .umt5 import load_umt5

        if self._text is None:
            self._text = load_umt5(self.paths["text_encoder"], self.paths["tokenizer"], dtype=self.text_dtype,
                                   device=self.device)
        return self._text

    def free_text(self):
        if self._text is not None:
            self._text.release()
            self._text = None

    @torch.no_grad()
    def encode_text(self, text: str) -> torch.Tensor:
        """umT5 embedding ``[n_tokens, dim]`` float32 of one string (alone: no padding involved)."""
        emb, lengths = self.text.encode([text])
        return emb[0, : int(lengths[0])].float().cpu()


def process_rank(rank: Optional[int] = None, world: Optional[int] = None) -> tuple:
    """``(rank, world)``: the given values, else torch.distributed's ``RANK`` / ``WORLD_SIZE``
    environment variables (torchrun, accelerate), else ``(0, 1)``."""
    world = int(os.environ.get("WORLD_SIZE", "1")) if world is None else int(world)
    rank = int(os.environ.get("RANK", "0")) if rank is None else int(rank)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank {rank} of world size {world}: need world size >= 1 and 0 <= rank < world size "
                         "(--rank / --world-size, or RANK / WORLD_SIZE)")
    return rank, world


def _part(rank: int, world: int) -> str:
    return f"r{rank:03d}-of-{world:03d}"


def encode_folder(folder, out, encoders: Encoders, seconds: float, size=None, rank: Optional[int] = None,
                  world: Optional[int] = None, fit: str = "crop", caption_tags: str = "audio",
                  store: str = "fp32", shard_clips: int = 64, log: Callable[[str], None] = print) -> dict:
    """Encode this process's share of ``folder`` into ``out`` (see the module docstring) and
    return its part record; ``index.json`` is written once every part is there."""
    from .jobs import clip_geometry
    from .framesize import parse_size
    from .umt5 import ovi_prompt

    t0 = time.time()
    rank, world = process_rank(rank, world)
    size = parse_size(size, via="api")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"clip folder not found: {folder}")
    files = find_clips(folder)
    if not files:
        raise ValueError(f"clip folder {folder} holds no video ({', '.join(VIDEO_SUFFIXES)}); give the folder "
                         "of clips with their .json / .csv sidecars")
    if store not in STORE_DTYPES:
        raise ValueError(f"store dtype {store!r}: use one of {', '.join(STORE_DTYPES)}")
    os.makedirs(out, exist_ok=True)
    _check_same(out, None, world)  # before any compute; the settings again once the encoders are read
    mine = list(range(rank, len(files), world))
    clips, skipped, texts = [], [], {}
    for i in mine:  # sidecars first: the text encoder then runs once over every text, and is freed
        try:
            side = read_sidecar(os.path.join(folder, files[i]))
        except ClipError as e:
            skipped.append({"file": files[i], "kind": e.kind, "reason": str(e)})
            log(f"skipped {files[i]}: {e}")
            continue
        key = ovi_prompt(side["prompt"], side["transcript"], side["caption"], caption_tags)
        clips.append({"id": i, "file": files[i], **side, "text": key})
        texts.setdefault(key, None)
    texts[""] = None
    log(f"rank {rank}/{world}: {len(mine)} of {len(files)} files; encoding {len(texts)} texts with umT5")
    for key in texts:
        texts[key] = encoders.encode_text(key)
    text_len = encoders.text.text_len
    encoders.free_text()
    dim = int(texts[""].shape[-1])
    video, audio = encoders.video, encoders.audio
    geo = clip_geometry(seconds, video.fps, size, video, audio)
    settings = {"seconds": geo.seconds, "frame_size": list(size), "fps": video.fps,
                "sample_rate": audio.sample_rate, "n_frames": geo.n_frames, "video_latent": list(geo.video),
                "audio_latent": [geo.n_audio, geo.audio_channels], "text_dim": dim, "text_len": text_len,
                "caption_tags": caption_tags, "fit": fit, "dtype": store, "files": len(files),
                "components": {k: os.path.basename(v) for k, v in encoders.paths.items()}}
    _check_same(out, settings, world)
    dt, kept, shard, n_shard = STORE_DTYPES[store], [], {}, 0

    def flush():
        nonlocal shard, n_shard
        if shard:
            from .weightfile import save_safetensors

            name = f"{_part(rank, world)}-s{n_shard:04d}.safetensors"
            shard["text.empty"] = texts[""].to(dt)
            save_safetensors({k: v.contiguous() for k, v in shard.items()}, os.path.join(out, name),
                             {"format": FORMAT})
            for c in kept:
                c.setdefault("shard", name)
            shard, n_shard = {}, n_shard + 1

    for c in clips:
        try:
            frames, wave = load_clip(os.path.join(folder, c["file"]), geo, video.fps, audio.sample_rate, size, fit)
        except ClipError as e:
            skipped.append({"file": c["file"], "kind": e.kind, "reason": str(e)})
            log(f"skipped {c['file']}: {e}")
            continue
        with torch.no_grad():
            v = video.encode(frames[None].to(encoders.device))[0].float().cpu()
            a = audio.encode(wave[None].to(encoders.device))[0].float().cpu()
        if tuple(v.shape) != tuple(geo.video) or tuple(a.shape) != (geo.n_audio, geo.audio_channels):
            raise RuntimeError(f"{c['file']}: latents {tuple(v.shape)} / {tuple(a.shape)} do not have the clip "
                               f"geometry {geo.video} / {(geo.n_audio, geo.audio_channels)} (codec bug)")
        j = c["id"]
        shard.update({f"video.{j}": v.to(dt), f"audio.{j}": a.to(dt), f"text.{j}": texts[c["text"]].to(dt)})
        kept.append(c)
        log(f"encoded {c['file']}")
        if len(shard) >= 3 * shard_clips:
            flush()
    flush()
    record = {"format": FORMAT, "rank": rank, "world": world, "settings": settings, "clips": kept,
              "skipped": sorted(skipped, key=lambda s: s["file"]), "wall_s": round(time.time() - t0, 2)}
    _write_json(os.path.join(out, _part(rank, world) + ".json"), record)
    kinds = _kinds(record["skipped"])
    log(f"rank {rank}/{world}: {len(kept)} clips encoded, {len(skipped)} skipped"
        + (f" ({', '.join(f'{k}: {n}' for k, n in kinds.items())})" if kinds else "")
        + f" in {record['wall_s']:.1f} s")
    index = merge_index(out, world)
    log(f"index: {os.path.join(out, INDEX)}" if index else "index: waiting for the other ranks' parts")
    return record


def _kinds(skipped) -> dict:
    out: dict = {}
    for s in skipped:
        out[s["kind"]] = out.get(s["kind"], 0) + 1
    return dict(sorted(out.items()))


def _write_json(path, obj):
    from .files import atomic_path

    with atomic_path(path, ".json") as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=1, ensure_ascii=False)


def _parts(out) -> list:
    return sorted(f for f in os.listdir(out) if f.startswith("r") and "-of-" in f and f.endswith(".json"))


def _check_same(out, settings, world):
    """A cache folder is filled by one run's settings and world size (a re-run replaces parts)."""
    for name in _parts(out) + ([INDEX] if os.path.isfile(os.path.join(out, INDEX)) else []):
        with open(os.path.join(out, name), encoding="utf-8") as fh:
            rec = json.load(fh)
        if rec.get("world") != world or (settings is not None and rec.get("settings") != settings):
            raise ValueError(f"--out {out}: {name} was written with other settings or another world size "
                             f"(world {rec.get('world')}, settings {rec.get('settings')}); use an empty folder")


def merge_index(out, world: int) -> Optional[dict]:
    """``index.json`` from every part ``r<i>-of-<world>.json`` once all are there (else None)."""
    names = [_part(r, world) + ".json" for r in range(world)]
    if not all(os.path.isfile(os.path.join(out, n)) for n in names):
        return None
    recs = []
    for n in names:
        with open(os.path.join(out, n), encoding="utf-8") as fh:
            recs.append(json.load(fh))
    clips = sorted((c for r in recs for c in r["clips"]), key=lambda c: c["id"])
    skipped = sorted((s for r in recs for s in r["skipped"]), key=lambda s: s["file"])
    index = {"format": FORMAT, "world": world, "settings": recs[0]["settings"], "encoded": len(clips),
             "skipped_count": len(skipped), "skipped_by_kind": _kinds(skipped),
             "wall_s_per_rank": [r["wall_s"] for r in recs], "clips": clips, "skipped": skipped}
    _write_json(os.path.join(out, INDEX), index)
    return index


# --------------------------------------------------------------------------- training on a cache

class CachedText(nn.Module):
    """The trainer's text encoder for a clip cache: each clip's stored umT5 embedding (frozen,
    no parameters), zero-padded to ``text_len`` and given to both towers as Ovi does; text
    dropped by the trainer (empty prompt, caption, transcript) gets the empty prompt's embedding."""

    def __init__(self, texts: dict, text_len: int, caption_tags: str = "audio"):
        super().__init__()
        self.texts, self.text_len, self.caption_tags = texts, int(text_len), caption_tags
        dim = next(iter(texts.values())).shape[-1]
        self.text_path = (f"text path: the clip cache's umT5 embeddings ({dim} wide, frozen), the same string "
                          "to both towers as Ovi's inference builds it; no text encoder is trained")

    def forward(self, prompts, captions, transcripts, refs=None, device=None):
        from .model import Conditioning
        from .umt5 import ovi_prompt

        keys = [ovi_prompt(p, t, c, self.caption_tags) for p, c, t in zip(prompts, captions, transcripts)]
        unknown = [k for k in keys if k not in self.texts]
        if unknown:
            raise KeyError(f"text {unknown[0]!r} is not in the clip cache (only the clips' own texts are)")
        emb = torch.zeros(len(keys), self.text_len, next(iter(self.texts.values())).shape[-1])
        for i, k in enumerate(keys):
            e = self.texts[k][: self.text_len]
            emb[i, : e.shape[0]] = e.float()
        emb = emb.to(device) if device is not None else emb
        return Conditioning(emb, emb.clone(), None)


class ClipCache:
    """A cache written by :func:`encode_folder`, opened for training (``--clip-cache``)."""

    def __init__(self, folder, flag: str = "--clip-cache"):
        self.folder, self.flag = os.fspath(folder), flag
        path = os.path.join(self.folder, INDEX)
        if not os.path.isdir(self.folder):
            raise FileNotFoundError(f"{flag}: folder not found: {self.folder}; make it with python -m harmony "
                                    "encode-clips FOLDER --out CACHE")
        if not os.path.isfile(path):
            parts = _parts(self.folder)
            raise FileNotFoundError(f"{flag} {self.folder}: no {INDEX} (parts present: {', '.join(parts) or 'none'})"
                                    "; every rank of encode-clips must finish (run the missing --rank values)")
        with open(path, encoding="utf-8") as fh:
            self.index = json.load(fh)
        if self.index.get("format") != FORMAT:
            raise ValueError(f"{flag} {path} is not a clip-cache index (format {self.index.get('format')!r})")
        if not self.index["clips"]:
            raise ValueError(f"{flag} {self.folder}: no clip was encoded ({self.index['skipped_count']} skipped; "
                             f"reasons in {path})")
        self.settings = self.index["settings"]
        self.seconds = float(self.settings["seconds"])

    def check(self, cfg):
        """``cfg`` with the cache's clip length as ``trained_seconds``, if the model reads the cache's
        latents and text (else a clear error naming both)."""
        s, bad = self.settings, []
        for what, have, want in (("video latent channels", s["video_latent"][0], cfg.video.in_dim),
                                 ("audio latent channels", s["audio_latent"][1], cfg.audio.in_dim),
                                 ("video text width", s["text_dim"], cfg.video.text_dim),
                                 ("audio text width", s["text_dim"], cfg.audio.text_dim)):
            if have != want:
                bad.append(f"{what}: cache {have}, model {want}")
        if bad:
            raise ValueError(f"{self.flag} {self.folder} does not fit the model config ({'; '.join(bad)}); encode "
                             "with the model's codecs and text encoder (Wan2.2 VAE, MMAudio, umT5-XXL for --config "
                             "5b) or change --config / --overrides (e.g. text_dim)")
        return cfg.replace(meta={**cfg.meta, "trained_seconds": self.seconds, "clip_cache": self.folder})

    def text(self, cfg) -> CachedText:
        return CachedText(self._read(["text.empty"] + [f"text.{c['id']}" for c in self.index["clips"]],
                                     key=lambda c: c["text"]), cfg.video.text_len, self.settings["caption_tags"])

    def _read(self, names, key=None) -> dict:
        """Tensors by name, read shard by shard; ``key`` renames ``text.<id>`` entries."""
        from safetensors import safe_open

        by_shard: dict = {}
        clips = {c["id"]: c for c in self.index["clips"]}
        first = self.index["clips"][0]["shard"]
        for n in names:
            cid = n.split(".", 1)[1]
            by_shard.setdefault(first if cid == "empty" else clips[int(cid)]["shard"], []).append(n)
        out = {}
        for shard, want in by_shard.items():
            with safe_open(os.path.join(self.folder, shard), "pt") as fh:
                for n in want:
                    cid = n.split(".", 1)[1]
                    name = "" if cid == "empty" and key else (key(clips[int(cid)]) if key else n)
                    out[name] = fh.get_tensor(n).float()
        return out

    def pool(self, seed: int, rank: int = 0, world: int = 1, device="cpu"):
        """The trainer's pool of this process's clips (r, r + world, …), drawn with ``seed``."""
        mine = self.index["clips"][rank::world]
        if not mine:
            raise ValueError(f"{self.flag} {self.folder}: {len(self.index['clips'])} clips for {world} training "
                             "processes; each process needs at least one (encode more clips or use fewer processes)")
        t = self._read([f"{k}.{c['id']}" for c in mine for k in ("video", "audio")])
        data = {"video": torch.stack([t[f"video.{c['id']}"] for c in mine]),
                "audio": torch.stack([t[f"audio.{c['id']}"] for c in mine]), "refs": [None] * len(mine),
                **{k: [c[k] for c in mine] for k in ("prompt", "caption", "transcript")}}
        return CachePool((None, None), self.seconds, 0, seed, device=device, data=data)


class CachePool(LatentPool):
    """The trainer's pool over cached clips: fixed, never refreshed with rendered world clips."""

    def refresh(self, n: int):
        return None


# --------------------------------------------------------------------------- command line

def main(argv=None):
    """``python -m harmony encode-clips FOLDER --out CACHE --video-vae … --audio-vae … --text-encoder …``."""
    from . import validate
    from .cli import Parser, program
    from .jobs import DEFAULT_SECONDS, MIN_SECONDS
    from .media import FIT_MODES
    from .framesize import DEFAULT_SIZE, parse_size
    from .umt5 import CAPTION_TAGS

    prog = program()
    ap = Parser(prog=f"{prog} encode-clips",
                description="Encode a folder of real clips (videos with .json / .csv sidecars giving prompt, "
                            "caption and transcript)\nonce with the Wan2.2 VAE, the MMAudio VAE and umT5 into a "
                            "latent cache for `train --clip-cache`.\nBad clips are listed in the index with their "
                            "reason and skipped. See docs/training/real_clips.md.",
                epilog=f"examples:\n  {prog} encode-clips clips/ --out cache/ --video-vae Wan2.2_VAE.pth "
                       "--audio-vae v1-16.pth --text-encoder models_t5_umt5-xxl-enc-bf16.pth --seconds 5\n"
                       f"  torchrun --nproc_per_node 8 -m harmony encode-clips clips/ --out cache/ ...   "
                       "(rank r encodes every 8th clip)")
    ap.add_argument("folder", help="folder of videos (searched recursively), each with a sidecar beside it")
    ap.add_argument("--out", required=True, metavar="DIR", help="cache folder (created; shards, parts, index.json)")
    ap.add_argument("--video-vae", required=True, metavar="FILE", help="Wan2.2_VAE.pth or wan2.2_vae.safetensors")
    ap.add_argument("--audio-vae", required=True, metavar="FILE", help="MMAudio's 16 kHz VAE (ext_weights/v1-16.pth)")
    ap.add_argument("--text-encoder", required=True, metavar="FILE",
                    help="umT5-XXL encoder (models_t5_umt5-xxl-enc-bf16.pth or umt5_xxl_*.safetensors)")
    ap.add_argument("--tokenizer", metavar="DIR", default=None,
                    help="umT5 tokenizer folder (default: google/umt5-xxl beside the text encoder)")
    ap.add_argument("--seconds", type=float, default=DEFAULT_SECONDS,
                    help="length of every cached clip (its start); shorter clips are skipped")
    ap.add_argument("--size", default=None, metavar="HxW",
                    help=f"frame size, multiples of 32 (default {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]})")
    ap.add_argument("--fit", choices=FIT_MODES, default="crop", help="how pictures of another shape meet --size")
    ap.add_argument("--caption-tags", choices=CAPTION_TAGS, default="audio",
                    help="how the caption is written into Ovi's prompt ('Audio: …' or <AUDCAP>…<ENDAUDCAP>)")
    ap.add_argument("--rank", type=int, default=None, help="this process's rank (default: $RANK, else 0)")
    ap.add_argument("--world-size", type=int, default=None,
                    help="number of processes sharing the folder (default: $WORLD_SIZE, else 1)")
    ap.add_argument("--device", default=None,
                    help="where the encoders run (default: cuda:$LOCAL_RANK when a GPU is there, else cpu)")
    ap.add_argument("--dtype", choices=tuple(STORE_DTYPES), default="fp32", help="dtype of the stored tensors")
    ap.add_argument("--shard-clips", type=int, default=64, help="clips per shard file")
    a = ap.parse_args(argv)
    try:
        validate.number(a.seconds, "seconds", f"{DEFAULT_SECONDS:g}", via="cli", low=MIN_SECONDS)
        validate.integer(a.shard_clips, "shard_clips", 64, via="cli", low=1)
        size = parse_size(a.size)
        rank, world = process_rank(a.rank, a.world_size)
    except ValueError as e:
        ap.error(str(e))
    if not os.path.isdir(a.folder):
        ap.error(f"FOLDER: folder not found: {a.folder}")
    device = a.device or (f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if torch.cuda.is_available() else "cpu")
    encoders = Encoders(a.video_vae, a.audio_vae, a.text_encoder, a.tokenizer, device=device)

    def say(msg):
        print(f"[harmony] {msg}", flush=True)

    encode_folder(a.folder, a.out, encoders, a.seconds, size, rank, world, a.fit, a.caption_tags, a.dtype,
                  a.shard_clips, log=say)
