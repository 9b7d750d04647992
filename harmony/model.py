"""`HarmonyModel`: the dual-tower (video + audio) forward with one timestep per modality.

Per layer i (the order of Ovi's fusion block, which the public weights expect):

1. audio self-attention, 2. video self-attention,
3. audio cross-attention (text + interaction with the video after step 2),
   then [GLDI] style alignment of the reference-voice tokens, then audio FFN,
4. video cross-attention (text + interaction with the audio as it was after
   step 1), then video FFN.

Reference-voice latents (``Conditioning.ref_audio``) are prepended to the audio
tokens with timestep 0 and stripped from the output.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn

from .attention import Attention
from .config import HarmonyConfig
from .interaction import add_style_alignment, audio_positions, build_interaction
from .ops import default_ops
from .rope import TableCache
from .tower import WanTower


@dataclass
class Conditioning:
    """Everything the model is conditioned on besides the noisy latents and timesteps."""

    video_context: torch.Tensor            # [B, Lt, text_dim]
    audio_context: torch.Tensor            # [B, Lt', text_dim]
    ref_audio: Optional[torch.Tensor] = None  # [B, Lr, Ca] clean reference-voice latent

    @property
    def batch_size(self) -> int:
        return self.video_context.shape[0]

    def repeat(self, n: int) -> "Conditioning":
        """Each tensor repeated n times along the batch."""
        rep = lambda x: None if x is None else x.repeat(n, *([1] * (x.dim() - 1)))  # noqa: E731
        return Conditioning(rep(self.video_context), rep(self.audio_context), rep(self.ref_audio))

    def to(self, *args, **kw) -> "Conditioning":
        mv = lambda x: None if x is None else x.to(*args, **kw)  # noqa: E731
        return Conditioning(mv(self.video_context), mv(self.audio_context), mv(self.ref_audio))

    @classmethod
    def cat(cls, conds: Sequence["Conditioning"]) -> "Conditioning":
        """Concatenate along the batch. Text rows are zero-padded to the longest (the tower pads anyway)."""
        if not conds:
            raise ValueError("Conditioning.cat needs at least one Conditioning")
        refs = [c.ref_audio for c in conds]
        if any(r is None for r in refs) and not all(r is None for r in refs):
            raise ValueError("Conditioning.cat: either all or none of the items may carry ref_audio")

        def pad_cat(xs):
            n = max(x.shape[1] for x in xs)
            return torch.cat([torch.cat([x, x.new_zeros(x.shape[0], n - x.shape[1], x.shape[2])], 1) for x in xs])

        ref = None
        if refs[0] is not None:
            if len({r.shape[1] for r in refs}) != 1:
                raise ValueError("Conditioning.cat: ref_audio lengths differ; trim them to one length")
            ref = torch.cat(refs)
        return cls(pad_cat([c.video_context for c in conds]), pad_cat([c.audio_context for c in conds]), ref)


@dataclass
class PreparedConditioning:
    """A `Conditioning` after the work that depends on it alone, done once per sampling run.

    Built by ``HarmonyModel.prepare(cond, dtype, device)``; ``HarmonyModel.forward``
    takes it wherever it takes a `Conditioning` (a raw one is prepared on every call).
    Holds the text contexts after each tower's text-embedding MLP (padded to
    ``text_len``) and, for a reference voice longer than twice the audio patch
    embedding's receptive radius r, the patch-embedded reference tokens
    ``0 .. Lr-r-1`` (those the noisy target cannot reach). Valid for the model,
    dtype and device it was prepared with; ``forward`` re-prepares from ``raw``
    when the latents' dtype or device differ.
    """

    raw: Conditioning
    video_context: torch.Tensor           # [B, video text_len, dim]
    audio_context: torch.Tensor           # [B, audio text_len, dim]
    ref_tokens: Optional[torch.Tensor]    # [B, Lr - r, dim] or None
    dtype: torch.dtype
    device: torch.device

    @property
    def batch_size(self) -> int:
        return self.raw.batch_size

    @property
    def ref_audio(self) -> Optional[torch.Tensor]:
        return self.raw.ref_audio

    def repeat(self, n: int) -> "PreparedConditioning":
        """Each tensor repeated n times along the batch."""
        rep = lambda x: None if x is None else x.repeat(n, *([1] * (x.dim() - 1)))  # noqa: E731
        return PreparedConditioning(self.raw.repeat(n), rep(self.video_context), rep(self.audio_context),
                                    rep(self.ref_tokens), self.dtype, self.device)

    @classmethod
    def cat(cls, items: Sequence["PreparedConditioning"]) -> "PreparedConditioning":
        """Concatenate along the batch (all prepared with one dtype and device)."""
        if not items:
            raise ValueError("PreparedConditioning.cat needs at least one item")
        if len({(c.dtype, c.device) for c in items}) != 1:
            raise ValueError("PreparedConditioning.cat: items were prepared with different dtypes or devices")
        refs = [c.ref_tokens for c in items]
        if any(r is None for r in refs) != all(r is None for r in refs):
            raise ValueError("PreparedConditioning.cat: either all or none of the items may carry a reference voice")
        return cls(Conditioning.cat([c.raw for c in items]), torch.cat([c.video_context for c in items]),
                   torch.cat([c.audio_context for c in items]), None if refs[0] is None else torch.cat(refs),
                   items[0].dtype, items[0].device)


class HarmonyModel(nn.Module):
    """Video tower + audio tower + their interaction (``cfg.interaction``)."""

    def __init__(self, cfg: HarmonyConfig, ops=default_ops, attention: str = "sdpa"):
        super().__init__()
        self.cfg = cfg
        self.interaction = build_interaction(cfg)
        self.attend = Attention(attention)  # this model's attention backend, shared by all its layers
        self.video_model = WanTower(cfg.video, ops, fusion=True, attend=self.attend)
        style = add_style_alignment if self.interaction.has_style_alignment else None
        self.audio_model = WanTower(cfg.audio, ops, fusion=True, extend_block=style, attend=self.attend)
        self.layer_hook: Optional[Callable[[int], None]] = None
        self.plans = TableCache(size=8)  # RoPE tables + window masks per (grid, audio length, ref length, device)
        self.sequence_parallel = None  # a harmony.parallel.SequenceParallel: video tokens split across ranks
        self.checkpoint_blocks = False  # activation checkpointing of each block piece (training memory)

    @property
    def num_layers(self) -> int:
        return self.cfg.num_layers

    @property
    def attention_backend(self) -> str:
        return self.attend.backend

    def set_attention_backend(self, name: str) -> None:
        """Attention backend ("sdpa", "flash", "sage") for this model only; see `harmony.attention`."""
        self.attend.set_backend(name)

    # validation ------------------------------------------------------------------
    def _check_inputs(self, video, audio, cond):
        cv, ca = self.cfg.video, self.cfg.audio
        if not torch.is_tensor(video) or video.dim() != 5:
            raise ValueError(f"video must be a [B, C, F, H, W] tensor, got {_shape(video)}")
        if not torch.is_tensor(audio) or audio.dim() != 3:
            raise ValueError(f"audio must be a [B, L, C] tensor (sequence-major), got {_shape(audio)}")
        if video.shape[1] != cv.in_dim:
            raise ValueError(f"video has {video.shape[1]} channels; this model expects {cv.in_dim} (video latent channels)")
        if audio.shape[2] != ca.in_dim:
            raise ValueError(
                f"audio has {audio.shape[2]} channels in the last dim; this model expects {ca.in_dim} "
                f"(audio latent as [B, L, C]; transpose a [B, C, L] latent)")
        B = video.shape[0]
        if audio.shape[0] != B:
            raise ValueError(f"batch mismatch: video has B={B}, audio has B={audio.shape[0]}")
        pt, ph, pw = cv.patch_size
        F, H, W = video.shape[2:]
        if F % pt or H % ph or W % pw:
            raise ValueError(
                f"video latent size F,H,W = {F},{H},{W} is not divisible by the patch size {cv.patch_size}; "
                f"crop or pad the latent (pixel sizes should be multiples of the VAE stride times the patch)")
        if audio.shape[1] < 1:
            raise ValueError("audio needs at least one latent token")
        if not isinstance(cond, Conditioning):
            raise TypeError(f"cond must be a harmony.model.Conditioning (or PreparedConditioning), got {type(cond).__name__}")
        for name, ctx, tc in (("video_context", cond.video_context, cv), ("audio_context", cond.audio_context, ca)):
            if not torch.is_tensor(ctx) or ctx.dim() != 3:
                raise ValueError(f"cond.{name} must be a [B, Lt, text_dim] tensor, got {_shape(ctx)}")
            if ctx.shape[0] != B:
                raise ValueError(f"cond.{name} has batch {ctx.shape[0]}, the latents have {B}; use cond.repeat(n)")
            if ctx.shape[2] != tc.text_dim:
                raise ValueError(f"cond.{name} has width {ctx.shape[2]}; the {tc.modality} tower expects text_dim={tc.text_dim}")
        ref = cond.ref_audio
        if ref is not None:
            if not torch.is_tensor(ref) or ref.dim() != 3 or ref.shape[0] != B or ref.shape[2] != ca.in_dim:
                raise ValueError(f"cond.ref_audio must be [B={B}, Lr, {ca.in_dim}] (clean reference-voice latent), got {_shape(ref)}")

    # conditioning ------------------------------------------------------------------
    def prepare(self, cond: Conditioning, dtype: torch.dtype = None, device=None) -> PreparedConditioning:
        """Everything that depends only on `cond`, computed once: both towers' text embeddings and
        the reference-voice tokens the target cannot reach. Pass the result to ``forward`` at every
        step of a sampling run (and to ``PreparedConditioning.cat`` / ``repeat`` for guidance batches).

        `dtype` / `device`: those of the latents ``forward`` will get (default: the
        contexts' own). Under block swap or CPU offload call it with the weights available
        (inside ``CPUOffload.loaded()``; the text and patch embeddings are resident under block swap).
        """
        if isinstance(cond, PreparedConditioning):
            cond = cond.raw
        if not isinstance(cond, Conditioning):
            raise TypeError(f"cond must be a harmony.model.Conditioning, got {type(cond).__name__}")
        dtype = dtype or cond.video_context.dtype
        device = torch.device(device) if device is not None else cond.video_context.device
        vm, am = self.video_model, self.audio_model
        ctx_v = vm.embed_text(cond.video_context.to(device=device, dtype=dtype))
        ctx_a = am.embed_text(cond.audio_context.to(device=device, dtype=dtype))
        ref_tokens = None
        ref = cond.ref_audio
        r = getattr(am.patch_embedding, "receptive_radius", None)
        if ref is not None and r is not None and ref.shape[1] > 2 * r:
            ref_tokens = am.patchify(ref.to(device=device, dtype=dtype))[0][:, : ref.shape[1] - r]
        return PreparedConditioning(cond, ctx_v, ctx_a, ref_tokens, dtype, device)

    def plan(self, grid, n_audio: int, n_ref: int, device):
        """RoPE tables and interaction masks for one geometry, built once per (shape, device)."""
        grid, device = tuple(int(g) for g in grid), torch.device(device)

        def build():
            vm, am = self.video_model, self.audio_model
            rope_v = vm.rope(grid, device=device)
            rope_a = am.rope((n_ref + n_audio,), positions=audio_positions(self.cfg, grid[0], n_audio, n_ref),
                             device=device)
            return self.interaction.plan(grid, n_ref + n_audio, n_ref, rope_v, rope_a, device=device)

        return self.plans.get((grid, n_audio, n_ref, device), build)

    # forward ---------------------------------------------------------------------
    def forward(self, video: torch.Tensor, audio: torch.Tensor, t_video: torch.Tensor, t_audio: torch.Tensor,
                cond, slg_layers: Sequence[int] = ()):
        """Raw network outputs ``(v_out [B, Cv, F, H, W], a_out [B, La, Ca])`` (see ``cfg.prediction``).

        `cond`: a `Conditioning`, or a `PreparedConditioning` from ``prepare`` (the same result,
        without recomputing the conditioning-only work). `t_video`: ``[B]`` or ``[B, F]`` (per
        latent frame; I2AV gives frame 0 t=0); `t_audio`: ``[B]`` or ``[B, La]``. `slg_layers`:
        layers skipped entirely in both towers (Ovi's skip-layer guidance).
        """
        prepared = cond if isinstance(cond, PreparedConditioning) else None
        self._check_inputs(video, audio, prepared.raw if prepared is not None else cond)
        vm, am = self.video_model, self.audio_model
        B, La, dev = video.shape[0], audio.shape[1], video.device
        if prepared is None or prepared.dtype != video.dtype or prepared.device != dev:
            prepared = self.prepare(cond, dtype=video.dtype, device=dev)
        ref = prepared.ref_audio
        n_ref = 0 if ref is None else ref.shape[1]

        v, grid = vm.patchify(video)
        if ref is None:
            a, _ = am.patchify(audio)
        elif prepared.ref_tokens is None:
            a, _ = am.patchify(torch.cat([ref.to(audio.dtype), audio], dim=1))
        else:  # only the last 2r reference tokens meet the target inside the receptive field
            r = n_ref - prepared.ref_tokens.shape[1]
            tail, _ = am.patchify(torch.cat([ref[:, n_ref - 2 * r:].to(audio.dtype), audio], dim=1))
            a = torch.cat([prepared.ref_tokens, tail[:, r:]], dim=1)

        tv = vm.timestep_groups(torch.as_tensor(t_video, device=dev), B, grid, name="t_video")
        ta = am.timestep_groups(torch.as_tensor(t_audio, device=dev), B, (La,), name="t_audio")
        if n_ref:
            ta = torch.cat([torch.zeros(B, n_ref, device=dev), ta.expand(B, La)], dim=1)
        e_v, e0_v = vm.embed_time(tv.to(dev))
        e_a, e0_a = am.embed_time(ta.to(dev))
        ctx_v, ctx_a = prepared.video_context, prepared.audio_context
        plan = self.plan(grid, La, n_ref, dev)
        sp = self.sequence_parallel
        if sp is not None:  # this rank's video tokens, with their global RoPE rows (harmony.parallel)
            v, e0_v, e_v, plan = sp.shard_video(v, e0_v, e_v, plan)

        skip = {int(i) for i in slg_layers}
        for i in range(self.num_layers):
            if self.layer_hook is not None:
                self.layer_hook(i)
            if i in skip:
                continue
            v, a = self.layer(i, v, a, e0_v, e0_a, ctx_v, ctx_a, plan)

        v = vm.head(v, e_v)
        v_out = vm.unpatchify(v if sp is None else sp.gather_video(v), grid)
        a_out = am.head(a, e_a)[:, n_ref:]
        return v_out, a_out

    def layer(self, i, v, a, e0_v, e0_a, ctx_v, ctx_a, plan):
        """Layer i of both towers, in Ovi's fusion-block order.

        Every piece runs inside a module call of its block (``block(..., step=...)``), two per
        block: its self-attention, then the rest (cross-attention with text and partner, style,
        FFN). Module hooks thus see every use of a block's weights, so each block can be an
        FSDP2 unit (`harmony.distributed`); ``checkpoint_blocks`` recomputes each piece's
        activations in backward instead of keeping them.
        """
        vb, ab = self.video_model.blocks[i], self.audio_model.blocks[i]
        run = _checkpointed if self.checkpoint_blocks and torch.is_grad_enabled() else _direct
        a, mod_a = run(ab, a, e0_a, step=_self_attention, rope=plan.rope_audio)
        v, mod_v = run(vb, v, e0_v, step=_self_attention, rope=plan.rope_video)
        a_after_self = a
        a = run(ab, a, v, ctx_a, mod_a, step=_audio_rest, interaction=self.interaction, plan=plan)
        v = run(vb, v, a_after_self, ctx_v, mod_v, step=_video_rest, interaction=self.interaction, plan=plan)
        return v, a


# --- the pieces of a layer, each run as one call of its block -------------------------

def _self_attention(block, x, e0, rope):
    mod = block.modulation_chunks(e0)
    return block.self_attention_step(x, mod, rope), mod


def _audio_rest(block, a, v, ctx, mod, interaction, plan):
    """Audio cross-attention (text + the video after its self-attention), style alignment, FFN."""
    a = interaction.audio_cross(block, a, v, ctx, plan)
    a = interaction.style(block, a, v, plan)
    return block.ffn_step(a, mod)


def _video_rest(block, v, a, ctx, mod, interaction, plan):
    """Video cross-attention (text + the audio as it was after its self-attention), FFN."""
    v = interaction.video_cross(block, v, a, ctx, plan)
    return block.ffn_step(v, mod)


def _direct(block, *args, step, **kw):
    return block(*args, step=step, **kw)


def _checkpointed(block, *args, step, **kw):
    from torch.utils.checkpoint import checkpoint

    return block(*args, step=functools.partial(checkpoint, step, use_reentrant=False), **kw)


def _shape(x):
    return tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
