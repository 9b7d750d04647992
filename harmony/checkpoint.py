"""Safetensors checkpoints: save, load into a chosen storage dtype, fp8 / scaled fp8.

File format: a safetensors file whose metadata holds the model config as JSON
under ``"harmony_config"`` and the format version under
``"harmony_format_version"``. Tensor names are the model's state-dict names
(``video_model.blocks.0.self_attn.q.weight``, ...); upstream layouts (Wan2.2,
Ovi) are renamed by ``harmony.keymap`` on load.

fp8 storage follows the ComfyUI scaled-fp8 convention: a top-level
``scaled_fp8`` tensor (empty; its dtype names the fp8 format) and, per
quantised layer, ``<name>.scale_weight`` (float32 scalar); the real weight is
``fp8_weight * scale_weight``. Only the Linear weights inside the transformer
blocks are quantised; norms, biases, modulation tables, embeddings and heads
keep their precision.

Storage dtype (what the weights are kept in) is separate from compute dtype
(what the activations use): the cast-on-use layers of ``harmony.ops`` cast
each weight to the activation dtype when it is used; the caller (e.g. the
pipeline) picks the compute dtype.

Checkpoints are never unpickled: ``.pt`` / ``.ckpt`` / ``.bin`` files are
refused with a message saying to convert them to safetensors.
"""
from __future__ import annotations

import json
import os
import re
import struct
from contextlib import contextmanager

import torch
import torch.nn as nn
from safetensors.torch import save_file

from .weightfile import CheckpointError, TensorReader, WeightFileError  # noqa: F401 (re-exported)
from .weightfile import read_header as _read_header

FORMAT_VERSION = "1"
CONFIG_KEY = "harmony_config"
VERSION_KEY = "harmony_format_version"
SCALED_FP8_KEY = "scaled_fp8"

DTYPES = {
    "auto": None,  # keep what the file stores
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
    "fp32": torch.float32,
    "fp8_e4m3fn": torch.float8_e4m3fn,
    "fp8_e5m2": torch.float8_e5m2,
}
"""Storage dtypes accepted by ``load_model(dtype=...)``."""

FP8_FORMATS = {
    "e4m3fn": (torch.float8_e4m3fn, False),
    "e5m2": (torch.float8_e5m2, False),
    "scaled_e4m3fn": (torch.float8_e4m3fn, True),
}
"""``save_model(fp8=...)`` choices: name -> (fp8 dtype, with scale_weight)."""

FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle")


# --------------------------------------------------------------------------- dtypes



def state_dict_mismatch(sd, expected) -> str | None:
    """What keeps the tensors ``sd`` from loading into a module whose state dict is ``expected``:
    ``"N missing (e.g. ...), N unexpected (e.g. ...), N wrong shapes (e.g. ...)"``, or None."""
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(expected[k].shape)}"
             for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)]
    if not (missing or unexpected or wrong):
        return None
    return (f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected "
            f"(e.g. {unexpected[:3]}), {len(wrong)} wrong shapes (e.g. {wrong[:2]})")

def parse_dtype(dtype) -> torch.dtype | None:
    """Storage dtype for a name in ``DTYPES`` (``None`` for "auto") or a torch dtype."""
    if isinstance(dtype, torch.dtype):
        if dtype not in [d for d in DTYPES.values() if d is not None]:
            raise ValueError(f"unsupported storage dtype {dtype}; expected one of {list(DTYPES)}")
        return dtype
    if dtype is None:
        return None
    if dtype not in DTYPES:
        raise ValueError(
            f"unknown dtype {dtype!r}; expected one of: {', '.join(DTYPES)}"
        )
    return DTYPES[dtype]


def weight_bytes(model: nn.Module) -> int:
    """Bytes of everything the model saves (parameters and persistent buffers)."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


# --------------------------------------------------------------------------- fp8


def quantizable_weights(model: nn.Module) -> list[str]:
    """State-dict names of the Linear weights inside transformer blocks.

    These are the tensors fp8 storage quantises; everything else keeps its
    precision.
    """
    names = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and "blocks" in name.split("."):
            names.append(f"{name}.weight")
    return names


def quantize_fp8(weight: torch.Tensor, fp8_dtype: torch.dtype, scaled: bool):
    """``(fp8 weight, scale or None)`` with ``weight ≈ fp8.float() * scale``.

    The scale is one float32 scalar per tensor (ComfyUI's convention):
    ``max|w| / fp8_max``, so the largest weight maps to the top of the fp8 range.
    Values beyond the fp8 range are clamped (no inf / NaN).
    """
    w = weight.detach().float()
    fp8_max = torch.finfo(fp8_dtype).max
    if not scaled:
        return w.clamp(-fp8_max, fp8_max).to(fp8_dtype), None
    scale = (w.abs().max() / fp8_max).clamp(min=torch.finfo(torch.float32).tiny)
    return (w / scale).clamp(-fp8_max, fp8_max).to(fp8_dtype), scale.reshape(())


def _real_weight(weight: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """The float32 weight a (possibly scaled fp8) stored weight stands for."""
    w = weight.float()
    if scale is None:
        return w
    scale = scale.float()
    if scale.numel() > 1:
        scale = scale.reshape(-1, *([1] * (w.dim() - 1)))
    return w * scale


# --------------------------------------------------------------------------- save


def save_model(model: nn.Module, path, metadata: dict | None = None, dtype=None, fp8: str | None = None):
    """Write ``model`` to a safetensors file at ``path``.

    dtype: "bf16" | "fp16" | "fp32" | None (keep) for every floating tensor that
    is not fp8-quantised. fp8: None | "e4m3fn" | "e5m2" | "scaled_e4m3fn" for the
    block Linear weights. The file is written to a temporary name and renamed,
    so a failed save leaves nothing behind.
    """
    out_dtype = parse_dtype(dtype)
    if out_dtype in FP8_DTYPES:
        raise ValueError(f"dtype={dtype!r} is for loading; to write fp8 use fp8= one of {list(FP8_FORMATS)}")
    if fp8 is not None and fp8 not in FP8_FORMATS:
        raise ValueError(f"unknown fp8 format {fp8!r}; expected one of: {', '.join(FP8_FORMATS)} (or None)")

    state = model.state_dict()
    quantize = set(quantizable_weights(model)) if fp8 else set()
    tensors: dict[str, torch.Tensor] = {}
    any_scale = False
    for key, t in state.items():
        if key.endswith(".scale_weight") or key == SCALED_FP8_KEY:
            continue  # written together with its weight
        if t.is_meta:
            raise CheckpointError(f"cannot save {key}: it is on the meta device (weights were never loaded)")
        scale_key = key[: -len("weight")] + "scale_weight" if key.endswith(".weight") else None
        scale = state.get(scale_key) if scale_key else None
        if key in quantize:
            fp8_dtype, scaled = FP8_FORMATS[fp8]
            q, new_scale = quantize_fp8(_real_weight(t, scale), fp8_dtype, scaled)
            tensors[key] = q
            if new_scale is not None:
                tensors[scale_key] = new_scale
                any_scale = True
        elif t.dtype in FP8_DTYPES and out_dtype is not None:
            tensors[key] = _real_weight(t, scale).to(out_dtype)  # dequantise
        elif t.dtype in FP8_DTYPES:
            tensors[key] = t  # keep stored fp8 (and its scale) as is
            if scale is not None:
                tensors[scale_key] = scale.float()
                any_scale = True
        elif out_dtype is not None and t.is_floating_point():
            tensors[key] = t.to(out_dtype)
        else:
            tensors[key] = t
    if any_scale:
        fp8_dtype = next(t.dtype for k, t in tensors.items() if t.dtype in FP8_DTYPES)
        tensors[SCALED_FP8_KEY] = torch.empty(0, dtype=fp8_dtype)
    tensors = {k: t.detach().to("cpu").contiguous() for k, t in tensors.items()}

    meta = {VERSION_KEY: FORMAT_VERSION, "format": "pt"}
    cfg = getattr(model, "cfg", None)
    if cfg is not None and hasattr(cfg, "to_dict"):
        meta[CONFIG_KEY] = json.dumps(cfg.to_dict())
    if fp8:
        meta["harmony_fp8"] = fp8
    for k, v in (metadata or {}).items():
        meta[str(k)] = v if isinstance(v, str) else json.dumps(v)

    return save_safetensors(tensors, path, meta)


def save_safetensors(tensors: dict, path, metadata: dict | None = None) -> str:
    """Write ``tensors`` to ``path`` atomically (a temporary file, then a rename):
    an interrupted or failed write leaves no half-written file behind."""
    from .files import atomic_path
    from .validate import InputError, is_system_path

    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent) and not is_system_path(parent):
        os.makedirs(parent, exist_ok=True)
    try:  # only an absent target or a regular file is ever replaced (a symlink: its target)
        with atomic_path(path) as tmp:
            save_file(tensors, tmp, metadata=metadata)
    except InputError as e:
        raise CheckpointError(str(e)) from None
    return path


def convert(in_path, out_path, fp8: str | None = None, dtype=None, config=None):
    """Re-write a checkpoint (any layout ``load_model`` reads) in our layout.

    ``python -m harmony convert IN OUT --fp8 scaled_e4m3fn``. Weights are read
    in the file's own dtype, so quantising starts from the stored precision.
    """
    if os.path.exists(out_path) and os.path.exists(in_path) and os.path.samefile(in_path, out_path):
        raise ValueError(f"convert: output {out_path} is the input file; choose another output path")
    model = load_model(in_path, dtype="auto", device="cpu", config=config)
    return save_model(model, out_path, metadata={"converted_from": os.path.basename(os.fspath(in_path))},
                      dtype=dtype, fp8=fp8)


# --------------------------------------------------------------------------- load


def safetensors_header(path, what: str = "checkpoint", check_size: bool = True):
    """The checked header (:class:`harmony.weightfile.Header`) of the safetensors file ``path``;
    a clear error otherwise (naming ``what``: a flag, a node input, "checkpoint", ...).

    Reads only the 8-byte length and the JSON header (never maps the file, never unpickles):
    the dtypes, shapes and offsets of every tensor are checked against the file's size."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{what}: expected a file path, got {type(path).__name__}")
    path = os.fspath(path)
    if not path:
        raise WeightFileError(f"{what}: the path is empty; give a .safetensors file", what, path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    if os.path.isdir(path):
        raise WeightFileError(f"{what} path {path} is a folder; pass the .safetensors file inside it", what, path)
    if path.lower().endswith(PICKLE_SUFFIXES):
        raise WeightFileError(
            f"{what} {path} is not a safetensors file (suffix {os.path.splitext(path)[1]!r}). Harmony loads weights "
            "from safetensors only and never unpickles checkpoints (.pt/.pth/.ckpt/.bin can run code when loaded). "
            "Convert it to safetensors in an environment you trust (torch.load, then safetensors.torch.save_file) "
            "and load that file.", what, path)
    return _read_header(path, what, check_size=check_size)


def check_safetensors_file(path, what: str = "checkpoint") -> str:
    """Return ``path`` if it is a readable, whole safetensors file; raise a clear error otherwise
    (:func:`safetensors_header`). ``what`` names the file in messages ("--model", "codec weights", ...)."""
    safetensors_header(path, what)
    return os.fspath(path)


def read_config(path, config=None, what: str = "checkpoint"):
    """The config ``load_model`` would use for ``path``, from the file header only (no weights
    read); raises the same errors for another model family or a missing config."""
    header = safetensors_header(path, what)
    return _resolve_config(config, header.metadata, os.fspath(path), header.keys())


def load_model(path, dtype="auto", device="cpu", config=None, ops=None, what: str = "checkpoint"):
    """Build a ``HarmonyModel`` from a safetensors file, tensor by tensor.

    dtype: storage dtype, one of ``DTYPES``. "auto" keeps the file's dtypes
    (fp8 and scaled fp8 stay fp8); "bf16"/"fp16"/"fp32" cast every floating
    tensor (dequantising fp8); "fp8_e4m3fn"/"fp8_e5m2" store the block Linear
    weights in fp8 (with a per-tensor ``scale_weight``; weights already in
    that format are kept as they are) and the rest in the file's dtype.
    The model is built on the meta device and each tensor goes straight to
    ``device`` in its storage dtype: no full-precision copy of the model is made.
    config: a HarmonyConfig, its dict, or a config name; default the file's
    ``harmony_config`` metadata ("5b-global" for an Ovi file without it).
    ComfyUI's optional ``scale_input`` tensors are ignored (activations are not quantised).
    ``what`` names the file in messages (a flag, a node input; default "checkpoint").

    The file is never mapped: the header is read and checked first (offsets against the file
    size, dtypes, shapes; :mod:`harmony.weightfile`), then each tensor is read on its own with
    plain reads and moved to ``device``, so a file larger than RAM loads onto a device with room.
    """
    storage = parse_dtype(dtype)
    header = safetensors_header(path, what)
    path = os.fspath(path)
    device = torch.device(device)
    with TensorReader(header) as f:
        file_keys = header.keys()
        cfg = _resolve_config(config, header.metadata, path, file_keys)
        model = build_empty_model(cfg, ops)
        fresh_ok = _GLDI_FROM_OVI if cfg.interaction == "gldi" and _detect_layout(file_keys) == "ovi" else None
        names = _model_to_file_names(model, file_keys, path, cfg, allow_missing=fresh_ok)
        _check_shapes(model, names, header, path)

        quantize = set(quantizable_weights(model))
        to_fp8 = storage in FP8_DTYPES
        state = {}
        for key, file_key in names.items():
            t = f.get(file_key)
            scale_key = file_key[: -len("weight")] + "scale_weight" if file_key.endswith(".weight") else None
            scale = f.get(scale_key) if scale_key in names.file_scales else None
            if key in quantize and to_fp8 and t.dtype != storage:
                stored, scale = quantize_fp8(_real_weight(t, scale), storage, scaled=True)
            elif t.dtype in FP8_DTYPES and (storage is None or to_fp8):
                stored = t  # already fp8: keep it and its scale
            elif t.dtype in FP8_DTYPES:
                stored, scale = _real_weight(t, scale).to(storage), None  # dequantise
            elif storage is not None and not to_fp8 and t.is_floating_point():
                stored = t.to(storage)
            else:
                stored = t  # "auto", and the non-quantised tensors of fp8 storage: the file's dtype
            state[key] = stored.to(device)
            if scale is not None:
                module = model.get_submodule(key.rsplit(".", 1)[0])
                module.register_buffer("scale_weight", torch.empty((), device="meta"))
                state[key[: -len("weight")] + "scale_weight"] = scale.float().to(device)
    model.load_state_dict(state, strict=not names.fresh, assign=True)
    model.fresh_keys = _init_fresh(model, names.fresh, storage, device, ops) if names.fresh else []
    left = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if left:
        raise CheckpointError(f"{path}: these tensors were not loaded (model bug?): {_listing(left)}")
    model.eval()
    from .families import detect

    found = detect(path)
    found.config, found.config_name = cfg, next((n for n, make in _config_names() if make() == cfg), None)
    found.interaction = cfg.interaction
    if config is not None:
        found.config_source = "the config asked for"
    if model.fresh_keys:
        found.notes.append(f"initialised fresh ({len(model.fresh_keys)} tensors, GLDI style alignment at its "
                           f"identity init): {_listing(model.fresh_keys, 4)}")
    model.load_summary = found.line()
    return model


_GLDI_FROM_OVI = re.compile(r"^audio_model\.blocks\.\d+\.(norm_style|style_attn)\.")
"""Model keys an Ovi file cannot hold when it initialises a GLDI model: the style-alignment modules."""


def _config_names():
    from . import config as config_mod

    return config_mod.CONFIGS.items()


def _init_fresh(model: nn.Module, fresh: list, storage, device, ops) -> list:
    """Give the audio blocks whose style-alignment weights the file lacks new modules at their
    init (the output projection is zero, so each starts as the identity); returns the keys."""
    from .interaction import add_style_alignment
    from .ops import default_ops

    blocks = sorted({int(k.split(".")[2]) for k in fresh})
    for i in blocks:
        block = model.audio_model.blocks[i]
        like = block.self_attn.q.weight.dtype
        dtype = storage if storage is not None and storage not in FP8_DTYPES else like
        if dtype in FP8_DTYPES:
            dtype = torch.float32
        add_style_alignment(block, model.cfg.audio, ops if ops is not None else default_ops, model.attend)
        block.norm_style.to(device=device, dtype=dtype)
        block.style_attn.to(device=device, dtype=dtype)
    return sorted(fresh)


# --------------------------------------------------------------------------- load helpers


def build_empty_model(cfg, ops=None) -> nn.Module:
    """``HarmonyModel(cfg, ops)`` with parameters on the meta device (no memory).

    Buffers are built normally (they are small and may be computed tables that
    a checkpoint does not hold).
    """
    from .model import HarmonyModel

    with _parameters_on_meta():
        return HarmonyModel(cfg, ops) if ops is not None else HarmonyModel(cfg)


@contextmanager
def _parameters_on_meta():
    """While active, every parameter a module registers is moved to the meta device."""
    register = nn.Module.register_parameter

    def register_on_meta(module, name, param):
        register(module, name, param)
        if param is not None and not param.is_meta:
            module._parameters[name] = type(param)(param.to("meta"), requires_grad=param.requires_grad)

    nn.Module.register_parameter = register_on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register


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


def _remedy(path) -> str:
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


def _resolve_config(config, metadata: dict, path: str, file_keys):
    from . import config as config_mod

    if config is None:
        text = metadata.get(CONFIG_KEY)
        if text is None:
            side = read_sidecar_config(path)
            if side is not None:
                return side
        layout = _detect_layout(file_keys) if text is None else None
        if text is None and layout == "ovi":
            # Ovi's FusionModel layout: its video.json/audio.json beside it, else the global config
            # whose sizes the header shows, else Ovi's public size (then the shape check explains)
            from .families import ovi_config

            return ovi_config(path)
        if text is None and layout == "wan2.2-ti2v-5b":
            from .families import wan_name

            raise CheckpointError(
                f"{path} is {wan_name(path)} video-only checkpoint (a bare WanModel: it has no audio tower), so "
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
                f"is unknown. To load it, {_remedy(path)}. Pass config= (a HarmonyConfig or a config name) "
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


def _detect_layout(file_keys) -> str:
    from . import keymap

    return keymap.detect_layout([k for k in file_keys if k != SCALED_FP8_KEY])


class _Names(dict):
    """model key -> file key, plus the file's ``scale_weight`` keys."""

    file_scales: set
    fresh: list


def _model_to_file_names(model: nn.Module, file_keys, path: str, cfg, allow_missing=None) -> _Names:
    """Match the model's state-dict keys to the file's; raise listing any mismatch.

    ``allow_missing``: a regex of model keys the file may lack (``names.fresh`` lists them)."""
    ignored = {k for k in file_keys if k == SCALED_FP8_KEY or k.endswith((".scale_weight", ".scale_input"))}
    weight_keys = [k for k in file_keys if k not in ignored]
    rename = _upstream_renames(weight_keys)  # file key -> model key
    model_keys = [k for k in model.state_dict().keys()]
    by_model = {}
    for k in weight_keys:
        ours = rename.get(k, k)
        if ours in by_model:
            raise CheckpointError(f"{path}: tensors {by_model[ours]!r} and {k!r} both map to {ours!r}; "
                                  "the file mixes key layouts")
        by_model[ours] = k
    missing = [k for k in model_keys if k not in by_model]
    fresh = [k for k in missing if allow_missing is not None and allow_missing.match(k)]
    missing = [k for k in missing if k not in set(fresh)]
    unexpected = [k for k in weight_keys if rename.get(k, k) not in set(model_keys)]
    if missing or unexpected:
        name = getattr(cfg, "name", None)
        parts = [f"{path}: the checkpoint's tensors do not match the model"
                 + (f" (config {name!r})" if name else "") + "."]
        if missing:
            parts.append(f"  missing from the file ({len(missing)}): {_listing(missing)}")
        if unexpected:
            parts.append(f"  unexpected in the file ({len(unexpected)}): {_listing(unexpected)}")
        parts.append(f"  hint: {_layout_hint(file_keys) or 'the key set matches no known layout'}. "
                     "Check that the file and the config are for the same model.")
        raise CheckpointError("\n".join(parts))
    names = _Names((k, by_model[k]) for k in model_keys if k in by_model)
    names.fresh = fresh
    names.file_scales = {k for k in ignored if k.endswith(".scale_weight")}
    return names


def _check_shapes(model: nn.Module, names: dict, header, path: str):
    """Compare every tensor's shape in the file header with the model, before loading any."""
    expected = model.state_dict()
    bad = []
    for key, file_key in names.items():
        shape = tuple(header.shape(file_key))
        want = tuple(expected[key].shape)
        if shape != want:
            bad.append(f"{file_key}: file {list(shape)} vs model {list(want)}")
    if bad:
        raise CheckpointError(
            f"{path}: {len(bad)} tensor(s) have the wrong shape for this model config: "
            + "; ".join(bad[:10]) + (f"; ... ({len(bad) - 10} more)" if len(bad) > 10 else "")
            + f". The checkpoint was made for a different model size ({_layout_hint(names.values()) or 'family unknown'}"
            f"); {_remedy(path)}."
        )


def _listing(keys, first: int = 10) -> str:
    shown = ", ".join(keys[:first])
    return shown + (f", ... (+{len(keys) - first} more)" if len(keys) > first else "")


LAYOUT_NAMES = {
    "harmony": "a Harmony checkpoint (made with a different config? compare its harmony_config metadata)",
    "ovi": "an Ovi FusionModel checkpoint (load it with config='5b-global')",
    "wan2.2-ti2v-5b": "a Wan (2.1 or 2.2) video-only checkpoint (a bare WanModel: it has no audio tower)",
}
"""What ``keymap.detect_layout`` ids mean, for error messages."""


def _upstream_renames(file_keys) -> dict:
    """file key -> our key, for upstream layouts and wrapper prefixes (``harmony.keymap``)."""
    from . import keymap

    layout = _detect_layout(file_keys)
    if layout not in keymap.LAYOUTS:
        layout = "harmony"  # unknown: only strip wrapper prefixes
    renames = {k: keymap.from_upstream_name(k, layout) for k in file_keys}
    return {k: ours for k, ours in renames.items() if ours != k}


def _layout_hint(file_keys) -> str:
    """"this looks like ..." from ``keymap.detect_layout``, or ""."""
    from . import keymap

    layout = _detect_layout(file_keys)
    return f"this looks like {LAYOUT_NAMES[layout]}" if layout in LAYOUT_NAMES else ""
