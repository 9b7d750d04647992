"""Which tensor of a model file feeds which parameter of a ``HarmonyModel``: the file's names
(our layout, or Wan2.2 / Ovi upstream names, ComfyUI's wrapper prefixes) matched to the model's,
every shape compared from the header before any tensor is read, and the mismatch listed in words.
Used by :func:`harmony.checkpoint.load_model` and the trainer's ``--init-from``.
"""
from __future__ import annotations

import re

import torch.nn as nn

from .families import SCALED_FP8_KEY, config_remedy, detect_layout
from .weightfile import CheckpointError

GLDI_FROM_OVI = re.compile(r"^audio_model\.blocks\.\d+\.(norm_style|style_attn)\.")
"""Model keys an Ovi file cannot hold when it initialises a GLDI model: the style-alignment modules."""


class Names(dict):
    """model key -> file key, plus the file's ``scale_weight`` keys."""

    file_scales: set
    fresh: list


def match_names(model: nn.Module, file_keys, path: str, cfg, allow_missing=None) -> Names:
    """Match the model's state-dict keys to the file's; raise listing any mismatch.

    ``allow_missing``: a regex of model keys the file may lack (``names.fresh`` lists them)."""
    ignored = {k for k in file_keys if k == SCALED_FP8_KEY or k.endswith((".scale_weight", ".scale_input"))}
    weight_keys = [k for k in file_keys if k not in ignored]
    rename = upstream_renames(weight_keys)  # file key -> model key
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
            parts.append(f"  missing from the file ({len(missing)}): {listing(missing)}")
        if unexpected:
            parts.append(f"  unexpected in the file ({len(unexpected)}): {listing(unexpected)}")
        parts.append(f"  hint: {layout_hint(file_keys) or 'the key set matches no known layout'}. "
                     "Check that the file and the config are for the same model.")
        raise CheckpointError("\n".join(parts))
    names = Names((k, by_model[k]) for k in model_keys if k in by_model)
    names.fresh = fresh
    names.file_scales = {k for k in ignored if k.endswith(".scale_weight")}
    return names


def check_shapes(model: nn.Module, names: dict, header, path: str):
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
            + f". The checkpoint was made for a different model size ({layout_hint(names.values()) or 'family unknown'}"
            f"); {config_remedy(path)}."
        )


def listing(keys, first: int = 10) -> str:
    shown = ", ".join(keys[:first])
    return shown + (f", ... (+{len(keys) - first} more)" if len(keys) > first else "")


LAYOUT_NAMES = {
    "harmony": "a Harmony checkpoint (made with a different config? compare its harmony_config metadata)",
    "ovi": "an Ovi FusionModel checkpoint (load it with config='5b-global')",
    "wan2.2-ti2v-5b": "a Wan (2.1 or 2.2) video-only checkpoint (a bare WanModel: it has no audio tower)",
}
"""What ``keymap.detect_layout`` ids mean, for error messages."""


def upstream_renames(file_keys) -> dict:
    """file key -> our key, for upstream layouts and wrapper prefixes (``harmony.keymap``)."""
    from . import keymap

    layout = detect_layout(file_keys)
    if layout not in keymap.LAYOUTS:
        layout = "harmony"  # unknown: only strip wrapper prefixes
    renames = {k: keymap.from_upstream_name(k, layout) for k in file_keys}
    return {k: ours for k, ours in renames.items() if ours != k}


def layout_hint(file_keys) -> str:
    """"this looks like ..." from ``keymap.detect_layout``, or ""."""
    layout = detect_layout(file_keys)
    return f"this looks like {LAYOUT_NAMES[layout]}" if layout in LAYOUT_NAMES else ""
