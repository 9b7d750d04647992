"""What a checkpoint file is, from its safetensors header alone (no weight is read).

``detect(path)`` returns a :class:`Found`: the model family (Harmony, Ovi's
fusion model, a bare Wan2.2-TI2V-5B DiT), the wrapper prefix (ComfyUI saves
``model.diffusion_model.*``), the config the file fits, the storage dtype
(bf16, fp8 without scales as in Ovi's ``model_fp8_e4m3fn.safetensors``,
ComfyUI scaled fp8 with ``scaled_fp8`` + ``*.scale_weight``) and the parameter
count. ``Found.line()`` says it in one line; ``harmony.checkpoint.load_model``
attaches that line to the model it loads (``model.load_summary``).

Config of a file without ``harmony_config`` metadata, in order: a JSON beside
it (:func:`read_sidecar_config`), Ovi's own ``video.json`` +
``audio.json`` beside it, then the named config whose tower sizes equal the
shapes in the header (interaction from the key set: GLDI files hold the
audio blocks' ``norm_style`` / ``style_attn``; Ovi files are the global
interaction).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Optional

from .job_weights import split_keys
from .weightfile import CheckpointError, Header

FAMILY_NAMES = {
    "harmony": "Harmony model",
    "ovi": "Ovi fusion model (Wan2.2-5B video tower + audio tower)",
    "wan2.2-ti2v-5b": "Wan DiT alone (video tower only, no audio tower)",
    "unknown": "unknown model family",
}

WAN_VARIANTS = (
    # (name, dim, in_dim, ffn_dim, num_layers): the public Wan DiTs (bare WanModel files)
    ("Wan2.2-TI2V-5B", 3072, 48, 14336, 30),
    ("Wan2.1-T2V-14B (or one expert of Wan2.2-T2V-A14B: the same shapes)", 5120, 16, 13824, 40),
    ("Wan2.1-I2V-14B", 5120, 36, 13824, 40),
    ("Wan2.1-T2V-1.3B", 1536, 16, 8960, 30),
)
"""Which Wan DiT a bare WanModel file is, from its header shapes (an I2V-14B file without Wan2.1's
CLIP image projection ``img_emb.*`` is an expert of Wan2.2-I2V-A14B)."""

_SAFETENSORS_DTYPES = {
    "BF16": "bf16", "F16": "fp16", "F32": "fp32", "F64": "fp64",
    "F8_E4M3": "fp8_e4m3fn", "F8_E5M2": "fp8_e5m2",
}
_BYTES = {"BF16": 2, "F16": 2, "F32": 4, "F64": 8, "F8_E4M3": 1, "F8_E5M2": 1,
          "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
_BLOCK = re.compile(r"^(video_model|audio_model)\.blocks\.(\d+)\.")
_GLDI_ONLY = re.compile(r"^audio_model\.blocks\.\d+\.(norm_style|style_attn)\.")
OVI_CONFIG_FILES = ("video.json", "audio.json")

FORMAT_VERSION = "1"
CONFIG_KEY = "harmony_config"
"""Metadata key of a Harmony file's config: its ``HarmonyConfig.to_dict()`` as JSON."""
VERSION_KEY = "harmony_format_version"
SCALED_FP8_KEY = "scaled_fp8"
"""ComfyUI's scaled-fp8 marker tensor (empty; its dtype names the fp8 format)."""


@dataclass
class Found:
    """What :func:`detect` found in a checkpoint header."""

    path: str
    family: str
    prefix: str = ""
    config: object = None
    config_name: Optional[str] = None
    config_source: str = ""
    interaction: Optional[str] = None
    storage: str = ""
    params: int = 0
    tensors: int = 0
    notes: list = field(default_factory=list)
    variant: Optional[str] = None

    def line(self) -> str:
        """One line: file, family, config, storage dtype, parameter count."""
        what = FAMILY_NAMES.get(self.family, self.family)
        if self.family == "wan2.2-ti2v-5b":
            what = (f"{self.variant} DiT alone" if self.variant else "Wan DiT alone (its sizes match no public Wan "
                                                                     "model)") + " (video tower only, no audio tower)"
        if self.prefix:
            what += f", keys under ComfyUI's '{self.prefix}' prefix"
        if self.config_name:
            cfg = f"config {self.config_name}"
        elif self.config is not None:
            cfg = "config custom"
        else:
            cfg = "config unknown"
        if self.interaction:
            cfg += f" ({self.interaction})"
        if self.config_source:
            cfg += f" from {self.config_source}"
        parts = [f"{os.path.basename(self.path)}: {what}", cfg, f"storage {self.storage}",
                 f"{format_params(self.params)} params"]
        return "; ".join(parts + list(self.notes))


def file_path(path) -> str:
    """The file name of ``path`` (a path, or a :class:`harmony.weightfile.Header` of it)."""
    return path.path if isinstance(path, Header) else os.fspath(path)


def format_params(n: int) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f}B"
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    return f"{n / 1e3:.1f}K" if n >= 1e3 else str(n)


def read_header(path, what: str = "checkpoint", check_size: bool = True) -> tuple[dict, dict]:
    """``({tensor name: (safetensors dtype, shape)}, metadata)`` from the file's JSON header only
    (checked, never mapped: :func:`harmony.weightfile.read_header`; ``check_size=False``
    also reads a file shorter than its header says)."""
    from .weightfile import read_header as checked_header

    header = checked_header(path, what, check_size=check_size)
    return {k: (e.dtype, e.shape) for k, e in header.tensors.items()}, dict(header.metadata)


def wan_variant(shapes: dict) -> Optional[str]:
    """The public Wan DiT whose sizes the header shapes (our names, ``video_model.*``) have, or None."""
    sizes = tower_sizes(shapes, "video_model")
    if sizes is None:
        return None
    for name, dim, in_dim, ffn, layers in WAN_VARIANTS:
        if (sizes["dim"], sizes["in_dim"], sizes["ffn_dim"], sizes["num_layers"]) == (dim, in_dim, ffn, layers):
            if name == "Wan2.1-I2V-14B" and not any(k.startswith("video_model.img_emb.") for k in shapes):
                return "Wan2.2-I2V-A14B expert"
            return name
    return None


def wan_name(path) -> str:
    """``"a Wan2.1-T2V-14B (...)"`` / ``"a Wan"`` for a bare WanModel file, from its header."""
    from . import keymap

    tensors, _ = read_header(path, check_size=False)
    variant = wan_variant({keymap.from_upstream_name(k, "wan2.2-ti2v-5b"): shape for k, (_, shape) in tensors.items()})
    return f"a {variant}" if variant else "a Wan"


def storage_of(tensors: dict) -> str:
    """The storage dtype in words: the dtype holding most weight bytes, and fp8 in detail."""

    by = {}
    for k, (dt, shape) in tensors.items():
        if k == SCALED_FP8_KEY or k.endswith((".scale_weight", ".scale_input")):
            continue
        n = 1
        for s in shape:
            n *= s
        by[dt] = by.get(dt, 0) + n * _BYTES.get(dt, 1)
    if not by:
        return "empty"
    fp8 = [d for d in by if d.startswith("F8_")]
    rest = sorted((d for d in by if not d.startswith("F8_") and d in _SAFETENSORS_DTYPES), key=by.get, reverse=True)
    rest_txt = f", other tensors {_SAFETENSORS_DTYPES[rest[0]]}" if rest else ""
    if fp8:
        name = _SAFETENSORS_DTYPES[max(fp8, key=by.get)]
        if SCALED_FP8_KEY in tensors or any(k.endswith(".scale_weight") for k in tensors):
            return f"scaled {name} (ComfyUI scaled fp8){rest_txt}"
        return f"{name} without scales (as Ovi's model_fp8_e4m3fn.safetensors){rest_txt}"
    main = max(by, key=by.get)
    return _SAFETENSORS_DTYPES.get(main, main.lower())


def _params(tensors: dict) -> int:

    total = 0
    for k, (_, shape) in tensors.items():
        if k == SCALED_FP8_KEY or k.endswith((".scale_weight", ".scale_input")):
            continue
        n = 1
        for s in shape:
            n *= s
        total += n
    return total


def _prefix(keys) -> str:
    from .keymap import strip_wrapper_prefix

    for k in keys:
        stripped = strip_wrapper_prefix(k)
        if stripped != k:
            return k[: len(k) - len(stripped)]
    return ""


def tower_sizes(shapes: dict, tower: str) -> Optional[dict]:
    """Sizes of one tower read off the header shapes (our names), or None when it is absent."""
    p = tower + "."
    pe = shapes.get(p + "patch_embedding.weight") or shapes.get(p + "patch_embedding.0.weight")
    if pe is None or len(pe) < 2:
        return None
    layers = {int(m.group(2)) for k in shapes for m in [_BLOCK.match(k)] if m and m.group(1) == tower}
    ffn = shapes.get(p + "blocks.0.ffn.0.weight")
    text = shapes.get(p + "text_embedding.0.weight")
    time = shapes.get(p + "time_embedding.0.weight")
    return {"dim": pe[0], "in_dim": pe[1], "patch_size": tuple(pe[2:]) if tower == "video_model" else None,
            "num_layers": len(layers), "ffn_dim": ffn[0] if ffn else None,
            "text_dim": text[1] if text else None, "freq_dim": time[1] if time else None}


def _matches(sizes: dict, tower_cfg) -> bool:
    if sizes is None:
        return False
    want = {"dim": tower_cfg.dim, "in_dim": tower_cfg.in_dim, "num_layers": tower_cfg.num_layers,
            "ffn_dim": tower_cfg.ffn_dim, "text_dim": tower_cfg.text_dim, "freq_dim": tower_cfg.freq_dim}
    if tower_cfg.modality == "video":
        want["patch_size"] = tuple(tower_cfg.patch_size)
    return all(sizes.get(k) == v for k, v in want.items())


def match_named_config(shapes: dict, interaction: Optional[str]):
    """``(name, config)`` of the named config whose towers have the header's sizes, or ``(None, None)``."""
    from . import config as config_mod

    video, audio = tower_sizes(shapes, "video_model"), tower_sizes(shapes, "audio_model")
    for name, make in config_mod.CONFIGS.items():
        cfg = make()
        if interaction is not None and cfg.interaction != interaction:
            continue
        if _matches(video, cfg.video) and _matches(audio, cfg.audio):
            return name, cfg
    return None, None


def read_ovi_configs(path):
    """A global-interaction HarmonyConfig from Ovi's ``video.json`` + ``audio.json`` beside ``path``, or None."""
    from . import config as config_mod

    folder = os.path.dirname(os.path.abspath(file_path(path)))
    files = [os.path.join(folder, n) for n in OVI_CONFIG_FILES]
    if not all(os.path.isfile(f) for f in files):
        return None
    towers = []
    for f, modality in zip(files, ("video", "audio")):
        try:
            with open(f, encoding="utf-8") as fh:
                d = json.load(fh)
            kw = dict(modality=modality, dim=d["dim"], ffn_dim=d["ffn_dim"], num_heads=d["num_heads"],
                      num_layers=d["num_layers"], in_dim=d["in_dim"], out_dim=d["out_dim"],
                      text_dim=d.get("text_dim", 4096), text_len=d.get("text_len", 512),
                      freq_dim=d.get("freq_dim", 256), eps=d.get("eps", 1e-6), patch_size=tuple(d["patch_size"]),
                      qk_norm=d.get("qk_norm", True), cross_attn_norm=d.get("cross_attn_norm", True))
            if modality == "audio" and "temporal_rope_scaling_factor" in d:
                kw["audio_rope_scale"] = float(d["temporal_rope_scaling_factor"])
            towers.append(config_mod.TowerConfig(**kw))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{f}: not a usable Ovi model config ({type(e).__name__}: {e}); it needs "
                                  "dim, ffn_dim, num_heads, num_layers, in_dim, out_dim, patch_size") from None
    meta = config_mod.get_config("5b-global").meta
    return config_mod.HarmonyConfig(video=towers[0], audio=towers[1], interaction="global", audio_rope="ovi",
                                    prediction="velocity", meta=dict(meta))


def detect(path) -> Found:
    """What ``path`` (a path, or its :class:`harmony.weightfile.Header`) holds, from its header
    alone (see the module docstring)."""
    from . import keymap

    from .weightfile import read_header as checked_header

    header = checked_header(path, check_size=False)  # a Header already read: not parsed again
    path = header.path
    shared, jobs = split_keys(header.tensors)  # a job's own copies (harmony.job_weights) are not the model's
    tensors = {k: (header.tensors[k].dtype, header.tensors[k].shape) for k in shared}
    meta = header.metadata
    keys = [k for k in tensors if k != SCALED_FP8_KEY]
    weight_keys = [k for k in keys if not k.endswith((".scale_weight", ".scale_input"))]
    family = keymap.detect_layout(weight_keys)
    found = Found(path=os.fspath(path), family=family, prefix=_prefix(weight_keys), storage=storage_of(tensors),
                  params=_params(tensors), tensors=len(weight_keys))
    if family != "ovi":  # Ovi's fp8 file is the known example of this storage; others are not Ovi's
        found.storage = found.storage.replace(" (as Ovi's model_fp8_e4m3fn.safetensors)", "")
    if jobs:
        found.notes.append("own weights for " + ", ".join(f"{j} ({len(n)} tensors)" for j, n in jobs.items())
                           + ", used only while that job samples")
    if header.truncated:
        found.notes.append(f"{header.truncation()}: the file is incomplete, download it again")
    if family == "unknown":
        return found
    shapes = {keymap.from_upstream_name(k, family): shape for k, (_, shape) in tensors.items() if k in weight_keys}
    if family == "wan2.2-ti2v-5b":
        from . import config as config_mod

        found.variant = wan_variant(shapes)
        if _matches(tower_sizes(shapes, "video_model"), config_mod.get_config("5b").video):
            found.config_name = "Wan2.2-TI2V-5B video tower"
        found.notes.append("not a Harmony model on its own (no audio tower)")
        return found
    found.interaction = "gldi" if any(_GLDI_ONLY.match(k) for k in shapes) else "global"
    if CONFIG_KEY in meta:
        from . import config as config_mod

        try:
            cfg = config_mod.HarmonyConfig.from_dict(json.loads(meta[CONFIG_KEY]))
        except (ValueError, TypeError) as e:
            found.notes.append(f"its harmony_config metadata is unreadable ({e})")
            return found
        found.config, found.config_source = cfg, "file metadata"
        found.config_name = next((n for n, make in config_mod.CONFIGS.items() if make() == cfg), None)
        found.interaction = cfg.interaction
        return found
    side = read_sidecar_config(path)
    if side is not None:
        found.config, found.config_source = side, "the JSON beside it"
    elif family == "ovi" and read_ovi_configs(path) is not None:
        found.config, found.config_source = read_ovi_configs(path), "Ovi's video.json + audio.json beside it"
    if found.config is not None:
        from . import config as config_mod

        found.config_name = next((n for n, make in config_mod.CONFIGS.items() if make() == found.config), None)
        return found
    name, cfg = match_named_config(shapes, found.interaction)
    if cfg is not None:
        found.config, found.config_name, found.config_source = cfg, name, "tensor shapes"
    else:
        found.notes.append("its sizes match no named config: put a config JSON beside it")
    return found


def describe(path) -> str:
    """``detect(path).line()``."""
    return detect(path).line()


def ovi_config(path):
    """The config an Ovi-layout file without metadata loads with: Ovi's ``video.json`` +
    ``audio.json`` beside it, else the global named config of the header's sizes, else
    ``5b-global`` (Ovi's public size; a file of another size then fails the shape check)."""
    from . import config as config_mod
    from . import keymap

    side = read_ovi_configs(path)
    if side is not None:
        return side
    tensors, _ = read_header(path)
    shapes = {keymap.from_upstream_name(k, "ovi"): shape for k, (_, shape) in tensors.items()}
    _, cfg = match_named_config(shapes, "global")
    return cfg if cfg is not None else config_mod.get_config("5b-global")


def config_name(cfg) -> Optional[str]:
    """The name of the named config equal to ``cfg`` (``"5b"``, ``"tiny-global"``, ...), or None."""
    from . import config as config_mod

    return next((n for n, make in config_mod.CONFIGS.items() if make() == cfg), None)


def detect_layout(file_keys) -> str:
    """``keymap.detect_layout`` of a file's tensor names (the scaled-fp8 marker left out)."""
    from . import keymap

    return keymap.detect_layout([k for k in file_keys if k != SCALED_FP8_KEY])


# --------------------------------------------------------------------------- the config of a file


def sidecar_config_paths(path) -> list[str]:
    """Where a config for a checkpoint without ``harmony_config`` metadata is looked for, in order:
    ``<name>.json`` beside ``<name>.safetensors``, then ``config.json`` in the same folder."""
    path = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(path)
    stem = name[: -len(".safetensors")] if name.endswith(".safetensors") else os.path.splitext(name)[0]
    return [os.path.join(folder, stem + ".json"), os.path.join(folder, "config.json")]


CONFIG_REMEDY = ('write its config beside it as {sidecar} - either {{"config": "<name>"}} with one of '
                 '{names}, or a full config dict (HarmonyConfig.to_dict()); the Harmony Model Loader node '
                 'and `python -m harmony generate --model` read it from there')


def config_remedy(path) -> str:
    """What to do for a file whose config is unknown: write it beside the file (in words)."""
    from . import config as config_mod

    return CONFIG_REMEDY.format(sidecar=os.path.basename(sidecar_config_paths(path)[0]),
                                names=", ".join(config_mod.CONFIGS))


def read_sidecar_config(path):
    """The config in a JSON file beside checkpoint ``path`` (see :func:`sidecar_config_paths`),
    or None when there is none. Accepts a config name (``"5b"``), ``{"config": "5b"}``, a full
    ``HarmonyConfig.to_dict()`` or ``{"harmony_config": ...}`` holding either."""
    from . import config as config_mod

    for side in sidecar_config_paths(path):
        if not os.path.isfile(side):
            continue
        try:
            with open(side, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{side}: config file beside {os.path.basename(path)} is not valid JSON "
                                  f"({e}); fix it or remove it") from None
        if isinstance(data, dict) and "harmony_config" in data:
            data = data["harmony_config"]
            if isinstance(data, str) and data.strip().startswith("{"):
                data = json.loads(data)
        if isinstance(data, dict) and set(data) == {"config"}:
            data = data["config"]
        try:
            if isinstance(data, str):
                return config_mod.get_config(data)
            if isinstance(data, dict) and "video" in data and "audio" in data:
                return config_mod.HarmonyConfig.from_dict(data)
        except ValueError as e:
            raise CheckpointError(f"{side}: {e}") from None
        if os.path.basename(side) == "config.json":
            continue  # a config.json of another kind (e.g. Wan's or diffusers'): not ours, not an error
        keys = ", ".join(list(data)[:6]) if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{side} is not a Harmony config (it holds {keys}); write "
                              '{"config": "<name>"} or a HarmonyConfig dict there')
    return None


def resolve_config(config, header):
    """The config a model file loads with: ``config`` when given (a HarmonyConfig, its dict or a
    name), else the ``harmony_config`` metadata, a JSON beside the file, Ovi's own configs or the
    named config the header's shapes match; a :class:`CheckpointError` saying what to do otherwise.
    ``header``: the file's checked :class:`harmony.weightfile.Header` (nothing is read again)."""
    metadata, path, file_keys = header.metadata, header.path, header.keys()
    from . import config as config_mod

    if config is None:
        text = metadata.get(CONFIG_KEY)
        if text is None:
            side = read_sidecar_config(path)
            if side is not None:
                return side
        layout = detect_layout(file_keys) if text is None else None
        if text is None and layout == "ovi":
            # Ovi's FusionModel layout: its video.json/audio.json beside it, else the global config
            # whose sizes the header shows, else Ovi's public size (then the shape check explains)
            return ovi_config(header)
        if text is None and layout == "wan2.2-ti2v-5b":
            raise CheckpointError(
                f"{path} is {wan_name(header)} video-only checkpoint (a bare WanModel: it has no audio tower), so "
                "it cannot be a Harmony model, which needs both towers. Use a Harmony or Ovi checkpoint here; "
                "load a Wan model alone with ComfyUI's Load Diffusion Model node.")
        if text is None and layout == "unknown":
            raise CheckpointError(
                f"{path} has no '{CONFIG_KEY}' metadata and its tensor names match no model family this "
                "package knows (Harmony, Ovi, Wan2.2): it is not a Harmony model file. Pick a Harmony "
                "model (.safetensors with its .text.safetensors beside it) or the bundled tiny model.")
        if text is None:
            raise CheckpointError(
                f"{path} is a Harmony-layout checkpoint without '{CONFIG_KEY}' metadata, so the model size "
                f"is unknown. To load it, {config_remedy(path)}. Pass config= (a HarmonyConfig or a config name) "
                "when calling harmony.checkpoint.load_model directly.")
        version = metadata.get(VERSION_KEY, FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise CheckpointError(
                f"{path} has {VERSION_KEY}={version!r}; this version of harmony reads {FORMAT_VERSION!r}"
            )
        try:
            config = json.loads(text)
        except ValueError:
            raise CheckpointError(f"{path}: its '{CONFIG_KEY}' metadata is not valid JSON") from None
    if isinstance(config, str):
        return config_mod.get_config(config)
    if isinstance(config, dict):
        return config_mod.HarmonyConfig.from_dict(config)
    return config
