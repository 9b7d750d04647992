"""Upstream <-> Harmony parameter names.

Our `HarmonyModel` state dict uses ``video_model.*`` / ``audio_model.*`` with
Wan2.2's names inside each tower. Layouts:

- ``"harmony"``: ours, identity.
- ``"wan2.2-ti2v-5b"``: a bare Wan2.2 WanModel (the video tower alone):
  ours = ``"video_model." + name``.
- ``"ovi"``: Ovi's FusionModel: same prefixes; ``blocks.N.modulation.modulation``
  is our ``blocks.N.modulation``. GLDI's style-alignment parameters
  (``norm_style``, ``style_attn``) have no Ovi counterpart.

Common wrapper prefixes (``model.diffusion_model.``, ``diffusion_model.``,
``model.``, ``module.``) are stripped before mapping.
"""
from __future__ import annotations

import re
from typing import Iterable, Mapping, Optional

LAYOUTS = ("harmony", "wan2.2-ti2v-5b", "ovi")
_WRAPPER_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "module.", "model.")
_OVI_MOD = re.compile(r"^((?:video|audio)_model\.blocks\.\d+)\.modulation\.modulation$")
_OURS_MOD = re.compile(r"^((?:video|audio)_model\.blocks\.\d+)\.modulation$")
_GLDI_ONLY = re.compile(r"\.blocks\.\d+\.(norm_style|style_attn)\.")


def _check_layout(layout: str):
    if layout not in LAYOUTS:
        raise ValueError(f"unknown checkpoint layout {layout!r}; known layouts: {', '.join(LAYOUTS)}")


def strip_wrapper_prefix(name: str) -> str:
    for p in _WRAPPER_PREFIXES:
        if name.startswith(p) and not name.startswith(("video_model.", "audio_model.")):
            return name[len(p):]
    return name


def to_upstream(name: str, layout: str) -> Optional[str]:
    """Our parameter name -> its name in `layout`, or None when that layout has no such parameter."""
    _check_layout(layout)
    if layout == "harmony":
        return name
    if layout == "wan2.2-ti2v-5b":
        if not name.startswith("video_model.") or ("_fusion." in name and ".cross_attn." in name):
            return None
        return name[len("video_model."):]
    # ovi
    if _GLDI_ONLY.search(name):
        return None
    return _OURS_MOD.sub(r"\1.modulation.modulation", name)


def from_upstream_name(name: str, layout: str) -> str:
    """One upstream name -> ours."""
    _check_layout(layout)
    name = strip_wrapper_prefix(name)
    if layout == "harmony":
        return name
    if layout == "wan2.2-ti2v-5b":
        return "video_model." + name
    return _OVI_MOD.sub(r"\1.modulation", name)


def from_upstream(state_dict: Mapping, layout: str) -> dict:
    """An upstream state dict renamed to our names (tensors are not copied)."""
    out = {}
    for k, v in state_dict.items():
        ours = from_upstream_name(k, layout)
        if ours in out:
            raise ValueError(f"two checkpoint keys map to {ours!r} (layout {layout!r}); the file mixes layouts")
        out[ours] = v
    return out


def detect_layout(keys: Iterable[str]) -> str:
    """Which model a key set looks like: "harmony", "ovi", "wan2.2-ti2v-5b" or "unknown"."""
    keys = [strip_wrapper_prefix(k) for k in keys]
    has_towers = any(k.startswith(("video_model.", "audio_model.")) for k in keys)
    if has_towers:
        if any(_OVI_MOD.match(k) for k in keys):
            return "ovi"
        if any(_OURS_MOD.match(k) for k in keys):
            return "harmony"
        return "unknown"
    if any(k.startswith("blocks.0.self_attn.") for k in keys) and any(k.startswith("patch_embedding.") for k in keys):
        return "wan2.2-ti2v-5b"
    return "unknown"
