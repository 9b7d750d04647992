"""The real-scale stack: a dual-tower model file + umT5-XXL + Wan2.2 VAE + MMAudio VAE + BigVGAN.

``python -m harmony generate --model … --text-encoder … --video-vae … --audio-vae …
--vocoder …`` (or ``--weights DIR``, a folder holding them under their usual names,
e.g. Ovi's ``ckpts`` folder as its ``download_weights.py`` fills it) builds a
``HarmonyPipeline`` from these files; the rest of ``generate`` is unchanged.

Shapes follow the codecs: Wan2.2 VAE 16x16 pixels per latent, the first latent
frame one video frame and every further one four (``1 + 4 (F - 1)`` frames),
24 fps; MMAudio 16 kHz audio, 31.25 latents per second. The frame size is
``--size HxW`` (multiples of 32: the VAE's 16 times the DiT's 2x2 patch); the
default 704x704 is the multiple of 32 nearest Ovi's 720x720 area.

What is in memory, and when: every component file is checked from its header first (names,
shapes, pairing with the model), then only the DiT is loaded. umT5-XXL (about 11 GB) is read
for each prompt not encoded before and freed right after encoding; its embeddings are kept
(the empty prompt, CFG's unconditional side, is encoded with every read). The codecs' parts are
read on first use and kept: the Wan2.2 VAE encoder for a first frame, a driving video or
SyncCFG's blank frame (T2AV); the MMAudio VAE for driving audio, a reference voice or SyncCFG's
silence anchor; the Wan2.2 VAE decoder and BigVGAN at decode. With ``--offload`` they are kept
on the CPU and moved to the device only while they run.

SyncCFG anchors (``HarmonyPipeline.anchors``): silent audio = the middle token of MMAudio's
latent of 10 s of digital silence, repeated (the latent of silence without its edge tokens,
``MMAudioCodec.silence_token``); static video = one latent frame held over the clip: the given
first frame or the driving video's first frame, each encoded alone by the Wan2.2 VAE, else the
previous step's estimate, and before any estimate a mid-grey frame encoded alone (the blank
frame, made only for T2AV).

Text: both towers get the umT5 embedding of one string built as Ovi does
(:func:`harmony.umt5.ovi_prompt`): the scene, the transcript in ``<S>…<E>``,
the audio caption as ``Audio: …`` (``--caption-tags audcap`` for Ovi's
720x720_5s checkpoint, trained with ``<AUDCAP>…<ENDAUDCAP>``).
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .model import Conditioning

DEFAULT_SIZE = (704, 704)
SIZE_MULTIPLE = 32


@dataclass(frozen=True)
class Component:
    key: str
    flag: str
    usual: tuple  # usual file names (relative paths), in the order they are looked for
    what: str
    folder: bool = False


COMPONENTS = (
    Component("model", "--model", ("Ovi/model.safetensors", "model.safetensors", "model_960x960.safetensors",
                                   "model_960x960_10s.safetensors", "model_fp8_e4m3fn.safetensors"),
              "the dual-tower model: Ovi's fusion checkpoint (Ovi/model.safetensors from chetwinlow1/Ovi, or "
              "model_fp8_e4m3fn.safetensors from rkfg/Ovi-fp8_quantized) or a Harmony 5b file"),
    Component("text_encoder", "--text-encoder", ("models_t5_umt5-xxl-enc-bf16.pth", "umt5_xxl_bf16.safetensors",
                                                 "umt5_xxl_fp16.safetensors",
                                                 "umt5_xxl_fp8_e4m3fn_scaled.safetensors"),
              "the umT5-XXL encoder: models_t5_umt5-xxl-enc-bf16.pth (Wan-AI/Wan2.2-TI2V-5B) or ComfyUI's "
              "umt5_xxl_bf16 / fp16 / fp8_e4m3fn_scaled .safetensors"),
    Component("tokenizer", "--tokenizer", ("google/umt5-xxl",),
              "the umT5 tokenizer folder: google/umt5-xxl inside Wan2.2-TI2V-5B (looked for beside the text "
              "encoder)", folder=True),
    Component("video_vae", "--video-vae", ("Wan2.2_VAE.pth", "wan2.2_vae.safetensors"),
              "the Wan2.2 VAE: Wan2.2_VAE.pth (Wan-AI/Wan2.2-TI2V-5B) or ComfyUI's wan2.2_vae.safetensors"),
    Component("audio_vae", "--audio-vae", ("ext_weights/v1-16.pth", "v1-16.pth"),
              "MMAudio's 16 kHz mel VAE: ext_weights/v1-16.pth (hkchengrex/MMAudio)"),
    Component("vocoder", "--vocoder", ("ext_weights/best_netG.pt", "best_netG.pt"),
              "MMAudio's 16 kHz BigVGAN vocoder: ext_weights/best_netG.pt (hkchengrex/MMAudio)"),
)
STACK_FLAGS = ("text_encoder", "tokenizer", "video_vae", "audio_vae", "vocoder", "weights")


class ComponentError(FileNotFoundError):
    """A missing or unusable component file, naming its flag and the file people usually have."""


def add_arguments(ap):
    """The component flags of ``generate`` (``--model`` is the parser's own)."""
    g = ap.add_argument_group("real-scale components (umT5 + Wan2.2 VAE + MMAudio; any of them selects this path)")
    for c in COMPONENTS[1:]:
        g.add_argument(c.flag, metavar="DIR" if c.folder else "FILE", default=None, help=c.what)
    g.add_argument("--weights", metavar="DIR", default=None,
                   help="a folder holding the components under their usual names (searched 4 levels deep), "
                        "e.g. Ovi's ckpts folder; a flag given explicitly wins")
    g.add_argument("--size", default=None, metavar="HxW",
                   help=f"frame size, multiples of {SIZE_MULTIPLE} (default {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]}, "
                        "about Ovi's 720x720 area; Ovi's 960x960 checkpoints want about 960x960)")
    g.add_argument("--caption-tags", choices=("audio", "audcap"), default="audio",
                   help="how the audio caption is written into Ovi's prompt: 'Audio: …' or "
                        "'<AUDCAP>…<ENDAUDCAP>' (Ovi's 720x720_5s checkpoint)")
    return g


def wanted(a) -> bool:
    """Whether any component flag was given (then generate takes the real-scale path)."""
    return any(getattr(a, k, None) for k in STACK_FLAGS)


def check_not_empty(a) -> None:
    """A path flag given as an empty string (``--weights ""``, ``--model ""``) is an error, never
    a silent fall-back to the bundled model."""
    for c in COMPONENTS + (Component("weights", "--weights", (), "the folder holding the components", True),):
        if getattr(a, c.key, None) == "":
            kind = "folder" if c.folder else "file"
            raise ComponentError(f"{c.flag}: the {kind} path is empty; give {c.what} (e.g. {c.flag} "
                                 f"{c.usual[0] if c.usual else 'ckpts'}), or leave {c.flag} out"
                                 + (" for the bundled model" if c.key in ("model", "weights") else ""))


def parse_size(value, via: str = "cli") -> tuple:
    """``"HxW"`` (CLI) or ``(H, W)`` (API) -> ``(H, W)``: positive multiples of :data:`SIZE_MULTIPLE`.
    ``via``: "cli" words the error for ``--size``, "api" for ``size=``."""
    label, example = (("--size", f"--size {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]}") if via == "cli"
                      else ("size", f"size={DEFAULT_SIZE}"))
    if value is None:
        return DEFAULT_SIZE
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ValueError(f"{label}={value!r}: expected (height, width) as two whole numbers; pass e.g. {example}")
        h, w = value
    else:
        try:
            h, w = (int(v) for v in str(value).lower().split("x"))
        except ValueError:
            raise ValueError(f"{label}: {value!r} is not HxW; pass e.g. {example}") from None
    if h <= 0 or w <= 0 or h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
        raise ValueError(f"{label}: {h}x{w}: height and width must be positive multiples of {SIZE_MULTIPLE} "
                         f"(16 pixels per VAE latent x the DiT's 2x2 patch); pass e.g. {example}")
    return h, w


PLAN_STEP_BYTES_PER_TOKEN = 3.26 * 2**30 / 15004
"""Device bytes of one sampling step per video token, from the memory plan (``python -m harmony bench
--plan``, docs/bench/memory_plan.txt): SyncCFG batched (batch 3) of the 5B model at 5 s 704x704 needs
3.26 GiB of activations for 15,004 video tokens; attention is fused, so this grows linearly with tokens."""


def device_memory_bytes(device) -> tuple:
    """``(bytes, words)``: the device's total memory (a GPU's, or the machine's RAM for the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device.index or 0).total_memory
        return total, f"the GPU's {total / 2**30:.1f} GiB"
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return total, f"this machine's {total / 2**30:.1f} GiB of RAM"


def check_size_fits(size: tuple, seconds: float, device=None, memory: Optional[tuple] = None,
                    via: str = "cli") -> tuple:
    """Refuse a frame size whose sampling step alone (no weights counted) would not fit the device's
    memory by the memory plan's figure (:data:`PLAN_STEP_BYTES_PER_TOKEN`); checked before anything
    loads. ``memory``: ``(bytes, words)`` instead of the device's (:func:`device_memory_bytes`)."""
    from .bench import real_tokens
    from .config import get_config

    h, w = size
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    total, where = memory if memory is not None else device_memory_bytes(device)
    cfg = get_config("5b")
    tokens = real_tokens(cfg, seconds, (h, w))
    need = tokens["video_tokens"] * PLAN_STEP_BYTES_PER_TOKEN
    if need <= total:
        return size
    frames = tokens["grid"][0]
    side = SIZE_MULTIPLE * int((total / PLAN_STEP_BYTES_PER_TOKEN / frames) ** 0.5)
    label = "--size" if via == "cli" else "size"
    largest = (f"the largest square size that fits is about {side}x{side}" if side >= SIZE_MULTIPLE
               else "no size fits")
    example = f"--size {min(side, DEFAULT_SIZE[0])}x{min(side, DEFAULT_SIZE[0])}" if via == "cli" else \
        f"size=({min(side, DEFAULT_SIZE[0])}, {min(side, DEFAULT_SIZE[0])})"
    raise ValueError(
        f"{label}: {h}x{w} is too large: one sampling step of a {seconds:g} s clip at this size "
        f"({tokens['video_tokens']:,} video tokens) needs about {need / 2**30:,.1f} GiB by the memory plan "
        f"({PLAN_STEP_BYTES_PER_TOKEN / 2**20:.2f} MiB per video token, SyncCFG at batch 3, weights not counted), "
        f"more than {where}; {largest}; pass e.g. {example}")


def _search(folder: str, usual: tuple, want_dir: bool) -> list:
    """Every path under ``folder`` (at most 4 levels deep) named as one of ``usual`` (relative
    paths), sorted; the caller refuses more than one (no silent pick)."""
    found = set()
    base = os.path.abspath(folder)
    for root, dirs, files in os.walk(base):
        depth = os.path.relpath(root, base).count(os.sep) + (root != base)
        if depth >= 4:
            dirs[:] = []
        for name in (dirs if want_dir else files):
            full = os.path.join(root, name)
            rel = os.path.relpath(full, base).replace(os.sep, "/")
            if any(rel == u or rel.endswith("/" + u) for u in usual):
                found.add(os.path.realpath(full) if os.path.islink(full) else full)
    return sorted(found)


def resolve(a) -> dict:
    """Component key -> path, from the flags and ``--weights``; a missing one is a ComponentError."""
    check_not_empty(a)
    folder = getattr(a, "weights", None)
    if folder is not None and not os.path.isdir(folder):
        raise ComponentError(f"--weights: folder not found: {folder}")
    paths = {}
    for c in COMPONENTS:
        p = getattr(a, c.key, None)
        if p is None and c.key == "tokenizer" and paths.get("text_encoder"):
            beside = os.path.join(os.path.dirname(paths["text_encoder"]), "google", "umt5-xxl")
            p = beside if os.path.isdir(beside) else None
        if p is None and folder is not None:
            found = _search(folder, c.usual, c.folder)
            if len(found) > 1:
                shown = "; ".join(found[:6]) + (f"; ... ({len(found) - 6} more)" if len(found) > 6 else "")
                raise ComponentError(f"--weights {folder}: {len(found)} candidates for {c.flag} ({shown}); "
                                     f"Harmony will not pick one silently: choose with {c.flag} "
                                     f"{'DIR' if c.folder else 'FILE'} (e.g. {c.flag} {found[0]})")
            p = found[0] if found else None
        if p is None:
            where = f" (not in --weights {folder})" if folder else ""
            raise ComponentError(f"{c.flag} is missing{where}: give {c.what}. Usual name: {c.usual[0]}.")
        ok = os.path.isdir(p) if c.folder else os.path.isfile(p)
        if not ok:
            raise ComponentError(f"{c.flag}: {'folder' if c.folder else 'file'} not found: {p}. Expected {c.what}.")
        paths[c.key] = os.fspath(p)
    return paths


# --------------------------------------------------------------------------- reading weight files

_WRAPPERS = ("state_dict", "model", "generator", "module")


def _is_pickle(path: str) -> bool:
    from .checkpoint import PICKLE_SUFFIXES

    return path.lower().endswith(PICKLE_SUFFIXES)


def _load_pickle(path: str, flag: str):
    """An upstream ``.pth`` / ``.pt`` through ``torch.load(weights_only=True)`` only (memory-mapped when the
    file is a zip archive, so that nothing is read until a tensor is used); unwrapped."""
    import zipfile

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as e:  # noqa: BLE001 - a crafted or damaged pickle: refuse, never unpickle code
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        raise ComponentError(f"{flag} {path}: could not be read as plain tensors with torch.load(weights_only=True) "
                             f"({type(e).__name__}: {lines[0][:200] if lines else ''}); Harmony never unpickles "
                             "code. Use the original file or a .safetensors copy.") from None
    while isinstance(obj, dict) and not any(torch.is_tensor(v) for v in obj.values()):
        inner = [k for k in _WRAPPERS if isinstance(obj.get(k), dict)]
        if not inner:
            break
        obj = obj[inner[0]]
    if not isinstance(obj, dict) or not any(torch.is_tensor(v) for v in obj.values()):
        raise ComponentError(f"{flag} {path}: holds no state dict of tensors ({type(obj).__name__})")
    return {k: v for k, v in obj.items() if isinstance(k, str) and torch.is_tensor(v)}


def _peek(path: str, flag: str) -> dict:
    """A weight file's tensors as meta tensors (names, shapes, dtypes), read without the weights:
    the safetensors header (checked, never mapped: :mod:`harmony.weightfile`; a bad file is a
    ``WeightFileError`` naming ``flag``), or a zip ``.pth`` memory-mapped. Lets every component be
    checked before anything is loaded."""
    path = os.fspath(path)
    if _is_pickle(path):
        return {k: torch.empty(v.shape, dtype=v.dtype, device="meta") for k, v in _load_pickle(path, flag).items()}
    from .checkpoint import safetensors_header

    return safetensors_header(path, flag).meta_tensors()


def _read_tensors(path: str, names, flag: str) -> dict:
    """Only the tensors ``names`` of a weight file (safetensors: only those are read, one by one,
    never mapped; a zip ``.pth``: memory-mapped, so only those are copied)."""
    names = list(names)
    if _is_pickle(path):
        sd = _load_pickle(path, flag)
        return {k: sd[k] for k in names}
    from .weightfile import load_tensors

    return load_tensors(path, flag, names)


class _Staged:
    """Parts kept on ``store`` (the device, or the CPU with an offload mode) and moved to ``device``
    only while they run."""

    def __init__(self, device, store):
        self.device = torch.device(device)
        self.store = torch.device(store if store is not None else device)

    def _on_device(self, *modules):
        import contextlib

        @contextlib.contextmanager
        def ctx():
            if self.store == self.device:
                yield
                return
            for m in modules:
                m.to(self.device)
            try:
                yield
            finally:
                for m in modules:
                    m.to(self.store)
        return ctx()


# --------------------------------------------------------------------------- codecs, loaded when needed

class LazyWanVAE(_Staged):
    """The Wan2.2 VAE behind the video-codec interface, each half read from its file on first use:
    the encoder (``encoder.*``, ``conv1.*``) when frames are encoded (a first frame, a driving video,
    or SyncCFG's blank frame), the decoder (``decoder.*``, ``conv2.*``) when latents are decoded.
    A half is read once and kept. The file's names and shapes are checked when this is built
    (headers only). ``loaded``: the halves read so far."""

    PARTS = {"encoder": ("encoder.", "conv1."), "decoder": ("decoder.", "conv2.")}

    def __init__(self, path, device="cpu", dtype=torch.float32, store=None, frame_size=DEFAULT_SIZE,
                 log: Callable[[str], None] = print):
        from .codecs.wan_vae import WanVAE, _strip_prefix, config_from_state_dict

        super().__init__(device, store)
        self.path, self.dtype, self.log = os.fspath(path), dtype, log
        peek = _peek(self.path, "--video-vae")
        self._names = _strip_prefix({k: k for k in peek})  # model name -> name in the file
        meta = {k: peek[v] for k, v in self._names.items()}
        try:
            cfg = config_from_state_dict(meta, f"--video-vae {self.path}")
        except ValueError as e:
            raise ComponentError(f"{e} (--video-vae: {_usual('video_vae')})") from None
        with torch.device("meta"):
            self.vae = WanVAE(**cfg).eval()
        want = self.vae.state_dict()
        missing, unexpected = sorted(set(want) - set(meta)), sorted(set(meta) - set(want))
        bad = [k for k in want if k in meta and want[k].shape != meta[k].shape]
        if missing or unexpected or bad:
            raise ComponentError(f"--video-vae {self.path}: tensors do not match the Wan2.2 VAE (missing "
                                 f"{missing[:5]}, unexpected {unexpected[:5]}, wrong shapes {bad[:5]}); use "
                                 f"{_usual('video_vae')}")
        self.latent_channels = self.z_dim = cfg["z_dim"]
        self.spatial_stride, self.temporal_stride, self.fps = WanVAE.spatial_stride, WanVAE.temporal_stride, WanVAE.fps
        self.latents_for_frames, self.frames_for_latents = WanVAE.latents_for_frames, WanVAE.frames_for_latents
        self.frame_size = tuple(frame_size)
        self.loaded: set = set()

    def _ensure(self, part: str):
        from .codecs.wan_vae import LATENT_MEAN, LATENT_STD

        if part in self.loaded:
            return
        self.log(f"reading the Wan2.2 VAE {part} ({os.path.basename(self.path)})")
        keys = [k for k in self._names if k.startswith(self.PARTS[part])]
        file_sd = _read_tensors(self.path, [self._names[k] for k in keys], "--video-vae")
        sd = {k: file_sd[self._names[k]].to(device=self.store, dtype=self.dtype) for k in keys}
        del file_sd
        self.vae.load_state_dict(sd, strict=False, assign=True)
        if not self.loaded:  # the non-persistent latent statistics, off the meta device
            z = self.z_dim
            mean, std = ((torch.tensor(LATENT_MEAN), torch.tensor(LATENT_STD)) if z == len(LATENT_MEAN)
                         else (torch.zeros(z), torch.ones(z)))
            self.vae.latent_mean, self.vae.latent_std = mean.to(self.store), std.to(self.store)
        self.loaded.add(part)

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames [B, T, H, W, 3]`` 0..1 -> ``[B, 48, 1 + (T-1)//4, H/16, W/16]`` (``WanVAE.encode``)."""
        self._ensure("encoder")
        v = self.vae
        with self._on_device(v.encoder, v.conv1):
            return v.encode(frames)

    @torch.no_grad()
    def decode(self, latent: torch.Tensor, tile=None, tile_overlap=None, out_device=None) -> torch.Tensor:
        """``[B, 48, F, h, w]`` -> ``frames [B, 1 + 4(F-1), 16h, 16w, 3]`` (``WanVAE.decode``, tiled)."""
        self._ensure("decoder")
        v = self.vae
        with self._on_device(v.decoder, v.conv2):
            return v.decode(latent, tile, tile_overlap, out_device)


class LazyMMAudioCodec(_Staged):
    """MMAudio's 16 kHz codec behind the audio-codec interface, read from its files on first use:
    the VAE (one file, encoder and decoder) when audio is encoded, SyncCFG's silence anchor is made
    or latents are decoded; the BigVGAN vocoder only when latents are decoded. Each file is read
    once and kept; both are checked when this is built (headers only). ``loaded``: what was read."""

    from .codecs.mmaudio import MMAudioCodec as _Codec

    latent_channels = _Codec.latent_channels
    sample_rate = _Codec.sample_rate
    hop_length = _Codec.hop_length
    latent_rate = _Codec.latent_rate

    def __init__(self, vae_path, vocoder_path, device="cpu", dtype=torch.float32, store=None,
                 log: Callable[[str], None] = print):
        from .checkpoint import CheckpointError
        from .codecs.bigvgan import load_bigvgan
        from .codecs.mmaudio_vae import load_mmaudio_vae

        super().__init__(device, store)
        self.vae_path, self.vocoder_path = os.fspath(vae_path), os.fspath(vocoder_path)
        self.dtype, self.log = dtype, log
        for key, path, load in (("audio_vae", self.vae_path, load_mmaudio_vae),
                                ("vocoder", self.vocoder_path, load_bigvgan)):
            flag = _component(key).flag
            peek = _peek(path, flag)  # a bad file: WeightFileError, naming the flag
            try:  # the real loader on meta tensors: names, shapes and layout, no weights
                load(peek, device="meta")
            except (ValueError, KeyError, CheckpointError) as e:
                raise ComponentError(f"{flag} {path}: {str(e).splitlines()[0]} (expected {_usual(key)})") from None
        self.codec = None
        self.loaded: set = set()

    def _ensure(self, vocoder: bool = False):
        from .codecs.bigvgan import load_bigvgan
        from .codecs.mmaudio import MMAudioCodec
        from .codecs.mmaudio_vae import load_mmaudio_vae

        if self.codec is None:
            self.log(f"reading the MMAudio VAE ({os.path.basename(self.vae_path)})")
            self.codec = MMAudioCodec(load_mmaudio_vae(self.vae_path, device=self.store, dtype=self.dtype))
            self.loaded.add("vae")
        if vocoder and self.codec.vocoder is None:
            self.log(f"reading the BigVGAN vocoder ({os.path.basename(self.vocoder_path)})")
            self.codec.attach_vocoder(load_bigvgan(self.vocoder_path, device=self.store, dtype=self.dtype))
            self.loaded.add("vocoder")
        return self.codec

    def num_latents(self, num_samples: int) -> int:
        return max(1, -(-int(num_samples) // self.hop_length))

    @torch.no_grad()
    def encode(self, wave: torch.Tensor, **kw) -> torch.Tensor:
        c = self._ensure()
        with self._on_device(c):
            return c.encode(wave, **kw)

    @torch.no_grad()
    def decode(self, latent: torch.Tensor, length: Optional[int] = None) -> torch.Tensor:
        c = self._ensure(vocoder=True)
        with self._on_device(c):
            return c.decode(latent, length)

    @torch.no_grad()
    def silence_token(self, **kw) -> torch.Tensor:
        """SyncCFG's silent-audio anchor: :meth:`MMAudioCodec.silence_token`."""
        c = self._ensure()
        with self._on_device(c):
            return c.silence_token(**kw)


def _component(key: str) -> Component:
    return next(c for c in COMPONENTS if c.key == key)


def _usual(key: str) -> str:
    return _component(key).what


# --------------------------------------------------------------------------- text

class UMT5Conditioner:
    """The pipeline's conditioner for umT5 models: Ovi's one prompt, the same embedding for both towers.

    The encoder (umT5-XXL: 5.7B parameters, about 11 GB in bf16) is not kept: for a prompt not
    encoded before it is read from its file onto the pipeline's device, encodes, and is freed
    right after (``model`` is None between encodings). The embeddings are kept instead (the last
    ``KEEP`` prompts, and the empty prompt, encoded with every load, so that the unconditional side
    of CFG / text CFG never reads the encoder again). The file and tokenizer are checked when this
    is built (the file's header; the tokenizer is small and kept)."""

    KEEP = 8

    def __init__(self, path, tokenizer, dtype=torch.float32, text_len: int = 512, caption_tags: str = "audio",
                 log: Callable[[str], None] = print):
        from .umt5 import UMT5Error, config_from_state, load_tokenizer, to_hf_state

        self.path, self.tokenizer_path = os.fspath(path), os.fspath(tokenizer)
        self.dtype, self.text_len, self.caption_tags, self.log = dtype, int(text_len), caption_tags, log
        try:
            self.config = config_from_state(to_hf_state(_peek(self.path, "--text-encoder"), self.path, dtype))
        except (UMT5Error, KeyError, IndexError) as e:
            raise ComponentError(f"--text-encoder {self.path}: {e} (expected {_usual('text_encoder')})") from None
        try:
            self.tokenizer = load_tokenizer(self.tokenizer_path)
        except (UMT5Error, OSError, ValueError) as e:
            raise ComponentError(f"--tokenizer {self.tokenizer_path}: {e}") from None
        if len(self.tokenizer) > self.config.vocab_size:
            raise ComponentError(f"--tokenizer {self.tokenizer_path} has {len(self.tokenizer)} tokens but the "
                                 f"--text-encoder {self.path} only {self.config.vocab_size}: they are not a pair")
        self.model = None  # the encoder's weights, only while encoding
        self._kept: OrderedDict = OrderedDict()  # text -> embedding [text_len, dim] float32, on the CPU

    @property
    def dim(self) -> int:
        return int(self.config.d_model)

    def to(self, *args, **kw):
        return self

    def _say_cut(self, texts):
        from .umt5 import clean_text

        for text in texts:
            ids = self.tokenizer(clean_text(text), truncation=True, max_length=self.text_len,
                                 add_special_tokens=True)["input_ids"]
            if len(ids) >= self.text_len:
                self.log(f"the prompt is cut at {self.text_len} tokens (umT5's limit)")

    def _encode(self, texts, device: torch.device):
        import gc

        from .umt5 import load_umt5

        self.log(f"reading the text encoder ({os.path.basename(self.path)}); freed after encoding")
        enc = load_umt5(self.path, self.tokenizer_path, dtype=self.dtype, device=device, text_len=self.text_len)
        self.model = enc.model
        try:
            for text in texts:
                emb, _ = enc.encode([text])
                self._kept[text] = emb[0].cpu()
        finally:
            enc.release()
            self.model = enc = None
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()

    def __call__(self, prompts, captions, transcripts, refs, device=None) -> Conditioning:
        from .umt5 import ovi_prompt

        texts = [ovi_prompt(p, t, c, self.caption_tags) for p, c, t in zip(prompts, captions, transcripts)]
        run_on = torch.device(device) if device is not None else torch.device("cpu")
        self._say_cut(texts)
        todo = [t for t in dict.fromkeys(texts + [""]) if t not in self._kept]
        if todo:
            self._encode(todo, run_on)
        for t in texts:
            self._kept.move_to_end(t)
        emb = torch.stack([self._kept[t] for t in texts]).to(run_on)
        for t in list(self._kept)[: max(0, len(self._kept) - self.KEEP - 1)]:
            if t and t not in texts:
                del self._kept[t]
        return Conditioning(emb, emb.clone(), None)


# --------------------------------------------------------------------------- the stack

def load_stack(paths: dict, dtype: str = "auto", offload: str = "none", resident_blocks: Optional[int] = None,
               device=None, size=None, caption_tags: str = "audio", log: Callable[[str], None] = print):
    """A ``HarmonyPipeline`` over the component files (see :func:`resolve`).

    Every component file is checked first from its header (names, shapes, pairing with the model:
    the text encoder's width against the DiT's text dim, the VAEs' channels against its ``in_dim``),
    and ``size`` against the device's memory (:func:`check_size_fits`, for the shortest clip); then
    only the model is loaded. The text encoder is read for each new prompt and freed after
    encoding (:class:`UMT5Conditioner`); the codecs' parts are read when first needed and kept
    (:class:`LazyWanVAE`, :class:`LazyMMAudioCodec`); with an offload mode they are kept on the CPU
    and moved to the device only while they run."""
    from .checkpoint import load_model, read_config
    from .jobs import MIN_SECONDS
    from .pipeline import Codecs, HarmonyPipeline, _max_seconds

    if offload not in ("none", "block_swap", "cpu"):
        raise ValueError(f"offload {offload!r} is unknown; use 'none', 'block_swap' or 'cpu'")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    compute = torch.float32 if device.type == "cpu" else torch.bfloat16
    size = parse_size(size, via="api")
    check_size_fits(size, MIN_SECONDS, device, via="api")
    store_device = torch.device("cpu") if offload in ("cpu", "block_swap") else device
    text = UMT5Conditioner(paths["text_encoder"], paths["tokenizer"], dtype=compute, caption_tags=caption_tags,
                           log=log)
    vae = LazyWanVAE(paths["video_vae"], device=device, dtype=compute, store=store_device, frame_size=size, log=log)
    audio = LazyMMAudioCodec(paths["audio_vae"], paths["vocoder"], device=device, store=store_device, log=log)
    cfg = read_config(paths["model"], what="--model")  # the model's header: pairing before any weight is read
    for tower in (cfg.video, cfg.audio):
        if tower.text_dim != text.dim:
            raise ComponentError(f"--text-encoder {paths['text_encoder']} gives {text.dim}-wide embeddings but the "
                                 f"--model {paths['model']} {tower.modality} tower reads {tower.text_dim}: they are "
                                 f"not a pair; use {_usual('text_encoder')}")
    if vae.latent_channels != cfg.video.in_dim:
        raise ComponentError(f"--video-vae {paths['video_vae']} has {vae.latent_channels} latent channels, the "
                             f"--model {paths['model']} video tower reads {cfg.video.in_dim}: use the Wan2.2 VAE "
                             "(Wan2.2_VAE.pth or wan2.2_vae.safetensors; the Wan2.1 VAE has 16)")
    if audio.latent_channels != cfg.audio.in_dim:
        raise ComponentError(f"--audio-vae {paths['audio_vae']} gives {audio.latent_channels} latent channels, the "
                             f"--model {paths['model']} audio tower reads {cfg.audio.in_dim}: use "
                             f"{_usual('audio_vae')}")
    model = load_model(paths["model"], dtype=dtype, device=store_device, what="--model")
    log(model.load_summary)
    cfg = model.cfg
    text.text_len = cfg.video.text_len
    log(f"text encoder {os.path.basename(paths['text_encoder'])}: umT5 {text.config.num_layers} layers, "
        f"width {text.dim}, text_len {text.text_len} (read for each new prompt, freed after encoding)")
    off = None
    if offload == "block_swap":
        from .offload import BlockSwap
        off = BlockSwap(model, resident_blocks=resident_blocks or 0, device=device)
    elif offload == "cpu":
        from .offload import cpu_offload
        off = cpu_offload(model, device)
    else:
        model.to(device)
    log(f"frame {size[0]}x{size[1]} at {vae.fps} fps, audio {audio.sample_rate} Hz; codecs read when first "
        "needed (video encoder: a first frame, a driving video or SyncCFG's blank frame; decoders: at decode)")
    return HarmonyPipeline(model, text, Codecs(vae, audio), device, compute, off,
                           _max_seconds(getattr(cfg, "meta", None)), log)
