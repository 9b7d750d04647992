"""Training state of the Cross-Task Synergy trainer (`harmony.train`): checkpoints (save / resume),
the exported EMA model file, and ``--init-from`` (our own export or an Ovi fusion file).

Single-process and DDP runs keep one safetensors state file; a sharded (FSDP2) run keeps its
state with ``torch.distributed.checkpoint`` (`harmony.distributed`)."""
from __future__ import annotations

import json
import os

from typing import TYPE_CHECKING

import torch

from .config import HarmonyConfig

if TYPE_CHECKING:
    from .train import TrainConfig

def save_training_state(path, model, conditioner, ema, opt, step, tc: TrainConfig, cfg: HarmonyConfig):
    """model / text / EMA / optimizer state, all safetensors, written atomically."""
    from .weightfile import save_safetensors

    meta = {"harmony_config": json.dumps(cfg.to_dict()), "step": str(step),
            "train_config": json.dumps(tc.__dict__)}
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"text.{k}": v for k, v in conditioner.state_dict().items()})
    tensors.update({f"ema.{k}": v for k, v in ema.items()})
    for i, group_state in enumerate(opt.state.values()):
        for k, v in group_state.items():
            if torch.is_tensor(v):
                tensors[f"opt.{i}.{k}"] = v
    save_safetensors({k: v.detach().contiguous().cpu() for k, v in tensors.items()},
                     os.path.join(path, "state.safetensors"), meta)


def load_training_state(path, model, conditioner, ema, opt):
    from safetensors import safe_open

    f = os.path.join(path, "state.safetensors")
    with safe_open(f, "pt") as fh:
        keys = list(fh.keys())
        step = int(fh.metadata()["step"])
        get = fh.get_tensor
        model.load_state_dict({k[6:]: get(k) for k in keys if k.startswith("model.")})
        conditioner.load_state_dict({k[5:]: get(k) for k in keys if k.startswith("text.")})
        for k in keys:
            if k.startswith("ema."):
                ema[k[4:]].copy_(get(k))
        params = [p for g in opt.param_groups for p in g["params"]]
        for i, p in enumerate(params):
            st = {name.split(".", 2)[2]: get(name) for name in keys if name.startswith(f"opt.{i}.")}
            if st:
                opt.state[p] = st
    return step


EXPORT_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def export_default(ema, cfg: HarmonyConfig, out_path: str, step: int, dtype: str = "fp32"):
    """Write the EMA weights as a model file plus its text-encoder file beside it."""
    from .weightfile import save_safetensors

    meta = {"harmony_config": json.dumps(cfg.to_dict()), "step": str(step)}
    dt = EXPORT_DTYPES[dtype]

    def out(v):
        v = v.detach().cpu()
        return (v.to(dt) if v.is_floating_point() else v).contiguous()

    model = {k[6:]: out(v) for k, v in ema.items() if k.startswith("model.")}
    text = {k[5:]: out(v) for k, v in ema.items() if k.startswith("text.")}
    save_safetensors(model, out_path, meta)
    save_safetensors(text, out_path.replace(".safetensors", ".text.safetensors"), meta)


def init_from_file(path: str, model, conditioner, cfg: HarmonyConfig, job: str = "",
                   other_codecs: bool = False) -> HarmonyConfig:
    """Initialise ``model`` (and ``conditioner``) from ``--init-from`` for fine-tuning, by what
    the file holds (its safetensors header, :func:`harmony.families.detect`):

    * our own export (``harmony_config`` metadata, ``.text.safetensors`` beside it):
      :func:`init_from_export`;
    * an Ovi fusion file (plain, ComfyUI's ``model.diffusion_model.`` prefix, bf16 / fp8):
      :func:`init_from_ovi` (for ``--config 5b`` the fusion weights feed the towers and
      the local path, the GLDI style-alignment modules start at their identity init).

    ``other_codecs``: an export trained with other codecs is accepted (a move to a new codec).
    Returns ``cfg`` with what the init adds to its meta (``init_step``, ...)."""
    from .families import detect

    if not os.path.isfile(path):
        raise FileNotFoundError(f"--init-from: {path!r} does not exist; give an exported Harmony model file "
                                "(e.g. harmony/assets/harmony_tiny.safetensors) or an Ovi fusion file "
                                "(Ovi's model.safetensors / model_fp8_e4m3fn.safetensors)")
    found = detect(path)
    if found.family == "ovi":
        return init_from_ovi(path, model, conditioner, cfg, found)
    if found.family == "wan2.2-ti2v-5b":
        raise ValueError(f"--init-from: {path!r} is a bare Wan2.2-TI2V-5B DiT (video tower only); the trainer "
                         "needs both towers: start from Ovi's fusion file (model.safetensors) instead")
    return init_from_export(path, model, conditioner, cfg, job, other_codecs)


OVI_CHECKED_FIELDS = ("dim", "ffn_dim", "num_heads", "num_layers", "in_dim", "out_dim", "text_dim", "freq_dim",
                      "patch_size", "qk_norm", "cross_attn_norm", "eps")
"""Tower fields an Ovi file's config (its video.json / audio.json, a JSON beside it, or the named
config its shapes match) must share with ``--config`` (the interaction and audio RoPE may differ)."""

UMT5_TEXT_DIM = 4096


def _rank_tag() -> str:
    """``[rank i/n] `` under a distributed launcher (accelerate / torchrun set RANK, WORLD_SIZE)."""
    n = int(os.environ.get("WORLD_SIZE", "1"))
    return f"[rank {os.environ.get('RANK', '0')}/{n}] " if n > 1 else ""


def init_from_ovi(path: str, model, conditioner, cfg: HarmonyConfig, found=None) -> HarmonyConfig:
    """Load an Ovi fusion file into the trainer's ``model`` (built from ``cfg``), tensor by tensor.

    Every fusion tensor goes to its place (fp8 weights dequantised, ComfyUI's prefix and
    scaled fp8 understood); for a GLDI config (``--config 5b``) the audio blocks'
    style-alignment modules (``norm_style``, ``style_attn``), which Ovi does not have, keep
    their identity init (``style_attn.o`` zero, so the model starts as the Ovi model with
    the local interaction) and are listed as fresh. The towers' sizes must equal
    ``cfg``'s (``--config`` / ``--overrides``); a mismatch is an error naming the fields.

    The text path is NOT Ovi's: Ovi's cross-attention was trained on umT5-XXL embeddings,
    the trainer's ``Conditioner`` is the word-level encoder of the synthetic world, sized to
    ``text_dim`` and trained from its random init (a printed warning says so)."""
    from .checkpoint import real_weight
    from .families import detect
    from .keymatch import GLDI_FROM_OVI, check_shapes, listing, match_names
    from .weightfile import TensorReader, read_header

    found = found if found is not None else detect(path)
    if found.family != "ovi":
        raise ValueError(f"--init-from: {path!r} is not an Ovi fusion file (found: {found.line()})")
    if found.config is not None:
        bad = [f"{tower}.{k}: file {getattr(getattr(found.config, tower), k)!r} vs --config "
               f"{getattr(getattr(cfg, tower), k)!r}"
               for tower in ("video", "audio") for k in OVI_CHECKED_FIELDS
               if getattr(getattr(found.config, tower), k) != getattr(getattr(cfg, tower), k)]
        if bad:
            raise ValueError(f"--init-from: {path!r} ({found.config_source}) has other tower sizes than "
                             "--config / --overrides: " + "; ".join(bad[:8])
                             + ". Use --config 5b for Ovi's public 11B file, or --overrides (dim, ffn_dim, "
                             "num_heads, num_layers, text_dim) to match a reduced file")
    allow = GLDI_FROM_OVI if cfg.interaction == "gldi" else None
    header = read_header(path, "--init-from")  # shapes from the header, before any tensor is read
    with TensorReader(header) as fh:  # tensor by tensor, never mapped
        names = match_names(model, header.keys(), path, cfg, allow_missing=allow)
        check_shapes(model, names, header, path)
        state = model.state_dict()
        with torch.no_grad():
            for key, file_key in names.items():
                t = fh.get(file_key)
                scale_key = file_key[: -len("weight")] + "scale_weight" if file_key.endswith(".weight") else None
                scale = fh.get(scale_key) if scale_key in names.file_scales else None
                state[key].copy_(real_weight(t, scale) if t.is_floating_point() else t)
                del t
    fresh = sorted(names.fresh)
    for i in sorted({int(k.split(".")[2]) for k in fresh}):  # identity init, as the model builds it
        block = model.audio_model.blocks[i]
        if torch.count_nonzero(block.style_attn.o.weight) or torch.count_nonzero(block.style_attn.o.bias):
            raise RuntimeError(f"audio block {i}: style_attn.o is not zero after construction; the GLDI "
                               "style alignment would not start at identity (model bug)")
    text_dim = cfg.video.text_dim
    lines = [found.line(),
             f"loaded {len(names)} tensors into --config ({cfg.interaction} interaction, {cfg.audio_rope} "
             f"audio RoPE)"
             + (f"; initialised fresh ({len(fresh)} tensors, GLDI style alignment at its identity init): "
                f"{listing(fresh, 4)}" if fresh else "; nothing initialised fresh"),
             f"text path: the trainer's word-level conditioner (text_dim {text_dim}), trained from random "
             "init with the model; Ovi's umT5-XXL text encoder is not used by the trainer"
             + (" (WARNING: at this size the 5B towers' cross-attention, trained on umT5-XXL embeddings, "
                "starts from a random 4096-wide stand-in encoder)" if text_dim == UMT5_TEXT_DIM else "")]
    if getattr(conditioner, "text_path", None):  # another text path than the word-level one (harmony.clips)
        lines[2] = conditioner.text_path
    if found.config is None:
        lines.append("the file's sizes match no named config and no JSON is beside it: num_heads and eps "
                     "were taken from --config (they are not in the tensor shapes)")
    tag = _rank_tag()
    print("\n".join(tag + "init-from Ovi: " + line for line in lines), flush=True)
    return cfg.replace(meta={**cfg.meta, "init_step": 0, "init_from": os.path.basename(path),
                             "init_family": "ovi", "init_fresh_tensors": len(fresh)})


def init_from_export(path: str, model, conditioner, cfg: HarmonyConfig, job: str = "",
                     other_codecs: bool = False) -> HarmonyConfig:
    """Load an exported model file (any float dtype) and its ``.text.safetensors`` into
    ``model`` / ``conditioner`` for fine-tuning. The file's architecture must equal ``cfg``'s
    and it must have been trained with the same codecs (same sha256), unless ``other_codecs`` (a
    move to a new codec: the weights are only a start in its latent space). Returns ``cfg`` with
    the file's extra meta (e.g. tuned guidance) and ``init_step`` added. ``job``: start from
    that job's own weights (:mod:`harmony.job_weights`) instead of the shared ones; a file's
    job tensors are not trained otherwise (an export holds the shared weights only)."""
    from .job_weights import split_keys
    from .weightfile import read_safetensors

    text_path = path.replace(".safetensors", ".text.safetensors")
    for f in (path, text_path):
        if not os.path.isfile(f):
            raise FileNotFoundError(f"--init-from: {f!r} does not exist; give an exported model file "
                                    "(e.g. harmony/assets/harmony_tiny.safetensors) with its .text.safetensors beside it")
    tensors, meta = read_safetensors(path, "--init-from")
    if "harmony_config" not in meta:
        raise ValueError(f"--init-from: {path!r} has no harmony_config metadata; it is not a Harmony export")
    file_cfg = HarmonyConfig.from_dict(json.loads(meta["harmony_config"]))
    if file_cfg.replace(meta={}) != cfg.replace(meta={}):
        raise ValueError(f"--init-from: {path!r} has another architecture than --config; "
                         "fine-tune with the config it was trained with")
    want, have = file_cfg.meta.get("codecs_sha256"), cfg.meta.get("codecs_sha256")
    if want and have and want != have:
        if not other_codecs:
            raise ValueError(f"--init-from: {path!r} was trained with other codec weights (sha256 {want[:12]}…, "
                             f"these are {have[:12]}…); its latents would not match")
        print(f"--init-from: {path!r} was trained with other codec weights (sha256 {want[:12]}…); starting "
              f"from its weights in the latent space of these ({have[:12]}…)")
    shared, jobs = split_keys(tensors)
    if job and job not in jobs:
        raise ValueError(f"--init-job {job}: {path!r} holds no weights of its own for {job} "
                         f"(it has them for: {', '.join(jobs) or 'no job'})")
    if jobs:
        print(f"--init-from: {path!r} holds own weights for {', '.join(jobs)}; "
              + (f"starting from {job}'s" if job else "starting from the shared ones (--init-job picks a job's)"))
    start = {k: tensors[k] for k in shared}
    start.update({name: tensors[key] for name, key in jobs.get(job, {}).items()})
    own = model.state_dict()
    model.load_state_dict({k: v.to(own[k].dtype) if k in own else v for k, v in start.items()})
    text, _ = read_safetensors(text_path, "--init-from text encoder")
    own = conditioner.state_dict()
    conditioner.load_state_dict({k: v.to(own[k].dtype) if k in own else v for k, v in text.items()})
    extra = {k: v for k, v in file_cfg.meta.items() if k not in cfg.meta}
    return cfg.replace(meta={**cfg.meta, **extra, "init_step": int(meta.get("step", 0))})
