"""The one module that talks to ComfyUI.

Every ComfyUI import (``comfy.model_management``, ``comfy.model_patcher``,
``comfy.utils``, ``comfy.cli_args``, ``folder_paths``) happens here, lazily and guarded, so the
pack and its tests import without the host. Without ComfyUI each function
falls back to plain behaviour: the best torch device, no progress bar, no
interrupt, model files from the folder given by ``HARMONY_MODELS_DIR``.
"""
from __future__ import annotations

import importlib
import os
import sys

import torch

MODEL_FOLDER = "harmony"
"""Our key in ComfyUI's model folders: ``models/harmony/`` (plus ``diffusion_models``)."""

MODEL_EXTENSIONS = (".safetensors",)


def _comfy(name: str):
    """A ComfyUI module by name, or None when running without the host."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def available() -> bool:
    """True when running inside ComfyUI."""
    return _comfy("folder_paths") is not None and _comfy("comfy.model_management") is not None


# ----------------------------------------------------------------- model folders


def register_model_folder() -> None:
    """Register ``models/harmony`` with ComfyUI (idempotent); no-op without the host."""
    fp = _comfy("folder_paths")
    if fp is None:
        return
    path = os.path.join(fp.models_dir, MODEL_FOLDER)
    if MODEL_FOLDER in fp.folder_names_and_paths:
        paths, exts = fp.folder_names_and_paths[MODEL_FOLDER]
        if path not in paths:
            paths.append(path)
        fp.folder_names_and_paths[MODEL_FOLDER] = (paths, set(exts) | set(MODEL_EXTENSIONS))
    else:
        fp.folder_names_and_paths[MODEL_FOLDER] = ([path], set(MODEL_EXTENSIONS))


def model_files() -> list[str]:
    """Names of Harmony model files: ``models/harmony`` then ``diffusion_models``.

    Text-encoder side files (``*.text.safetensors``) are not models and are left out.
    """
    fp = _comfy("folder_paths")
    names: list[str] = []
    if fp is None:
        folder = os.environ.get("HARMONY_MODELS_DIR")
        if folder and os.path.isdir(folder):
            names = sorted(f for f in os.listdir(folder) if f.endswith(MODEL_EXTENSIONS))
    else:
        register_model_folder()
        for key in (MODEL_FOLDER, "diffusion_models"):
            try:
                names += [n for n in fp.get_filename_list(key) if n.endswith(MODEL_EXTENSIONS)]
            except Exception:  # noqa: BLE001 - a folder key this ComfyUI version lacks
                continue
    return [n for n in dict.fromkeys(names) if not n.endswith(".text.safetensors")]


def model_path(name: str) -> str:
    """Full path of a model file listed by :func:`model_files`."""
    fp = _comfy("folder_paths")
    if fp is None:
        folder = os.environ.get("HARMONY_MODELS_DIR", "")
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    else:
        for key in (MODEL_FOLDER, "diffusion_models"):
            try:
                path = fp.get_full_path(key, name)
            except Exception:  # noqa: BLE001
                path = None
            if path:
                return path
    raise FileNotFoundError(
        f"model_name: {name!r} is not in models/{MODEL_FOLDER} or models/diffusion_models. "
        "Put the .safetensors file (and its .text.safetensors beside it) there and press R "
        "to refresh, or pick '(bundled tiny model)'.")


# ----------------------------------------------------------------------- devices


def torch_device() -> torch.device:
    """The device ComfyUI computes on (CPU under ``--cpu``)."""
    mm = _comfy("comfy.model_management")
    if mm is not None:
        return mm.get_torch_device()
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def offload_device() -> torch.device:
    """Where ComfyUI parks models between uses."""
    mm = _comfy("comfy.model_management")
    if mm is not None:
        return mm.unet_offload_device()
    return torch.device("cpu")


def vram_mode() -> str:
    """ComfyUI's VRAM mode in lower case: "disabled" (--cpu), "no_vram" (--novram),
    "low_vram" (--lowvram), "normal_vram", "high_vram", "shared"; "normal_vram" without host."""
    mm = _comfy("comfy.model_management")
    if mm is None:
        return "normal_vram"
    return mm.vram_state.name.lower()


def free_memory_for(num_bytes: int, device: torch.device) -> None:
    """Ask ComfyUI to unload other models until ``num_bytes`` fit on ``device``."""
    mm = _comfy("comfy.model_management")
    if mm is None or device.type == "cpu":
        return
    mm.free_memory(int(num_bytes), device)
    mm.soft_empty_cache()


def empty_cache() -> None:
    mm = _comfy("comfy.model_management")
    if mm is not None:
        mm.soft_empty_cache()
    elif torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------- model management


def module_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers (what ComfyUI counts as its size)."""
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


_PATCHER_CLASS = None


def _patcher_class():
    """ComfyUI's ModelPatcher, made all-or-nothing for a plain torch module.

    ComfyUI loads a model partially (--lowvram, or when memory is short) by
    leaving some layers on the CPU and casting their weights on use; only its
    own ``comfy.ops`` layers can do that, and Harmony's layers are plain torch.
    So this patcher always loads the whole module and, asked to free part of
    it, frees all of it. Partial residency is the pack's own block swap.
    """
    global _PATCHER_CLASS
    if _PATCHER_CLASS is None:
        base = _comfy("comfy.model_patcher").ModelPatcher

        class HarmonyPatcher(base):
            def partially_load(self, device_to, extra_memory=0, force_patch_weights=False):
                return super().partially_load(device_to, 1e32, force_patch_weights=force_patch_weights)

            def partially_unload(self, device_to, memory_to_free=0):
                return 0  # nothing freed in part: ComfyUI then unloads the whole model

        _PATCHER_CLASS = HarmonyPatcher
    return _PATCHER_CLASS


class ManagedModel:
    """A torch module whose device memory the host accounts for.

    Inside ComfyUI (``offloaded`` False) the module is wrapped in a ModelPatcher
    and loaded with ``model_management.load_models_gpu``: ComfyUI unloads other
    models to fit it, keeps it loaded between runs (no copy when it is already
    there), moves it to its offload device when another model needs the memory,
    on ``/free`` or ``unload_all_models()``, and brings it back on the next
    :meth:`load`. ``offloaded`` True (the pack's block swap or CPU offload owns
    the placement): no patcher; :meth:`load` asks ComfyUI to free
    ``working_bytes`` (the layer copies it streams in) before each run; the resident
    part stays on the device while the model is loaded and is not unloaded by ComfyUI.
    Without ComfyUI, :meth:`load` moves the module to ``device`` (a no-op when it is there).
    """

    def __init__(self, module: torch.nn.Module, device, offloaded: bool = False,
                 resident_bytes: int | None = None, working_bytes: int = 0):
        self.module, self.device, self.offloaded = module, torch.device(device), bool(offloaded)
        self.size = module_bytes(module)
        self.resident_bytes = self.size if resident_bytes is None else int(resident_bytes)
        self.working_bytes = int(working_bytes)
        self.patcher = None
        mm = _comfy("comfy.model_management")
        if mm is not None and _comfy("comfy.model_patcher") is not None and not self.offloaded:
            self.patcher = _patcher_class()(module, load_device=self.device,
                                            offload_device=mm.unet_offload_device(), size=self.size)

    def load(self) -> None:
        """Make the module ready on its device before a run."""
        mm = _comfy("comfy.model_management")
        if self.patcher is not None:
            mm.load_models_gpu([self.patcher])
        elif self.offloaded:
            if mm is not None and self.device.type != "cpu" and self.working_bytes:
                mm.free_memory(self.working_bytes, self.device)
        else:
            self.module.to(self.device)

    def is_loaded(self) -> bool:
        """True when the host lists this model among its loaded models (False without the host)."""
        mm = _comfy("comfy.model_management")
        if self.patcher is None or mm is None:
            return False
        return any(lm.model is self.patcher for lm in mm.current_loaded_models)


# ----------------------------------------------------------- progress, interrupt


class Progress:
    """ComfyUI's progress bar for the running node, with optional previews; silent without the host."""

    def __init__(self, total: int):
        utils = _comfy("comfy.utils")
        self.bar = utils.ProgressBar(int(total)) if utils is not None else None
        self.total, self.current = int(total), 0

    @property
    def wants_preview(self) -> bool:
        """True when a preview image would be shown: inside ComfyUI, unless it was started
        with ``--preview-method none`` given explicitly (its default is "none" too, but the
        core samplers' default previewer is not Harmony's, so only an explicit "none" counts)."""
        return self.bar is not None and previews_enabled()

    def set(self, value: int, total: int | None = None, preview=None) -> None:
        """Report ``value`` of ``total``; ``preview``: an RGB frame [H, W, 3] in 0..1 (tensor)
        sent as ComfyUI's latent preview (the ``("JPEG", PIL image, max size)`` tuple)."""
        self.current = int(value)
        if total is not None:
            self.total = int(total)
        if self.bar is not None:
            image = preview_tuple(preview) if preview is not None else None
            self.bar.update_absolute(self.current, self.total, image)


def previews_enabled() -> bool:
    cli = _comfy("comfy.cli_args")
    if cli is None:
        return False
    method = getattr(getattr(cli.args, "preview_method", None), "value", "auto")
    explicit = any(a == "--preview-method" or a.startswith("--preview-method=") for a in sys.argv)
    return not (explicit and method == "none")


def preview_tuple(frame: torch.Tensor):
    """An RGB frame [H, W, 3] in 0..1 -> ComfyUI's preview tuple ("JPEG", PIL image, max size).

    The server fits the image into max size x max size both ways (``ImageOps.contain``), and the
    frontend captions the preview with the size it receives. The frame is the output's own
    size, so the max size is the frame's longer side: the caption reads the real output size
    (a 64x64 clip is not shown as "512 x 512"). Only a ``--preview-size`` given explicitly
    shrinks a larger frame (never enlarges one); ComfyUI's default of 512 is for its own
    latent previews."""
    from PIL import Image

    if frame.ndim != 3 or frame.shape[-1] != 3:
        raise ValueError(f"preview frame: expected [H, W, 3], got shape {tuple(frame.shape)}")
    pixels = (frame.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    size = max(pixels.shape[0], pixels.shape[1])
    cli = _comfy("comfy.cli_args")
    explicit = any(a == "--preview-size" or a.startswith("--preview-size=") for a in sys.argv)
    if cli is not None and explicit:
        size = min(size, int(getattr(cli.args, "preview_size", size)))
    return ("JPEG", Image.fromarray(pixels), size)


def check_interrupt() -> None:
    """Raise ComfyUI's interrupt exception if the user pressed Cancel.

    Passed as ``cancel`` to the sampler, which calls it before every network
    evaluation. Never catch what it raises.
    """
    mm = _comfy("comfy.model_management")
    if mm is not None:
        mm.throw_exception_if_processing_interrupted()


def interrupt_exception_type() -> type:
    """ComfyUI's interrupt exception class (a private stand-in without the host)."""
    mm = _comfy("comfy.model_management")
    if mm is not None:
        return mm.InterruptProcessingException
    return _NoHostInterrupt


class _NoHostInterrupt(Exception):
    pass


# ------------------------------------------------------------------ save folders


def output_directory() -> str:
    fp = _comfy("folder_paths")
    if fp is not None:
        return fp.get_output_directory()
    return os.path.abspath(os.environ.get("HARMONY_OUTPUT_DIR", "output"))


def temp_directory() -> str:
    fp = _comfy("folder_paths")
    if fp is not None:
        return fp.get_temp_directory()
    return os.path.abspath(os.environ.get("HARMONY_TEMP_DIR", os.path.join("output", "temp")))


def save_path(filename_prefix: str, folder: str, width: int, height: int):
    """(full folder, file stem, counter, subfolder) the way ComfyUI's savers name files."""
    fp = _comfy("folder_paths")
    if fp is not None:
        full, stem, counter, subfolder, _ = fp.get_save_image_path(filename_prefix, folder, width, height)
        return full, stem, counter, subfolder
    subfolder, stem = os.path.split(os.path.normpath(filename_prefix))
    full = os.path.join(folder, subfolder)
    if not os.path.abspath(full).startswith(os.path.abspath(folder)):
        raise ValueError(f"filename_prefix {filename_prefix!r} points outside the output folder")
    os.makedirs(full, exist_ok=True)
    taken = [f for f in os.listdir(full) if f.startswith(stem + "_")]
    counter = 1 + max([int(f[len(stem) + 1:].split("_")[0]) for f in taken
                       if f[len(stem) + 1:].split("_")[0].isdigit()] or [0])
    return full, stem, counter, subfolder


def metadata_disabled() -> bool:
    """True under ``--disable-metadata`` (then no workflow is embedded in saved files)."""
    cli = _comfy("comfy.cli_args")
    return bool(cli is not None and getattr(cli.args, "disable_metadata", False))


# ------------------------------------------------------- core CLIP / VAE objects
# What a core CLIP or VAE (from CLIPLoader / VAELoader) is, and running it. The checks
# on what is described here live in nodes/core_inputs.py (pure: testable without the host).

def describe_clip(clip) -> dict:
    """A core CLIP -> {"family": the text-encoder key ComfyUI gave it (``umt5xxl`` for
    CLIPLoader type ``wan``; ``t5xxl``, ``l``, ``g`` … otherwise), "width": embedding width or None}."""
    model = getattr(clip, "cond_stage_model", None)
    if model is None or not hasattr(clip, "tokenize"):
        raise TypeError(f"expected a core CLIP (from CLIPLoader), got {type(clip).__name__}")
    family = getattr(model, "clip_name", None)
    width = None
    inner = getattr(model, family, None) if family else None
    transformer = getattr(inner, "transformer", None)
    try:
        width = int(transformer.get_input_embeddings().weight.shape[-1])
    except Exception:  # noqa: BLE001 - a text encoder without an input embedding table
        width = None
    return {"family": family or type(model).__name__, "width": width}


def encode_with_core_clip(clip, text: str) -> torch.Tensor:
    """One text through a core CLIP -> its per-token embeddings ``[1, L, D]`` (float32, CPU).

    For umT5 (CLIPLoader type ``wan``) ComfyUI pads to at least 512 tokens and zeroes the
    padded rows, as Wan/Ovi's own encoder does."""
    tokens = clip.tokenize(text)
    out = clip.encode_from_tokens(tokens, return_dict=True)
    return out["cond"].float().cpu()


def describe_vae(vae) -> dict:
    """A core VAE -> {"kind", "latent_channels", "latent_dim", "spatial", "temporal", "model"}.

    kind: "wan2.2" (48 channels, 16x16 pixels and 4 frames per latent), "mmaudio16k"
    (ComfyUI's MMAudio 16 kHz VAE + BigVGAN), or "other"."""
    stage = getattr(vae, "first_stage_model", None)
    if stage is None or not hasattr(vae, "decode"):
        raise TypeError(f"expected a core VAE (from VAELoader), got {type(vae).__name__}")
    model = type(stage).__module__ + "." + type(stage).__name__
    channels, dim = int(getattr(vae, "latent_channels", 0)), int(getattr(vae, "latent_dim", 2))
    ratio = getattr(vae, "upscale_ratio", None)
    spatial = ratio[-1] if isinstance(ratio, (tuple, list)) else ratio
    temporal = None
    if isinstance(ratio, (tuple, list)) and callable(ratio[0]):
        temporal = ratio[0](2) - ratio[0](1)  # frames added by one more latent frame
    kind = "other"
    if model.startswith("comfy.ldm.mmaudio."):
        kind = "mmaudio16k"
    elif dim == 3 and channels == 48 and spatial == 16 and temporal == 4:
        kind = "wan2.2"
    return {"kind": kind, "latent_channels": channels, "latent_dim": dim, "spatial": spatial,
            "temporal": temporal, "model": model}


def core_vae_encode(vae, frames: torch.Tensor) -> torch.Tensor:
    """Frames ``[T, H, W, 3]`` in 0..1 through a core video VAE -> its raw latent ``[1, C, F, h, w]``."""
    return vae.encode(frames.float().cpu()).float()


TILE_PIXELS, TILE_OVERLAP_PIXELS, TILE_FRAMES, TILE_OVERLAP_FRAMES = 512, 64, 64, 8
"""Core VAEDecodeTiled's defaults (pixels and frames)."""


def core_vae_decode(vae, latent: torch.Tensor) -> torch.Tensor:
    """A raw latent ``[1, C, F, h, w]`` through a core video VAE -> frames ``[1, T, H, W, 3]``.

    Tiled (core ``decode_tiled``, VAEDecodeTiled's default tiles) under ``--lowvram`` /
    ``--novram``; otherwise core's ``decode``, which itself retries tiled when the device
    runs out of memory."""
    if vram_mode() in ("low_vram", "no_vram"):
        s = int(vae.spacial_compression_decode())
        t = int(vae.temporal_compression_decode() or 1)
        out = vae.decode_tiled(latent, tile_x=TILE_PIXELS // s, tile_y=TILE_PIXELS // s,
                               overlap=TILE_OVERLAP_PIXELS // s, tile_t=max(2, TILE_FRAMES // t),
                               overlap_t=max(1, TILE_OVERLAP_FRAMES // t))
    else:
        out = vae.decode(latent)
    out = out.float()
    return out if out.dim() == 5 else out[None]


def core_vae_state_dict(vae) -> dict:
    """The weights of a core VAE's model, as ComfyUI holds them (CPU copies)."""
    return {k: v.detach().to("cpu") for k, v in vae.first_stage_model.state_dict().items()}
