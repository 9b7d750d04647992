"""`WanTower`: one Wan2.2-style diffusion transformer (video or audio).

Layout and parameter names are Wan2.2's ``WanModel`` (video) and Ovi's audio
``WanModel`` (Conv1d + ConvMLP patch embedding, Linear head), so the public
checkpoints load by key (see `keymap.py` for Ovi's few renames):

    patch_embedding            Conv3d (video) | Sequential(Conv1d k7, SiLU, ConvMLP) (audio)
    text_embedding.{0,2}       Linear -> GELU(tanh) -> Linear
    time_embedding.{0,2}       Linear -> SiLU -> Linear            => e  [B, S, dim]
    time_projection.1          SiLU -> Linear(dim, 6*dim)          => e0 [B, S, 6, dim]
    blocks.N                   norm1, self_attn, norm3, cross_attn, norm2, ffn, modulation
    head.{head,modulation}

A block is exposed in pieces (`modulation_chunks`, `self_attention_step`,
`cross_attention_step`, `ffn_step`) so the dual-tower forward can interleave
the two towers layer by layer, and its cross-attention as plain building
blocks (`CrossAttention.queries`, `text_attention`, `partner_keys_values`,
`out`) from which `harmony.interaction` composes the cross-tower attention.
The tower knows nothing of the interaction: the model passes `extend_block`
to add per-block modules (GLDI's style alignment) and one `Attention` object
(the model's backend) to every attention layer. Timestep embeddings are per *group* of tokens:
``S`` groups of ``L/S`` consecutive tokens (S = 1 for one t, S = F for one t
per latent frame, S = L for per-token t), which keeps e0 small for video.
"""
from __future__ import annotations

import math
import re

import torch
import torch.nn as nn

from typing import Callable, Optional

from einops import rearrange

from .attention import Attention
from .config import TowerConfig
from .ops import default_ops, unfold_windows
from .rope import Rope, TableCache, apply_rope, audio_rope, video_rope


# --- small helpers ----------------------------------------------------------

_FP32_WEIGHTS = re.compile(r"(^|\.)(time_embedding|time_projection)\.|(^|\.)(blocks\.\d+|head)\.modulation$")


def computes_in_fp32(name: str) -> bool:
    """True for the parameters that always compute in float32 (tower- or model-level state-dict name):
    the time embedding, the time projection and the modulation tables. Towers store them in float32
    whatever the storage dtype of the rest (cast once at load instead of at every forward)."""
    return bool(_FP32_WEIGHTS.search(name))


def sinusoidal_embedding(freq_dim: int, t: torch.Tensor) -> torch.Tensor:
    """Wan's timestep sinusoid [cos, sin] (cos first), computed in float64, returned float32."""
    half = freq_dim // 2
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device).div(half))
    phase = t.to(torch.float64).unsqueeze(-1) * freqs
    return torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1).float()


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x * (1 + scale) + shift with per-group float32 tables ``[B, S, 1, dim]``; result in x's dtype."""
    groups = rearrange(x.float(), "b (s l) d -> b s l d", s=shift.shape[1])
    return rearrange(groups * (1 + scale) + shift, "b s l d -> b (s l) d").to(x.dtype)


def gated_add(x: torch.Tensor, y: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """x + y * gate with a per-group float32 gate ``[B, S, 1, dim]``."""
    groups = rearrange(y.float(), "b (s l) d -> b s l d", s=gate.shape[1])
    return x + rearrange(groups * gate, "b s l d -> b (s l) d").to(x.dtype)


def heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``[B, L, heads*head_dim]`` -> ``[B, L, heads, head_dim]``."""
    return rearrange(x, "b l (h d) -> b l h d", h=num_heads)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``[B, L, heads, head_dim]`` -> ``[B, L, heads*head_dim]``."""
    return rearrange(x, "b l h d -> b l (h d)")


def _qk_norm(ops, cfg: TowerConfig):
    return ops.RMSNorm(cfg.dim, eps=cfg.eps) if cfg.qk_norm else nn.Identity()


# --- attention layers ------------------------------------------------------

class SelfAttention(nn.Module):
    """Multi-head self-attention with q/k RMSNorm (over the full dim) and RoPE on q, k."""

    def __init__(self, cfg: TowerConfig, ops, attend: Attention):
        super().__init__()
        dim, self.num_heads = cfg.dim, cfg.num_heads
        self.q, self.k, self.v, self.o = (ops.Linear(dim, dim) for _ in range(4))
        self.norm_q, self.norm_k = _qk_norm(ops, cfg), _qk_norm(ops, cfg)
        self.attend = attend

    def forward(self, x: torch.Tensor, rope: Rope) -> torch.Tensor:
        q = apply_rope(heads(self.norm_q(self.q(x)), self.num_heads), rope)
        k = apply_rope(heads(self.norm_k(self.k(x)), self.num_heads), rope)
        v = heads(self.v(x), self.num_heads)
        return self.o(merge_heads(self.attend(q, k, v)))


class CrossAttention(nn.Module):
    """Text cross-attention (no RoPE); with ``fusion=True`` also Ovi's parameters for attending a partner.

    Fusion parameters: ``k_fusion``, ``v_fusion``, ``norm_k_fusion`` (RMSNorm) and
    ``pre_attn_norm_fusion`` (affine LayerNorm on the partner stream). ``forward``
    is Wan's text cross-attention; the building blocks below let
    `harmony.interaction` add the partner attention before the shared ``o``.
    """

    def __init__(self, cfg: TowerConfig, ops, attend: Attention, fusion: bool = False):
        super().__init__()
        dim, self.num_heads = cfg.dim, cfg.num_heads
        self.q, self.k, self.v, self.o = (ops.Linear(dim, dim) for _ in range(4))
        self.norm_q, self.norm_k = _qk_norm(ops, cfg), _qk_norm(ops, cfg)
        self.has_fusion = fusion
        if fusion:
            self.k_fusion = ops.Linear(dim, dim)
            self.v_fusion = ops.Linear(dim, dim)
            self.norm_k_fusion = _qk_norm(ops, cfg)
            self.pre_attn_norm_fusion = ops.LayerNorm(dim, eps=cfg.eps, elementwise_affine=True)
        self.attend = attend
        self.partner_attend = attend  # the partner attention's; `harmony.parallel` wraps it when the partner is split

    def queries(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, L, heads, head_dim]`` queries (no RoPE)."""
        return heads(self.norm_q(self.q(x)), self.num_heads)

    def text_attention(self, q: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Queries attend the (embedded) text context; ``[B, L, heads, head_dim]``."""
        k = heads(self.norm_k(self.k(context)), self.num_heads)
        v = heads(self.v(context), self.num_heads)
        return self.attend(q, k, v)

    def partner_keys_values(self, partner: torch.Tensor, rope: Rope):
        """Keys (with the partner's RoPE) and values of the partner tower's tokens, by the fusion parameters."""
        if not self.has_fusion:
            raise RuntimeError("this tower was built without fusion parameters (fusion=False)")
        p = self.pre_attn_norm_fusion(partner)
        k = apply_rope(heads(self.norm_k_fusion(self.k_fusion(p)), self.num_heads), rope)
        return k, heads(self.v_fusion(p), self.num_heads)

    def out(self, y: torch.Tensor) -> torch.Tensor:
        """The shared output projection of ``[B, L, heads, head_dim]``."""
        return self.o(merge_heads(y))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.out(self.text_attention(self.queries(x), context))


# --- block ---------------------------------------------------------------------

class WanBlock(nn.Module):
    """One DiT block: gated self-attention, un-gated cross-attention, gated FFN, with a [1, 6, dim] modulation table."""

    def __init__(self, cfg: TowerConfig, ops, attend: Attention, fusion: bool = False):
        super().__init__()
        dim = cfg.dim
        self.norm1 = ops.LayerNorm(dim, eps=cfg.eps, elementwise_affine=False)
        self.self_attn = SelfAttention(cfg, ops, attend)
        self.norm3 = ops.LayerNorm(dim, eps=cfg.eps, elementwise_affine=True) if cfg.cross_attn_norm else nn.Identity()
        self.cross_attn = CrossAttention(cfg, ops, attend, fusion=fusion)
        self.norm2 = ops.LayerNorm(dim, eps=cfg.eps, elementwise_affine=False)
        self.ffn = nn.Sequential(ops.Linear(dim, cfg.ffn_dim), nn.GELU(approximate="tanh"), ops.Linear(cfg.ffn_dim, dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim ** 0.5)

    def modulation_chunks(self, e0: torch.Tensor) -> list:
        """shift/scale/gate for self-attention then FFN, each ``[B, S, 1, dim]`` float32."""
        m = self.modulation.to(device=e0.device, dtype=torch.float32).unsqueeze(0) + e0.float()
        return [c for c in m.unsqueeze(3).unbind(2)]  # 6 x [B, S, 1, dim]

    def self_attention_step(self, x: torch.Tensor, mod: list, rope: Rope) -> torch.Tensor:
        y = self.self_attn(modulate(self.norm1(x), mod[0], mod[1]), rope)
        return gated_add(x, y, mod[2])

    def cross_attention_step(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """x + CrossAttn(norm3(x), text) (no gate): Wan's text cross-attention."""
        return x + self.cross_attn(self.norm3(x), context)

    def ffn_step(self, x: torch.Tensor, mod: list) -> torch.Tensor:
        return gated_add(x, self.ffn(modulate(self.norm2(x), mod[3], mod[4])), mod[5])

    def forward(self, x: torch.Tensor, *args, step: Optional[Callable] = None, **kw) -> torch.Tensor:
        """Wan's block ``forward(x, e0, context, rope)``; with `step`, ``step(self, x, *args, **kw)``.

        The dual-tower model interleaves the two towers' blocks piece by piece and runs each
        piece through this call (``step``), so that module hooks see every use of a block's
        weights: each block can be its own FSDP2 unit or have its activations checkpointed."""
        if step is not None:
            return step(self, x, *args, **kw)
        e0, context, rope = args
        mod = self.modulation_chunks(e0)
        x = self.self_attention_step(x, mod, rope)
        x = self.cross_attention_step(x, context)
        return self.ffn_step(x, mod)


class Head(nn.Module):
    """Output head: LayerNorm, [1, 2, dim] shift/scale table added to e, Linear to patch * out_dim."""

    def __init__(self, cfg: TowerConfig, ops):
        super().__init__()
        dim = cfg.dim
        self.norm = ops.LayerNorm(dim, eps=cfg.eps, elementwise_affine=False)
        self.head = ops.Linear(dim, math.prod(cfg.patch_size) * cfg.out_dim)
        self.modulation = nn.Parameter(torch.randn(1, 2, dim) / dim ** 0.5)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        m = self.modulation.to(device=e.device, dtype=torch.float32).unsqueeze(0) + e.float().unsqueeze(2)
        shift, scale = m.unsqueeze(3).unbind(2)  # [B, S, 1, dim] each
        return self.head(modulate(self.norm(x), shift, scale))


class ConvMLP(nn.Module):
    """Ovi's audio ConvMLP: w2(silu(w1(x)) * w3(x)), bias-free Conv1d over the sequence."""

    def __init__(self, dim: int, hidden: int, kernel: int, ops):
        super().__init__()
        pad = kernel // 2
        self.w1 = ops.Conv1d(dim, hidden, kernel, padding=pad, bias=False)
        self.w2 = ops.Conv1d(hidden, dim, kernel, padding=pad, bias=False)
        self.w3 = ops.Conv1d(dim, hidden, kernel, padding=pad, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, L]
        return self.w2(nn.functional.silu(self.w1(x)) * self.w3(x))

    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:  # [B, L, C]
        """The same on a sequence-major input; w1 and w3 share one set of unfolded windows."""
        win = None
        if hasattr(self.w1, "matmul_ok") and self.w1.matmul_ok() and self.w1.padding == self.w3.padding:
            win = unfold_windows(x, self.w1.kernel_size[0], self.w1.padding[0])
        h = nn.functional.silu(_conv_seq(self.w1, x, win)) * _conv_seq(self.w3, x, win)
        return _conv_seq(self.w2, h)


def _conv_seq(conv: nn.Module, x: torch.Tensor, windows=None) -> torch.Tensor:
    """A Conv1d applied to ``[B, L, C]``: as a matmul when the layer offers it, else as a convolution."""
    if hasattr(conv, "forward_sequence"):
        return conv.forward_sequence(x, windows)
    return conv(x.transpose(1, 2)).transpose(1, 2)


class AudioPatchEmbedding(nn.Sequential):
    """Ovi audio patch embedding: Conv1d(in, dim, k7) -> SiLU -> ConvMLP; [B, L, C_in] -> [B, L, dim].

    Every stride-1 Conv1d runs as one matmul over unfolded windows (``ops.Conv1d.forward_sequence``).
    """

    def __init__(self, cfg: TowerConfig, ops):
        k = cfg.audio_patch_kernel
        super().__init__(
            ops.Conv1d(cfg.in_dim, cfg.dim, k, padding=k // 2),
            nn.SiLU(),
            ConvMLP(cfg.dim, cfg.patch_hidden, k, ops),
        )

    @property
    def receptive_radius(self) -> int:
        """Output token j depends on input tokens j-r..j+r only (three stacked kernel-k convolutions)."""
        return 3 * (self[0].kernel_size[0] // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self[2].forward_sequence(self[1](_conv_seq(self[0], x)))


# --- tower ----------------------------------------------------------------------

class WanTower(nn.Module):
    """One tower. ``fusion=True`` adds Ovi's fusion parameters to every cross-attention;
    ``extend_block(block, cfg, ops, attend)``, when given, is called at the end of each block's
    construction to add modules (the model uses it for GLDI's style alignment); `attend` is the
    `Attention` (backend) every attention layer uses (default: a new sdpa one)."""

    def __init__(self, cfg: TowerConfig, ops=default_ops, fusion: bool = False,
                 extend_block: Optional[Callable] = None, attend: Optional[Attention] = None):
        super().__init__()
        self.cfg = cfg
        dim = cfg.dim
        if cfg.modality == "video":
            self.patch_embedding = ops.Conv3d(cfg.in_dim, dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        else:
            self.patch_embedding = AudioPatchEmbedding(cfg, ops)
        self.text_embedding = nn.Sequential(ops.Linear(cfg.text_dim, dim), nn.GELU(approximate="tanh"), ops.Linear(dim, dim))
        self.time_embedding = nn.Sequential(ops.Linear(cfg.freq_dim, dim), nn.SiLU(), ops.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), ops.Linear(dim, 6 * dim))
        self.attend = attend if attend is not None else Attention()
        blocks = []
        for _ in range(cfg.num_layers):
            blocks.append(WanBlock(cfg, ops, self.attend, fusion=fusion))
            if extend_block is not None:
                extend_block(blocks[-1], cfg, ops, self.attend)
        self.blocks = nn.ModuleList(blocks)
        self.head = Head(cfg, ops)
        self.ropes = TableCache(size=4)  # standalone forward: RoPE table per (grid, device)
        self.register_load_state_dict_post_hook(lambda module, _incompatible: module.store_fp32_weights())

    # storage -----------------------------------------------------------------
    def store_fp32_weights(self):
        """Keep the fp32-compute weights (``computes_in_fp32``) in float32.

        Runs after every ``.to()`` / ``.half()`` / ``load_state_dict``. A bf16 or fp16 value
        upcast to float32 is exact, so outputs are bit-identical to casting at every use.
        """
        for name, p in self.named_parameters():
            if p.dtype in (torch.float16, torch.bfloat16) and computes_in_fp32(name):
                p.data = p.data.float()

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        self.store_fp32_weights()
        return self

    # inputs ---------------------------------------------------------------
    def patchify(self, x: torch.Tensor):
        """Video ``[B, C, F, H, W]`` -> tokens ``[B, f*h*w, dim]`` and grid (f, h, w); audio ``[B, L, C]`` -> ``[B, L, dim]``, (L,)."""
        if self.cfg.modality == "audio":
            return self.patch_embedding(x), (x.shape[1],)
        if hasattr(self.patch_embedding, "forward_patches"):  # one matmul over the patches
            return self.patch_embedding.forward_patches(x)
        y = self.patch_embedding(x)
        return rearrange(y, "b c f h w -> b (f h w) c"), tuple(y.shape[2:])

    def unpatchify(self, y: torch.Tensor, grid) -> torch.Tensor:
        """Head output ``[B, L, prod(patch)*out_dim]`` -> video ``[B, C, F, H, W]`` (audio: ``[B, L, C]`` as is)."""
        if self.cfg.modality == "audio":
            return y
        (pt, ph, pw), (f, h, w) = self.cfg.patch_size, grid
        return rearrange(y, "b (f h w) (pf ph pw c) -> b c (f pf) (h ph) (w pw)",
                         f=f, h=h, w=w, pf=pt, ph=ph, pw=pw)

    def embed_text(self, context: torch.Tensor) -> torch.Tensor:
        """Zero-pad ``[B, Lt, text_dim]`` to text_len rows (all attended, as Wan), then the text MLP."""
        B, Lt, _ = context.shape
        if Lt > self.cfg.text_len:
            raise ValueError(
                f"{self.cfg.modality} text context has {Lt} rows but the tower takes at most text_len="
                f"{self.cfg.text_len}; truncate the prompt embedding"
            )
        if Lt < self.cfg.text_len:
            context = torch.cat([context, context.new_zeros(B, self.cfg.text_len - Lt, context.shape[2])], dim=1)
        return self.text_embedding(context)

    def embed_time(self, t: torch.Tensor):
        """Timesteps ``[B, S]`` (0..1000) -> e ``[B, S, dim]`` and e0 ``[B, S, 6, dim]`` (float32)."""
        e = self.time_embedding(sinusoidal_embedding(self.cfg.freq_dim, t))
        e0 = self.time_projection(e).unflatten(2, (6, self.cfg.dim))
        return e, e0

    def timestep_groups(self, t: torch.Tensor, batch: int, grid, name: str = "t") -> torch.Tensor:
        """Validate a timestep tensor and return it as ``[B, S]`` groups of tokens.

        Video accepts ``[B]``, ``[B, F]`` (per latent frame) or ``[B, f*h*w]`` (per token);
        audio accepts ``[B]`` or ``[B, L]``.
        """
        t = torch.as_tensor(t)
        if t.dim() == 0:
            t = t.reshape(1)
        if t.dim() == 1:
            t = t[:, None]
        n_tokens = math.prod(grid)
        allowed = (1, grid[0], n_tokens)
        if t.dim() != 2 or t.shape[0] not in (1, batch) or t.shape[1] not in allowed:
            per = "[B, F] per latent frame or [B, f*h*w] per token" if self.cfg.modality == "video" else "[B, L] per token"
            raise ValueError(
                f"{name} has shape {tuple(t.shape)}; expected [B] or {per} with B={batch}, "
                f"grid {tuple(grid)} ({n_tokens} tokens)"
            )
        return t.expand(batch, -1).float()

    def rope(self, grid, positions: torch.Tensor = None, device=None) -> Rope:
        """Video: 3-D table for `grid`; audio: 1-D table at `positions` (default j * audio_rope_scale)."""
        c = self.cfg
        if c.modality == "video":
            return video_rope(grid, c.head_dim, c.rope_theta, device=device)
        if positions is None:
            positions = torch.arange(grid[0], dtype=torch.float64) * c.audio_rope_scale
        return audio_rope(positions, c.head_dim, c.rope_theta, device=device)

    # standalone forward ------------------------------------------------------
    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """One tower alone (Wan2.2's WanModel with a batch): video ``[B, C, F, H, W]`` or audio ``[B, L, C]``."""
        tokens, grid = self.patchify(x)
        e, e0 = self.embed_time(self.timestep_groups(t, x.shape[0], grid).to(x.device))
        ctx = self.embed_text(context.to(tokens.dtype))
        rope = self.ropes.get((tuple(grid), x.device), lambda: self.rope(grid, device=x.device))
        for block in self.blocks:
            tokens = block(tokens, e0, ctx, rope)
        return self.unpatchify(self.head(tokens, e), grid)
