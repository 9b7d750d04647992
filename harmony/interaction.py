"""How the video and audio towers talk to each other inside every layer.

Two interactions, chosen by ``HarmonyConfig.interaction``:

``"global"`` — Ovi's fusion (the paper's baseline). Inside the cross-attention
of every block of both towers, each token also attends to *every* token of the
other tower (q with its own RoPE, k with the partner's RoPE), and the result is
summed with the text-attention output before the shared projection ``o``.

``"gldi"`` — Global-Local Decoupled Interaction (Harmony):

- *Local, RoPE-aligned frame-wise attention* (both directions). Same parameters
  as the global fusion (``k_fusion``, ``v_fusion``, ``norm_k_fusion``,
  ``pre_attn_norm_fusion``), so an Ovi checkpoint initialises it, but a window
  mask limits it: video latent frame i sees only the audio tokens whose time
  ``j * F / L_audio`` lies within ``local_window`` frames of i, and each audio
  token sees only the video frames within the window of its time (each query
  always keeps its nearest partner). Reference-voice tokens take no part.
  The update is residual (``z <- z + o(text_attn + local_attn)``).
- *Global style alignment* (audio blocks only, new parameters
  ``blocks.N.norm_style`` and ``blocks.N.style_attn.*``): the reference-voice
  tokens (queries) attend to the whole video; only they are updated
  (residually). The target audio is never changed by this path.

RoPE positions of the audio tokens come from ``HarmonyConfig.audio_rope``
(see `model.audio_positions`); the window always uses the exact rescaled time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn

from .attention import attention
from .rope import Rope


# --- the local window ---------------------------------------------------------

def local_window_mask(n_frames: int, n_audio: int, window: float) -> torch.Tensor:
    """``[n_frames, n_audio]`` bool: latent frame i and audio token j see each other.

    Audio token j sits at time ``tau_j = j * n_frames / n_audio`` (video latent-frame
    units); the pair is local when ``|tau_j - i| <= window``. Every frame keeps its
    nearest audio token and every audio token its nearest frame, so no query is
    left without keys.
    """
    if n_frames <= 0 or n_audio <= 0:
        raise ValueError(f"local_window_mask needs n_frames > 0 and n_audio > 0, got {n_frames}, {n_audio}")
    tau = torch.arange(n_audio, dtype=torch.float64) * (n_frames / n_audio)
    dist = (tau[None, :] - torch.arange(n_frames, dtype=torch.float64)[:, None]).abs()
    mask = dist <= window + 1e-9
    mask[torch.arange(n_frames), dist.argmin(dim=1)] = True
    mask[dist.argmin(dim=0), torch.arange(n_audio)] = True
    return mask


# --- global style alignment (new GLDI parameters) -------------------------------

class StyleAlignment(nn.Module):
    """Reference-voice tokens (queries) attend to the whole video token sequence (no RoPE).

    Parameters: ``q, k, v, o`` (Linear), ``norm_q, norm_k`` (RMSNorm) and
    ``norm_video`` (affine LayerNorm on the video stream). ``o`` starts at zero,
    so a model initialised from Ovi begins with the path switched off.
    """

    def __init__(self, cfg, ops):
        super().__init__()
        dim, self.num_heads = cfg.dim, cfg.num_heads
        self.norm_video = ops.LayerNorm(dim, eps=cfg.eps, elementwise_affine=True)
        self.q, self.k, self.v, self.o = (ops.Linear(dim, dim) for _ in range(4))
        self.norm_q = ops.RMSNorm(dim, eps=cfg.eps) if cfg.qk_norm else nn.Identity()
        self.norm_k = ops.RMSNorm(dim, eps=cfg.eps) if cfg.qk_norm else nn.Identity()
        nn.init.zeros_(self.o.weight)
        nn.init.zeros_(self.o.bias)

    def forward(self, ref: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        """``ref [B, Lr, dim]`` (already normed), ``video [B, Lv, dim]`` -> update ``[B, Lr, dim]``."""
        h = self.num_heads
        vid = self.norm_video(video)
        q = self.norm_q(self.q(ref)).unflatten(-1, (h, -1))
        k = self.norm_k(self.k(vid)).unflatten(-1, (h, -1))
        v = self.v(vid).unflatten(-1, (h, -1))
        return self.o(attention(q, k, v).flatten(2))


# --- per-forward plan and the two interactions ----------------------------------

@dataclass
class InteractionPlan:
    """Geometry of one forward: RoPE tables, masks and which audio rows take part."""

    rope_video: Rope          # all video tokens
    rope_audio: Rope          # all audio tokens (reference + target)
    n_ref: int                # reference-voice tokens at the start of the audio sequence
    audio_start: int          # first audio token that takes part in the video<->audio attention
    mask_video: Optional[torch.Tensor] = None  # [Lv, La - audio_start] video queries -> audio keys
    mask_audio: Optional[torch.Tensor] = None  # [La - audio_start, Lv] audio queries -> video keys


class GlobalFusion:
    """Ovi's fusion: every token attends to the whole partner stream."""

    name = "global"

    def __init__(self, cfg):
        self.cfg = cfg

    def plan(self, grid, n_audio: int, n_ref: int, rope_video: Rope, rope_audio: Rope, device=None) -> InteractionPlan:
        return InteractionPlan(rope_video, rope_audio, n_ref=n_ref, audio_start=0)

    def audio_cross(self, block, audio, video, context, plan: InteractionPlan, fuse: bool = True):
        """Audio cross-attention step: text + (masked) attention to the video stream."""
        if not fuse:
            return block.cross_attention_step(audio, context)
        s = plan.audio_start
        return block.cross_attention_step(
            audio, context, partner=video, q_rope=plan.rope_audio[s:], k_rope=plan.rope_video,
            mask=plan.mask_audio, q_start=s)

    def video_cross(self, block, video, audio, context, plan: InteractionPlan, fuse: bool = True):
        """Video cross-attention step: text + (masked) attention to the audio stream."""
        if not fuse:
            return block.cross_attention_step(video, context)
        s = plan.audio_start
        return block.cross_attention_step(
            video, context, partner=audio[:, s:], q_rope=plan.rope_video, k_rope=plan.rope_audio[s:],
            mask=plan.mask_video)

    def style(self, block, audio, video, plan: InteractionPlan):
        """Global style alignment of the reference-voice tokens (GLDI only)."""
        return audio


class GLDI(GlobalFusion):
    """Global-Local Decoupled Interaction: windowed local fusion + reference-voice style alignment."""

    name = "gldi"

    def plan(self, grid, n_audio: int, n_ref: int, rope_video: Rope, rope_audio: Rope, device=None) -> InteractionPlan:
        f, h, w = grid
        n_target = n_audio - n_ref
        window = local_window_mask(f, n_target, self.cfg.local_window).to(device)  # [F, La]
        mask_video = window.repeat_interleave(h * w, dim=0)                         # [Lv, La]
        mask_audio = window.t().repeat_interleave(h * w, dim=1)                     # [La, Lv]
        return InteractionPlan(rope_video, rope_audio, n_ref=n_ref, audio_start=n_ref,
                               mask_video=mask_video, mask_audio=mask_audio)

    def style(self, block, audio, video, plan: InteractionPlan):
        if plan.n_ref == 0:
            return audio
        return block.style_step(audio, video, plan.n_ref)


def build_interaction(cfg):
    """The interaction object for ``cfg.interaction`` ("global" or "gldi")."""
    return {"global": GlobalFusion, "gldi": GLDI}[cfg.interaction](cfg)
