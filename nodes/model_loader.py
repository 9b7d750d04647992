"""Harmony Model Loader: a model file -> HARMONY_MODEL (a ``HarmonyPipeline``)."""
from __future__ import annotations

import os

from . import host
from .errors import actionable_errors
from .harmony_lib import attention, checkpoint, families, pipeline, weightfile
from .harmony_lib import offload as harmony_offload
from .types import HARMONY_MODEL, HarmonyInputError

BUNDLED = "(bundled tiny model)"
OFFLOAD_MODES = ("auto", "none", "block_swap", "cpu")


def dtype_names() -> list[str]:
    return list(checkpoint.DTYPES)


def attention_backends() -> list[str]:
    return list(attention.available_backends())


NODE = "Harmony Model Loader"


def model_file_for(model_name: str) -> tuple:
    """``(path, header)``: the model file behind ``model_name`` and its checked safetensors header
    (None for the bundled model), after checking that it and its text-encoder file exist; the
    errors tell a ComfyUI user which file belongs in which folder. The header is read once here
    and handed on (family detection, loading)."""
    if model_name == BUNDLED:
        path = pipeline.DEFAULT_MODEL
        if not os.path.isfile(path):
            raise HarmonyInputError(
                f"{NODE}: the bundled tiny model is missing from the pack ({path}). Reinstall "
                "ComfyUI-Harmony (git clone it again into ComfyUI/custom_nodes/), or pick a model file.")
    else:
        try:
            path = host.model_path(model_name)
        except FileNotFoundError as e:
            raise HarmonyInputError(
                f"{NODE}: model file {model_name!r} was not found in ComfyUI/models/{host.MODEL_FOLDER}/ "
                "or ComfyUI/models/diffusion_models/. Put it in ComfyUI/models/harmony/ (with its "
                ".text.safetensors file beside it), press R to refresh the list, or pick "
                f"'{BUNDLED}'.") from e
    header = None
    if model_name != BUNDLED:  # a truncated, damaged or lying file: one clear error, before anything loads
        try:
            header = weightfile.read_header(path, f"{NODE}: input 'model_name' {model_name!r} ->")
        except weightfile.CheckpointError as e:
            raise HarmonyInputError(str(e)) from None
    if model_name != BUNDLED and not os.path.isfile(text_file(path)) and umt5_conditioned(header):
        return path, header  # text encoder and codecs come from core CLIPLoader / VAELoader nodes
    text = text_file(path)
    if not os.path.isfile(text):
        raise HarmonyInputError(
            f"{NODE}: {os.path.basename(path)} needs its text-encoder file {os.path.basename(text)} in the "
            f"same folder ({os.path.dirname(path)}). A Harmony model comes as two files, <name>.safetensors "
            f"and <name>.text.safetensors: copy both into ComfyUI/models/{host.MODEL_FOLDER}/ and press R. "
            "(Checkpoints conditioned on umT5, Ovi's or a Harmony 5b file, need no such file: they take "
            "core CLIPLoader / VAELoader nodes; see docs/real_weights_comfyui.md.)")
    return path, header


def text_file(path: str) -> str:
    stem = path[: -len(".safetensors")] if path.endswith(".safetensors") else path
    return stem + ".text.safetensors"


def umt5_conditioned(path) -> bool:
    """An Ovi fusion file, or a Harmony file whose config reads umT5-XXL text (the 5b configs):
    its text encoder and codecs come from core nodes (``path``: a path or its header already read;
    no weight is read)."""
    try:
        found = families.detect(path)
    except Exception:  # noqa: BLE001 - an unreadable file: load_model says why
        return False
    if found.family == "ovi":
        return True
    meta = getattr(found.config, "meta", None) or {}
    return found.family == "harmony" and meta.get("text_encoder") == "umt5-xxl"


def resolve_offload(offload: str, device) -> str:
    """``auto`` follows ComfyUI's memory mode: --lowvram -> block swap, --novram -> CPU offload."""
    if offload != "auto":
        return offload
    if device.type == "cpu":
        return "none"
    return {"low_vram": "block_swap", "no_vram": "cpu"}.get(host.vram_mode(), "none")


class HarmonyModelLoader:
    """Loads a Harmony model (both towers, text encoders and codecs)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model_name": ([BUNDLED] + host.model_files(), {
                "default": BUNDLED,
                "tooltip": "The bundled tiny model (runs on CPU), or a .safetensors file from "
                           "models/harmony or models/diffusion_models."}),
            "dtype": (dtype_names(), {
                "default": "auto",
                "tooltip": "Weight storage. auto keeps the file's dtype (scaled-fp8 files are "
                           "recognised and stay fp8); fp8 halves memory again, computing in bf16/fp32."}),
            "offload": (list(OFFLOAD_MODES), {
                "default": "auto",
                "tooltip": "auto follows ComfyUI (--lowvram: block swap, --novram: full CPU offload). "
                           "block_swap keeps resident_blocks layers on the GPU and streams the rest; "
                           "cpu keeps all weights in RAM."}),
            "resident_blocks": ("INT", {
                "default": 4, "min": 0, "max": 64,
                "tooltip": "With block_swap: how many transformer layers stay on the GPU. "
                           "Fewer uses less VRAM and runs slower."}),
            "attention": (attention_backends(), {
                "default": "sdpa",
                "tooltip": "Attention backend; only those importable here are listed."}),
        }}

    RETURN_TYPES = (HARMONY_MODEL, "STRING")
    RETURN_NAMES = ("model", "info")
    OUTPUT_TOOLTIPS = ("The loaded Harmony model, for the text node, sampler and decoder.",
                       "What was loaded, in one line: file, model family, config, weight dtype, "
                       "parameters, device and memory (wire it to core Preview Any to read it).")
    FUNCTION = "load"
    CATEGORY = "Harmony/loaders"
    DESCRIPTION = "Loads a Harmony dual-tower audio-video model."

    def load(self, model_name, dtype, offload, resident_blocks, attention):
        path, header = model_file_for(model_name)
        if dtype not in dtype_names():
            raise HarmonyInputError(f"dtype {dtype!r} is unknown; use one of {dtype_names()}.")
        if attention not in attention_backends():
            raise HarmonyInputError(
                f"attention {attention!r} cannot be used here; available: {attention_backends()}. "
                "Install its package or pick sdpa.")
        device = host.torch_device()
        offload = resolve_offload(offload, device)
        size = os.path.getsize(path)
        if offload == "none":
            host.free_memory_for(size, device)
        with actionable_errors("Harmony Model Loader",
                               "Set offload to block_swap (fewer resident_blocks) or cpu, "
                               "or dtype to fp8_e4m3fn."):
            if model_name != BUNDLED and not os.path.isfile(text_file(path)):
                from .core_inputs import load_core_input_pipeline
                pipe = load_core_input_pipeline(header, dtype, offload, resident_blocks, attention, device)
            else:
                pipe = pipeline.HarmonyPipeline.from_pretrained(
                    path=path, dtype=dtype, offload=offload, resident_blocks=resident_blocks,
                    attention=attention, device=device)
            managed(pipe).load()  # registered with ComfyUI's model management from the start
        summary = load_summary(pipe, path, offload)
        print(f"[Harmony] loaded {summary}")
        return (pipe, summary)


def managed(pipe):
    """The host's handle on the pipeline's network (``host.ManagedModel``), made once per pipeline.

    Not offloaded: ComfyUI's model management owns its placement. Block swap: the
    non-block weights and the first ``resident_blocks`` layers stay on the device, two
    layers at a time are streamed in. CPU offload: nothing stays; the whole model is
    copied in for each run.
    """
    handle = getattr(pipe, "host_model", None)
    if handle is None:
        off = getattr(pipe, "offload", None)
        model = pipe.model
        if off is None:
            handle = host.ManagedModel(model, pipe.device)
        else:
            total = host.module_bytes(model)
            n = len(model.video_model.blocks)
            layers = [sum(host.module_bytes(m) for m in harmony_offload.layer_modules(model, i)) for i in range(n)]
            kept = getattr(off, "resident_blocks", None)
            if kept is None:  # full CPU offload
                resident, working = 0, total
            else:
                resident = total - sum(layers[kept:])
                working = 2 * max(layers[kept:], default=0)  # the running layer + the prefetched one
            handle = host.ManagedModel(model, pipe.device, offloaded=True,
                                       resident_bytes=resident, working_bytes=working)
        pipe.host_model = handle
    return handle


def load_summary(pipe, path: str, offload: str) -> str:
    """One line on what was loaded: the checkpoint's own summary (family, config, storage dtype,
    parameters) when ``harmony.checkpoint`` attaches one, else config sizes, dtype and parameters."""
    model = pipe.model
    params = sum(p.numel() for p in model.parameters())
    line = getattr(model, "load_summary", None)
    if not line:
        cfg = model.cfg
        dtypes = sorted({str(p.dtype).replace("torch.", "") for p in model.parameters()})
        line = (f"{os.path.basename(path)}: {cfg.video.num_layers} layers, dim {cfg.video.dim}, "
                f"weights {'/'.join(dtypes)}, {params / 1e6:.1f}M params")
    handle = managed(pipe)
    where = f"{pipe.device}"
    if offload != "none":
        where += f", offload {offload} ({handle.resident_bytes / 2**20:.0f} MiB resident)"
    return f"{line}; on {where}, {handle.size / 2**20:.0f} MiB of weights"
