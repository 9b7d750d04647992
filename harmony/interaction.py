"""How the video and audio towers talk to each other inside every layer: the one home of the interaction.

Here, and nowhere else: the timeline mapping of audio tokens onto the video
latent frames (`audio_time`, used by the RoPE positions, the window mask and
the model), the local window (`local_window_mask`), the cross-tower attention
(`cross_attention_with_partner`), GLDI's style alignment (`StyleAlignment`,
`add_style_alignment`, `style_alignment_step`) and the two variants below.
The towers (`harmony.tower`) only expose attention building blocks.

Two interactions, chosen by ``HarmonyConfig.interaction``:

``"global"`` — Ovi's fusion (the paper's baseline, `GlobalFusion`). Inside the
cross-attention of every block of both towers, each token also attends to
*every* token of the other tower (q with its own RoPE, k with the partner's
RoPE), and the result is summed with the text-attention output before the
shared projection ``o``.

``"gldi"`` — Global-Local Decoupled Interaction (Harmony, `GLDI`):

- *Local, RoPE-aligned frame-wise attention* (both directions). Same parameters
  as the global fusion (``k_fusion``, ``v_fusion``, ``norm_k_fusion``,
  ``pre_attn_norm_fusion``), so an Ovi checkpoint initialises it, but a window
  mask limits it: video latent frame i sees only the audio tokens whose time
  ``audio_time`` lies within ``local_window`` frames of i, and each audio
  token sees only the video frames within the window of its time (each query
  always keeps its nearest partner). Reference-voice tokens take no part.
  The update is residual (``z <- z + o(text_attn + local_attn)``).
- *Global style alignment* (audio blocks only, new parameters
  ``blocks.N.norm_style`` and ``blocks.N.style_attn.*``): the reference-voice
  tokens (queries) attend to the whole video; only they are updated
  (residually). The target audio is never changed by this path.

RoPE positions of the audio tokens come from ``HarmonyConfig.audio_rope``
(`audio_positions`): "aligned" uses `audio_time`; "ovi" Ovi's fixed scale.
The window always uses `audio_time`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn

from .attention import Attention
from .rope import Rope, apply_rope
from .tower import heads, merge_heads


# --- the timeline ------------------------------------------------------------------

def audio_time(n_audio: int, n_frames: int, n_ref: int = 0) -> torch.Tensor:
    """Time of each audio token on the video latent-frame timeline (float64, ``[n_ref + n_audio]``).

    Target audio token j sits at ``j * n_frames / n_audio``; the `n_ref`
    reference-voice tokens before it continue the spacing to negative times.
    """
    if n_frames <= 0 or n_audio <= 0:
        raise ValueError(f"audio_time needs n_frames > 0 and n_audio > 0, got {n_frames}, {n_audio}")
    return (torch.arange(n_ref + n_audio, dtype=torch.float64) - n_ref) * (n_frames / n_audio)


def audio_positions(cfg, n_frames: int, n_audio: int, n_ref: int = 0) -> torch.Tensor:
    """RoPE positions (float64) of the audio tokens [reference..., target...] on the time axis.

    "aligned" (the paper's RoPE alignment): `audio_time`. "ovi": target token j at
    ``j * audio.audio_rope_scale``, reference tokens before it with the same spacing.
    """
    if cfg.audio_rope == "ovi":
        return (torch.arange(n_ref + n_audio, dtype=torch.float64) - n_ref) * cfg.audio.audio_rope_scale
    return audio_time(n_audio, n_frames, n_ref)


# --- the local window ---------------------------------------------------------

def local_window_mask(n_frames: int, n_audio: int, window: float) -> torch.Tensor:
    """``[n_frames, n_audio]`` bool: latent frame i and audio token j see each other.

    The pair is local when ``|audio_time(j) - i| <= window``. Every frame keeps its
    nearest audio token and every audio token its nearest frame, so no query is
    left without keys.
    """
    tau = audio_time(n_audio, n_frames)
    dist = (tau[None, :] - torch.arange(n_frames, dtype=torch.float64)[:, None]).abs()
    mask = dist <= window + 1e-9
    mask[torch.arange(n_frames), dist.argmin(dim=1)] = True
    mask[dist.argmin(dim=0), torch.arange(n_audio)] = True
    return mask


# --- cross-tower attention -------------------------------------------------------

def cross_attention_with_partner(block, x: torch.Tensor, context: torch.Tensor, partner: torch.Tensor,
                                 q_rope: Rope, k_rope: Rope, mask: Optional[torch.Tensor] = None,
                                 q_start: int = 0) -> torch.Tensor:
    """A block's cross-attention step with the partner tower (Ovi's fusion arithmetic):

    ``x + o(text_attn(q) + partner_attn(q[q_start:]))`` with ``q`` from ``norm3(x)``;
    the partner attention uses q with its own RoPE, k/v from the fusion parameters
    with the partner's RoPE, and `mask` (``[Lq - q_start, L_partner]``, True = attend).
    Query rows before `q_start` get only the text attention.
    """
    ca = block.cross_attn
    q = ca.queries(block.norm3(x))
    out = ca.text_attention(q, context)
    k, v = ca.partner_keys_values(partner, k_rope)
    part = ca.partner_attend(apply_rope(q[:, q_start:], q_rope), k, v, mask)
    if q_start:
        part = torch.cat([part.new_zeros(q[:, :q_start].shape), part], dim=1)
    return x + ca.out(out + part)


# --- global style alignment (new GLDI parameters) -------------------------------

class StyleAlignment(nn.Module):
    """Reference-voice tokens (queries) attend to the whole video token sequence (no RoPE).

    Parameters: ``q, k, v, o`` (Linear), ``norm_q, norm_k`` (RMSNorm) and
    ``norm_video`` (affine LayerNorm on the video stream). ``o`` starts at zero,
    so a model initialised from Ovi begins with the path switched off.
    """

    def __init__(self, cfg, ops, attend: Optional[Attention] = None):
        super().__init__()
        dim, self.num_heads = cfg.dim, cfg.num_heads
        self.norm_video = ops.LayerNorm(dim, eps=cfg.eps, elementwise_affine=True)
        self.q, self.k, self.v, self.o = (ops.Linear(dim, dim) for _ in range(4))
        self.norm_q = ops.RMSNorm(dim, eps=cfg.eps) if cfg.qk_norm else nn.Identity()
        self.norm_k = ops.RMSNorm(dim, eps=cfg.eps) if cfg.qk_norm else nn.Identity()
        nn.init.zeros_(self.o.weight)
        nn.init.zeros_(self.o.bias)
        self.attend = attend if attend is not None else Attention()

    def forward(self, ref: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        """``ref [B, Lr, dim]`` (already normed), ``video [B, Lv, dim]`` -> update ``[B, Lr, dim]``."""
        vid = self.norm_video(video)
        q = heads(self.norm_q(self.q(ref)), self.num_heads)
        k = heads(self.norm_k(self.k(vid)), self.num_heads)
        v = heads(self.v(vid), self.num_heads)
        return self.o(merge_heads(self.attend(q, k, v)))


def add_style_alignment(block: nn.Module, cfg, ops, attend: Attention):
    """Give an audio block GLDI's style-alignment modules ``norm_style`` and ``style_attn``
    (passed to `WanTower` as ``extend_block``)."""
    block.norm_style = ops.LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=True)
    block.style_attn = StyleAlignment(cfg, ops, attend)


def style_alignment_step(block, audio: torch.Tensor, video: torch.Tensor, n_ref: int) -> torch.Tensor:
    """GLDI global style alignment: only the first `n_ref` (reference-voice) tokens change."""
    ref = audio[:, :n_ref]
    ref = ref + block.style_attn(block.norm_style(ref), video)
    return torch.cat([ref, audio[:, n_ref:]], dim=1)


# --- per-geometry plan and the two interactions ----------------------------------

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
    """Ovi's fusion (the Ovi-like global variant): every token attends to the whole partner stream."""

    name = "global"
    has_style_alignment = False

    def __init__(self, cfg):
        self.cfg = cfg

    def plan(self, grid, n_audio: int, n_ref: int, rope_video: Rope, rope_audio: Rope, device=None) -> InteractionPlan:
        return InteractionPlan(rope_video, rope_audio, n_ref=n_ref, audio_start=0)

    def audio_cross(self, block, audio, video, context, plan: InteractionPlan):
        """Audio cross-attention step: text + (masked) attention to the video stream."""
        s = plan.audio_start
        return cross_attention_with_partner(block, audio, context, video, plan.rope_audio[s:], plan.rope_video,
                                            plan.mask_audio, q_start=s)

    def video_cross(self, block, video, audio, context, plan: InteractionPlan):
        """Video cross-attention step: text + (masked) attention to the audio stream."""
        s = plan.audio_start
        return cross_attention_with_partner(block, video, context, audio[:, s:], plan.rope_video,
                                            plan.rope_audio[s:], plan.mask_video)

    def style(self, block, audio, video, plan: InteractionPlan):
        """Global style alignment of the reference-voice tokens (GLDI only)."""
        return audio


class GLDI(GlobalFusion):
    """Global-Local Decoupled Interaction: windowed local fusion + reference-voice style alignment."""

    name = "gldi"
    has_style_alignment = True

    def plan(self, grid, n_audio: int, n_ref: int, rope_video: Rope, rope_audio: Rope, device=None) -> InteractionPlan:
        f, h, w = grid
        window = local_window_mask(f, n_audio - n_ref, self.cfg.local_window).to(device)  # [F, La]
        mask_video = window.repeat_interleave(h * w, dim=0)                              # [Lv, La]
        mask_audio = window.t().repeat_interleave(h * w, dim=1)                          # [La, Lv]
        return InteractionPlan(rope_video, rope_audio, n_ref=n_ref, audio_start=n_ref,
                               mask_video=mask_video, mask_audio=mask_audio)

    def style(self, block, audio, video, plan: InteractionPlan):
        if plan.n_ref == 0:
            return audio
        return style_alignment_step(block, audio, video, plan.n_ref)


def build_interaction(cfg):
    """The interaction object for ``cfg.interaction`` ("global" or "gldi")."""
    return {"global": GlobalFusion, "gldi": GLDI}[cfg.interaction](cfg)
