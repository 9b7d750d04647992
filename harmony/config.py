"""Model configuration: one `TowerConfig` per modality, joined by `HarmonyConfig`.

Named configs (`get_config(name)`):

- ``"5b"``: Wan2.2-TI2V-5B video tower + Ovi's 5B audio tower, GLDI interaction
  with RoPE-aligned audio positions (the paper's model at public-checkpoint size).
- ``"5b-global"``: exactly Ovi's FusionModel layout (global fusion, Ovi's fixed
  audio RoPE scale); loads the public Ovi checkpoints.
- ``"tiny"``: a small GLDI model that trains and runs on a CPU.
- ``"tiny-global"``: the same with the global (Ovi-like) baseline interaction.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Optional

from .codecs.contract import MMAUDIO_16K, WAN22_VAE, geometry_meta

MODALITIES = ("video", "audio")
INTERACTIONS = ("gldi", "global")
AUDIO_ROPES = ("ovi", "aligned")
PREDICTIONS = ("velocity", "x0")

OVI_MAX_SECONDS = 5.0
"""Ovi is trained on 5 s clips (121 frames at 24 fps, 157 audio latents): the 5B configs' clip limit."""
OVI_AUDIO_ROPE_SCALE = 0.19676
"""Ovi's `temporal_rope_scaling_factor` (about 31 video latent frames / 157 audio latents)."""


@dataclass(frozen=True)
class TowerConfig:
    """Size and options of one Wan-style DiT tower (names follow Wan's WanModel args)."""

    modality: str  # "video" | "audio"
    dim: int
    ffn_dim: int
    num_heads: int
    num_layers: int
    in_dim: int
    out_dim: int
    text_dim: int
    text_len: int
    freq_dim: int
    eps: float = 1e-6
    patch_size: tuple = (1, 2, 2)
    qk_norm: bool = True
    cross_attn_norm: bool = True
    rope_theta: float = 10000.0
    audio_rope_scale: float = OVI_AUDIO_ROPE_SCALE
    """Audio only: position scale of the 1-D RoPE when `HarmonyConfig.audio_rope == "ovi"`."""
    audio_patch_kernel: int = 7
    """Audio only: kernel of the Conv1d + ConvMLP patch embedding (Ovi)."""
    audio_patch_hidden: Optional[int] = None
    """Audio only: ConvMLP hidden width; None = Ovi's rule 256 * ceil(int(8 * dim / 3) / 256)."""

    def __post_init__(self):
        if self.modality not in MODALITIES:
            raise ValueError(f"TowerConfig.modality must be one of {MODALITIES}, got {self.modality!r}")
        object.__setattr__(self, "patch_size", tuple(int(p) for p in self.patch_size))
        want = 3 if self.modality == "video" else 1
        if len(self.patch_size) != want:
            raise ValueError(
                f"TowerConfig.patch_size for a {self.modality} tower needs {want} entries, got {self.patch_size}"
            )
        if self.dim % self.num_heads:
            raise ValueError(f"TowerConfig.dim {self.dim} is not divisible by num_heads {self.num_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim {self.head_dim} must be even for RoPE")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def rope_pairs(self) -> tuple:
        """Complex pairs per head for the (t, h, w) axes: d-4*(d//6), 2*(d//6), 2*(d//6) channels."""
        d = self.head_dim
        return ((d - 4 * (d // 6)) // 2, d // 6, d // 6)

    @property
    def patch_hidden(self) -> int:
        if self.audio_patch_hidden is not None:
            return self.audio_patch_hidden
        return 256 * math.ceil(int(2 * 4 * self.dim / 3) / 256)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["patch_size"] = list(self.patch_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TowerConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"TowerConfig.from_dict: unknown keys {unknown}; known keys are {sorted(known)}")
        return cls(**d)


@dataclass(frozen=True)
class HarmonyConfig:
    """The dual-tower model: two towers, how they interact, and what the network predicts."""

    video: TowerConfig
    audio: TowerConfig
    interaction: str = "gldi"
    local_window: float = 1.0
    """GLDI: half-width of the local window, in video latent frames."""
    audio_rope: str = "aligned"
    """"ovi": audio position j * audio.audio_rope_scale; "aligned": j * F_video / L_audio."""
    prediction: str = "velocity"
    meta: dict = field(default_factory=dict)
    """Free-form facts (codecs, fps, latent rates); JSON-safe."""

    def __post_init__(self):
        if self.video.modality != "video" or self.audio.modality != "audio":
            raise ValueError("HarmonyConfig needs video=TowerConfig(modality='video') and audio=TowerConfig(modality='audio')")
        if self.interaction not in INTERACTIONS:
            raise ValueError(f"HarmonyConfig.interaction must be one of {INTERACTIONS}, got {self.interaction!r}")
        if self.audio_rope not in AUDIO_ROPES:
            raise ValueError(f"HarmonyConfig.audio_rope must be one of {AUDIO_ROPES}, got {self.audio_rope!r}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"HarmonyConfig.prediction must be one of {PREDICTIONS}, got {self.prediction!r}")
        if not self.local_window > 0:
            raise ValueError(f"HarmonyConfig.local_window must be > 0 (video latent frames), got {self.local_window}")
        for name in ("dim", "num_heads", "num_layers"):
            if getattr(self.video, name) != getattr(self.audio, name):
                raise ValueError(
                    f"video and audio towers must share {name} (fusion pairs block i with block i and "
                    f"attends across towers); got {getattr(self.video, name)} vs {getattr(self.audio, name)}"
                )

    @property
    def num_layers(self) -> int:
        return self.video.num_layers

    def replace(self, **kw) -> "HarmonyConfig":
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict:
        return {
            "video": self.video.to_dict(),
            "audio": self.audio.to_dict(),
            "interaction": self.interaction,
            "local_window": float(self.local_window),
            "audio_rope": self.audio_rope,
            "prediction": self.prediction,
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "HarmonyConfig":
        d = dict(d)
        missing = [k for k in ("video", "audio") if k not in d]
        if missing:
            raise ValueError(f"HarmonyConfig.from_dict: missing keys {missing}")
        video = TowerConfig.from_dict(d.pop("video"))
        audio = TowerConfig.from_dict(d.pop("audio"))
        known = {f.name for f in dataclasses.fields(cls)} - {"video", "audio"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"HarmonyConfig.from_dict: unknown keys {unknown}; known keys are {sorted(known)}")
        return cls(video=video, audio=audio, **d)


# --- named configs ----------------------------------------------------------

def _wan22_5b_video() -> TowerConfig:
    return TowerConfig(
        modality="video", dim=3072, ffn_dim=14336, num_heads=24, num_layers=30,
        in_dim=48, out_dim=48, text_dim=4096, text_len=512, freq_dim=256,
        eps=1e-6, patch_size=(1, 2, 2),
    )


def _ovi_5b_audio() -> TowerConfig:
    return TowerConfig(
        modality="audio", dim=3072, ffn_dim=14336, num_heads=24, num_layers=30,
        in_dim=20, out_dim=20, text_dim=4096, text_len=512, freq_dim=256,
        eps=1e-6, patch_size=(1,), audio_rope_scale=OVI_AUDIO_ROPE_SCALE,
    )


_META_5B = {
    "video_codec": "wan2.2-vae", "audio_codec": "mmaudio-16k", **geometry_meta(WAN22_VAE, MMAUDIO_16K),
    "text_encoder": "umt5-xxl",
    "max_seconds": OVI_MAX_SECONDS,
}


def _tiny_tower(modality: str) -> TowerConfig:
    video = modality == "video"
    return TowerConfig(
        modality=modality, dim=128, ffn_dim=384, num_heads=4, num_layers=4,
        in_dim=16 if video else 20, out_dim=16 if video else 20,
        text_dim=64, text_len=64, freq_dim=64, eps=1e-6,
        patch_size=(1, 2, 2) if video else (1,),
    )


def _config_5b() -> HarmonyConfig:
    return HarmonyConfig(video=_wan22_5b_video(), audio=_ovi_5b_audio(), interaction="gldi",
                         audio_rope="aligned", prediction="velocity", meta=dict(_META_5B))


def _config_5b_global() -> HarmonyConfig:
    return HarmonyConfig(video=_wan22_5b_video(), audio=_ovi_5b_audio(), interaction="global",
                         audio_rope="ovi", prediction="velocity", meta=dict(_META_5B))


def _config_tiny() -> HarmonyConfig:
    return HarmonyConfig(video=_tiny_tower("video"), audio=_tiny_tower("audio"), interaction="gldi",
                         audio_rope="aligned", prediction="x0", meta={})


def _config_tiny_global() -> HarmonyConfig:
    return _config_tiny().replace(interaction="global")


CONFIGS = {
    "5b": _config_5b,
    "5b-global": _config_5b_global,
    "tiny": _config_tiny,
    "tiny-global": _config_tiny_global,
}


OVERRIDE_KEYS = {
    "interaction": str, "audio_rope": str, "local_window": float, "prediction": str,
    "dim": int, "ffn_dim": int, "num_heads": int, "num_layers": int, "text_dim": int,
}
"""What ``apply_overrides`` may change: model-level keys, and tower sizes (set on both towers)."""


def apply_overrides(cfg: HarmonyConfig, text: str) -> HarmonyConfig:
    """``cfg`` with ``key=value`` changes (comma-separated, e.g.
    ``"interaction=global,audio_rope=ovi,dim=64,num_layers=2"``). Tower sizes apply to both
    towers (they must match). Raises ValueError naming a bad key or value."""
    model_kw, tower_kw = {}, {}
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in OVERRIDE_KEYS:
            raise ValueError(f"config override {item!r}: expected key=value with key one of "
                             f"{', '.join(OVERRIDE_KEYS)}")
        try:
            val = OVERRIDE_KEYS[key](value.strip())
        except ValueError:
            raise ValueError(f"config override {item!r}: {key} needs a {OVERRIDE_KEYS[key].__name__}") from None
        (model_kw if key in ("interaction", "audio_rope", "local_window", "prediction") else tower_kw)[key] = val
    if tower_kw:
        model_kw["video"] = dataclasses.replace(cfg.video, **tower_kw)
        model_kw["audio"] = dataclasses.replace(cfg.audio, **tower_kw)
    return cfg.replace(**model_kw) if model_kw else cfg


def get_config(name: str) -> HarmonyConfig:
    """A fresh named `HarmonyConfig`; raises ValueError listing the valid names."""
    if name not in CONFIGS:
        raise ValueError(f"unknown model config {name!r}; valid names: {', '.join(CONFIGS)}")
    return CONFIGS[name]()
