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
from contextlib import contextmanager

import torch
import torch.nn as nn

from .families import CONFIG_KEY, FORMAT_VERSION, SCALED_FP8_KEY, VERSION_KEY, config_name, detect, detect_layout, \
    resolve_config
from .job_weights import job_key, split_keys, tuned_tensors
from .keymatch import GLDI_FROM_OVI, check_shapes, listing, match_names
from .weightfile import CheckpointError, TensorReader, read_header, save_safetensors

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


# --------------------------------------------------------------------------- dtypes



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


def to_fp8_(model: nn.Module):
    """Block Linear weights -> scaled float8_e4m3fn in place, as ``load_model(dtype="fp8_e4m3fn")``
    stores them (each with its ``scale_weight``)."""
    for key in quantizable_weights(model):
        module = model.get_submodule(key.rsplit(".", 1)[0])
        q, scale = quantize_fp8(module.weight.data, torch.float8_e4m3fn, scaled=True)
        module.weight.data = q
        module.register_buffer("scale_weight", scale)


def real_weight(weight: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
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

    state = dict(model.state_dict())
    own = getattr(model, "job_tensors", None) or {}  # each job's own tensors, under their file names
    for job, ts in own.items():
        state.update({job_key(job, k): t for k, t in ts.items()})
    quantize = set(quantizable_weights(model)) if fp8 else set()
    quantize |= {job_key(job, k) for job, ts in own.items() for k in ts if k in quantize}
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
            q, new_scale = quantize_fp8(real_weight(t, scale), fp8_dtype, scaled)
            tensors[key] = q
            if new_scale is not None:
                tensors[scale_key] = new_scale
                any_scale = True
        elif t.dtype in FP8_DTYPES and out_dtype is not None:
            tensors[key] = real_weight(t, scale).to(out_dtype)  # dequantise
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


def write_job_file(shared_path: str, out_path: str, jobs: dict, only: str | dict = "", settings: dict | None = None,
                   codecs: dict | None = None, jobs_from: str | None = None) -> dict:
    """Write ``out_path``: the shared file's tensors and metadata, plus each job's own copy of
    the tensors that differ (and whose names match ``only``, a regular expression such as the
    fine-tune's ``train --trainable``, when given; or ``{job: expression}``, each job its own, the
    key ``""`` for the jobs not named: V2A trained its audio blocks, I2AV its video blocks). ``jobs``: ``{job: tuned export file}``, each
    fine-tuned from the shared file with its text encoder frozen. ``settings``: ``{job: {"sv": ..,
    "shift": ..}}``, sampling settings tuned for a job, recorded in the config's
    ``meta["sampling"]["jobs"]`` (jobs.tuned_settings). The shared ``.text.safetensors``
    is copied beside ``out_path`` (harmony.job_weights). ``codecs``: ``{"sha256": .., "from": ..,
    "latent_shift": ..}``, a stand-in codec file to pin instead of the trained-with one (checked by
    the caller with ``harmony.codecs.tiny.latent_shift``). ``jobs_from``: another model file whose
    job tensors (``jobs.<JOB>.*``, those matching ``only``) are copied as they are, for the jobs not in
    ``jobs``: a move to a new codec starts the jobs' own weights where they were. Returns ``{job:
    tensors stored}``."""
    from .weightfile import read_safetensors

    shared, meta = read_safetensors(shared_path, "shared weights")
    if (jobs or jobs_from) and split_keys(shared)[1]:  # settings and a codec pin alone keep the file's job tensors as they are
        raise ValueError(f"{shared_path}: already holds job weights; give the file with the shared weights only")
    text_path = shared_path.replace(".safetensors", ".text.safetensors")
    text, text_meta = read_safetensors(text_path, "shared text encoder") if os.path.isfile(text_path) else (None, None)
    out, counts = dict(shared), {}

    def only_for(job):
        return only.get(job, only.get("", "")) if isinstance(only, dict) else only

    for job, path in jobs.items():
        tuned, _ = read_safetensors(path, f"{job} weights")
        tuned_text = path.replace(".safetensors", ".text.safetensors")
        if text is not None and os.path.isfile(tuned_text):
            theirs, _ = read_safetensors(tuned_text, f"{job} text encoder")
            if text.keys() != theirs.keys() or any(not torch.equal(v, theirs[k].to(v.dtype)) for k, v in text.items()):
                raise ValueError(f"{tuned_text}: the {job} fine-tune changed the text encoder, which every job "
                                 "shares; fine-tune with --trainable so that it stays frozen")
        own = tuned_tensors(shared, tuned, only_for(job))
        if not own:
            raise ValueError(f"{path}: no tensor{' matching ' + repr(only_for(job)) if only_for(job) else ''} differs "
                             f"from {shared_path}; is it the fine-tuned file?")
        out.update({job_key(job, k): t for k, t in own.items()})
        counts[job] = len(own)
    if jobs_from:
        theirs, _ = read_safetensors(jobs_from, "jobs' weights to copy")
        for job, names in split_keys(theirs)[1].items():
            if job in jobs:
                continue
            pattern = re.compile(only_for(job)) if only_for(job) else None
            names = {n: k for n, k in names.items() if pattern is None or pattern.search(n)}
            for name, key in names.items():
                if name not in shared or shared[name].shape != theirs[key].shape:
                    raise ValueError(f"{jobs_from}: {key} has no tensor of its shape in {shared_path} "
                                     f"({name}); copy job weights only between files of one config")
                out[key] = theirs[key]
            if names:
                counts[job] = len(names)
        if not counts.keys() - jobs.keys():
            raise ValueError(f"{jobs_from}: holds no job tensors{' matching --only' if only else ''} "
                             "for another job than --job's; give a file written by job-weights")
    meta = dict(meta)
    if counts:
        meta["job_weights"] = ",".join(f"{j}:{n}" for j, n in counts.items())
    if settings or codecs:
        if CONFIG_KEY not in meta:
            raise ValueError(f"{shared_path}: records no Harmony config, so it has no place for tuned sampling "
                             "settings or a codec pin; give a file written by `train` or `convert`")
        cfg = json.loads(meta[CONFIG_KEY])
        if settings:
            sampling = cfg.setdefault("meta", {}).setdefault("sampling", {})
            sampling.setdefault("jobs", {}).update(
                {j: {k: float(v) for k, v in s.items()} for j, s in settings.items()})
        if codecs:
            cfg.setdefault("meta", {}).update(codecs_sha256=codecs["sha256"], codecs_stand_in=codecs)
        meta[CONFIG_KEY] = json.dumps(cfg)
    save_safetensors(out, out_path, meta)
    if text is not None:
        save_safetensors(text, out_path.replace(".safetensors", ".text.safetensors"), text_meta)
    return counts


def read_config(path, config=None, what: str = "checkpoint"):
    """The config ``load_model`` would use for ``path`` (a path, or its
    :class:`harmony.weightfile.Header`), from the file header only (no weights read); raises the same errors for another model family or a missing config."""
    header = read_header(path, what)
    return resolve_config(config, header)


def load_model(path, dtype="auto", device="cpu", config=None, ops=None, what: str = "checkpoint"):
    """Build a ``HarmonyModel`` from a safetensors file (a path, or its already-read
    :class:`harmony.weightfile.Header`), tensor by tensor.

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
    header = read_header(path, what)
    path = header.path
    device = torch.device(device)
    with TensorReader(header) as f:
        file_keys, job_keys = split_keys(header.keys())  # jobs.<JOB>.<name>: harmony.job_weights
        cfg = resolve_config(config, header)
        model = build_empty_model(cfg, ops)
        fresh_ok = GLDI_FROM_OVI if cfg.interaction == "gldi" and detect_layout(file_keys) == "ovi" else None
        names = match_names(model, file_keys, path, cfg, allow_missing=fresh_ok)
        check_shapes(model, names, header, path)

        quantize = set(quantizable_weights(model))
        to_fp8 = storage in FP8_DTYPES

        scales = {k for k in header.keys() if k.endswith(".scale_weight")}

        def stored(key, file_key):
            """``{state name: tensor}`` of one file tensor in its storage dtype (and its fp8 scale)."""
            t = f.get(file_key)
            scale_key = file_key[: -len("weight")] + "scale_weight" if file_key.endswith(".weight") else None
            scale = f.get(scale_key) if scale_key in scales else None
            if key in quantize and to_fp8 and t.dtype != storage:
                t, scale = quantize_fp8(real_weight(t, scale), storage, scaled=True)
            elif t.dtype in FP8_DTYPES and (storage is None or to_fp8):
                pass  # already fp8: keep it and its scale
            elif t.dtype in FP8_DTYPES:
                t, scale = real_weight(t, scale).to(storage), None  # dequantise
            elif storage is not None and not to_fp8 and t.is_floating_point():
                t = t.to(storage)
            # else "auto", and the non-quantised tensors of fp8 storage: the file's dtype
            out = {key: t.to(device)}
            if scale is not None:
                out[key[: -len("weight")] + "scale_weight"] = scale.float().to(device)
            return out

        state = {}
        for key, file_key in names.items():
            state.update(stored(key, file_key))
            if key[: -len("weight")] + "scale_weight" in state:
                module = model.get_submodule(key.rsplit(".", 1)[0])
                module.register_buffer("scale_weight", torch.empty((), device="meta"))
        by_model = dict(names.items())
        jobs = {}
        for job, entries in job_keys.items():
            entries = {n: k for n, k in entries.items() if not n.endswith((".scale_weight", ".scale_input"))}
            unknown = [n for n in entries if n not in by_model]  # (an fp8 scale is read with its weight)
            if unknown:
                raise CheckpointError(f"{path}: job tensors for {job} name no tensor of the model: {listing(unknown)}")
            for name, file_key in entries.items():
                if header.shape(file_key) != header.shape(by_model[name]):
                    raise CheckpointError(f"{path}: {file_key} has shape {header.shape(file_key)}, the shared "
                                          f"tensor {header.shape(by_model[name])}")
                jobs.setdefault(job, {}).update(stored(name, file_key))
    model.load_state_dict(state, strict=not names.fresh, assign=True)
    model.job_tensors = jobs
    model.fresh_keys = _init_fresh(model, names.fresh, storage, device, ops) if names.fresh else []
    left = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if left:
        raise CheckpointError(f"{path}: these tensors were not loaded (model bug?): {listing(left)}")
    model.eval()
    found = detect(header)  # the header already read: parsed once
    found.config, found.config_name = cfg, config_name(cfg)
    found.interaction = cfg.interaction
    if config is not None:
        found.config_source = "the config asked for"
    if model.fresh_keys:
        found.notes.append(f"initialised fresh ({len(model.fresh_keys)} tensors, GLDI style alignment at its "
                           f"identity init): {listing(model.fresh_keys, 4)}")
    model.load_summary = found.line()
    return model


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


