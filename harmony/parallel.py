"""Sequence-parallel inference (Ulysses-style) over ``torch.distributed``: gloo on CPU, nccl on GPU.

Layout (``docs/parallel.md`` has the per-rank memory and the communication per step):

- The **video tokens are split** across the N ranks in contiguous, balanced pieces
  (``L // N`` or ``L // N + 1`` tokens; any L works, no padding, no mask). RoPE
  tables, window-mask rows and timestep groups are sliced by the same global
  token indices, so every position stays global.
- The **audio tokens stay whole** on every rank: the audio tower is about 1 % of
  the FLOPs at Ovi's shapes, and a replicated audio stream makes the video->audio
  attention local.
- Weights are replicated (not sharded); the sampler state (latents) is whole on
  every rank and evolves identically, so any rank could write the clip.

Around every attention whose keys are video tokens, the wrapper moves the
tensors from sequence shards to head shards with one ``all_to_all`` and back
(heads must divide by N). The model's one `harmony.attention.Attention`
(its backend) runs unchanged in between:

- video self-attention (`SplitAttention`): q, k, v all-to-all to all tokens x H/N
  heads, attention, output all-to-all back to the rank's tokens x all heads;
- audio queries -> video keys (GLDI's local window with its full mask, Ovi's
  global fusion, and the reference-voice style alignment; `SplitKeysAttention`):
  k, v all-to-all to head shards, each rank takes its H/N heads of the (whole)
  audio queries, attention, the heads all-gathered;
- text cross-attention and video queries -> audio keys: keys are whole on every
  rank, no communication.

`apply(model, sp)` installs the wrappers; ``HarmonyModel.forward`` calls
`SequenceParallel.shard_video` after the patch embedding and
`SequenceParallel.gather_video` after the head. Inference only (the collectives
have no backward here).

``python -m harmony.parallel`` prints the per-rank FLOPs and communication of a
5B step for N = 1, 2, 4, 8 (from ``harmony.flops.model_flops``).
"""
from __future__ import annotations

import atexit
import dataclasses
import math
import os
from typing import List, Optional

import torch
import torch.distributed as dist

from .codecs.contract import WAN22_VAE

NPROC_OPTION = "torchrun --nproc_per_node"


class SequenceParallel:
    """One process group over which the video tokens are split (the default group unless given)."""

    def __init__(self, group=None):
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("sequence parallel needs an initialised torch.distributed process group "
                               "(run under torchrun, or call torch.distributed.init_process_group first)")
        self.group = group
        self.rank = dist.get_rank(group)
        self.world = dist.get_world_size(group)
        self.sizes: List[int] = []   # split of the video tokens of the forward in progress

    def split_sizes(self, n: int) -> List[int]:
        """Tokens per rank for a sequence of n: balanced, the first ``n % N`` ranks one more."""
        base, extra = divmod(int(n), self.world)
        return [base + (r < extra) for r in range(self.world)]

    def bounds(self, sizes=None) -> tuple:
        """(start, end) of this rank's tokens in the global sequence."""
        sizes = self.sizes if sizes is None else sizes
        start = sum(sizes[: self.rank])
        return start, start + sizes[self.rank]

    def check_heads(self, cfg) -> None:
        """Heads of both towers must divide by N (each rank attends H/N heads); said before any compute."""
        for tc in (cfg.video, cfg.audio):
            if tc.num_heads % self.world:
                raise ValueError(
                    f"sequence parallel over {self.world} processes ({NPROC_OPTION} {self.world}): the "
                    f"{tc.modality} tower has {tc.num_heads} attention heads, which do not divide by "
                    f"{self.world}; each process attends heads/N heads. Use a process count that divides "
                    f"{math.gcd(cfg.video.num_heads, cfg.audio.num_heads)} ({NPROC_OPTION} with one of "
                    f"{', '.join(str(d) for d in _divisors(math.gcd(cfg.video.num_heads, cfg.audio.num_heads)))})")

    # --- model entry and exit ------------------------------------------------------
    def shard_video(self, v, e0_v, e_v, plan):
        """This rank's video tokens, timestep tables (per group), and the plan with its RoPE rows and
        window-mask rows (video queries -> audio keys) cut to the same global indices."""
        L = v.shape[1]
        self.sizes = self.split_sizes(L)
        s, e = self.bounds()
        plan = dataclasses.replace(
            plan, rope_video=plan.rope_video[s:e],
            mask_video=None if plan.mask_video is None else plan.mask_video[s:e])
        return v[:, s:e], shard_groups(e0_v, L, s, e), shard_groups(e_v, L, s, e), plan

    def gather_video(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, L_rank, C]`` pieces -> ``[B, L, C]`` on every rank (padded to the longest for all_gather)."""
        longest = max(self.sizes)
        pad = longest - x.shape[1]
        if pad:
            x = torch.cat([x, x.new_zeros(x.shape[0], pad, *x.shape[2:])], dim=1)
        parts = [torch.empty_like(x) for _ in range(self.world)]
        dist.all_gather(parts, x.contiguous(), group=self.group)
        return torch.cat([p[:, :n] for p, n in zip(parts, self.sizes)], dim=1)

    # --- the two all-to-alls ---------------------------------------------------------
    def seq_to_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, L_rank, H, E]`` (this rank's tokens, all heads) -> ``[B, L, H/N, E]`` (all tokens, its heads)."""
        B, n, H, E = x.shape
        N, hn = self.world, H // self.world
        send = x.reshape(B, n, N, hn, E).permute(2, 0, 1, 3, 4).contiguous()  # piece j goes to rank j
        recv = x.new_empty(B * sum(self.sizes) * hn * E)
        dist.all_to_all_single(recv, send.reshape(-1), [B * m * hn * E for m in self.sizes],
                               [B * n * hn * E] * N, group=self.group)  # (output splits, input splits)
        pieces = recv.split([B * m * hn * E for m in self.sizes])
        return torch.cat([p.view(B, m, hn, E) for p, m in zip(pieces, self.sizes)], dim=1)

    def heads_to_seq(self, y: torch.Tensor) -> torch.Tensor:
        """``[B, L, H/N, E]`` -> ``[B, L_rank, H, E]`` (the inverse of `seq_to_heads`)."""
        B, _, hn, E = y.shape
        N, n = self.world, self.sizes[self.rank]
        send = torch.cat([p.reshape(-1) for p in y.split(self.sizes, dim=1)])
        recv = y.new_empty(N * B * n * hn * E)
        dist.all_to_all_single(recv, send, [B * n * hn * E] * N, [B * m * hn * E for m in self.sizes],
                               group=self.group)
        return recv.view(N, B, n, hn, E).permute(1, 2, 0, 3, 4).reshape(B, n, N * hn, E)

    def gather_heads(self, y: torch.Tensor) -> torch.Tensor:
        """``[B, Lq, H/N, E]`` (this rank's heads) -> ``[B, Lq, H, E]`` on every rank."""
        parts = [torch.empty_like(y) for _ in range(self.world)]
        dist.all_gather(parts, y.contiguous(), group=self.group)
        return torch.cat(parts, dim=2)


def shard_groups(t: torch.Tensor, n_tokens: int, start: int, end: int) -> torch.Tensor:
    """Rows ``start:end`` of a per-group table ``[B, S, ...]`` whose S groups each cover
    ``n_tokens / S`` consecutive tokens (`harmony.tower.modulate`): the groups themselves when the
    piece starts and ends on group boundaries (S = 1, per token, or aligned), else one row per token."""
    S = t.shape[1]
    if S == 1:
        return t
    g = n_tokens // S
    if start % g == 0 and end % g == 0:
        return t[:, start // g: end // g]
    return t[:, torch.arange(start, end, device=t.device) // g]


class SplitAttention:
    """q, k, v all split by tokens across the ranks (video self-attention): all-to-all to heads, attend, back."""

    def __init__(self, attend, sp: SequenceParallel):
        self.attend, self.sp = attend, sp

    def __call__(self, q, k, v, mask=None):
        d = q.shape[-1]
        qkv = self.sp.seq_to_heads(torch.cat([q, k, v], dim=-1))  # one all-to-all for the three
        out = self.attend(qkv[..., :d], qkv[..., d: 2 * d], qkv[..., 2 * d:], mask)
        return self.sp.heads_to_seq(out)

    def __repr__(self):
        return f"SplitAttention({self.attend!r}, ranks={self.sp.world})"


class SplitKeysAttention:
    """Whole queries (every rank has them all) against keys / values split by tokens (the video):
    k, v to head shards, this rank's heads of q, attend, heads all-gathered. `mask` is the global one."""

    def __init__(self, attend, sp: SequenceParallel):
        self.attend, self.sp = attend, sp

    def __call__(self, q, k, v, mask=None):
        d, hn = q.shape[-1], q.shape[2] // self.sp.world
        kv = self.sp.seq_to_heads(torch.cat([k, v], dim=-1))
        mine = q[:, :, self.sp.rank * hn: (self.sp.rank + 1) * hn]
        return self.sp.gather_heads(self.attend(mine, kv[..., :d], kv[..., d:], mask))

    def __repr__(self):
        return f"SplitKeysAttention({self.attend!r}, ranks={self.sp.world})"


def apply(model, sp: Optional[SequenceParallel]) -> None:
    """Run `model` (a ``HarmonyModel``) sequence-parallel over `sp` (None: back to one process).

    Checks the head counts first. Installs `SplitAttention` on the video self-attention,
    `SplitKeysAttention` on the audio tower's partner attention and style alignment, all
    around the model's own `Attention` (so ``set_attention_backend`` still applies)."""
    if sp is not None:
        sp.check_heads(model.cfg)
    base = model.attend
    for vb, ab in zip(model.video_model.blocks, model.audio_model.blocks):
        vb.self_attn.attend = base if sp is None else SplitAttention(base, sp)
        ab.cross_attn.partner_attend = base if sp is None else SplitKeysAttention(base, sp)
        if hasattr(ab, "style_attn"):
            ab.style_attn.attend = base if sp is None else SplitKeysAttention(base, sp)
    model.sequence_parallel = sp


def join_process_group() -> torch.device:
    """Join the process group a launcher (torchrun, accelerate launch) described in the environment
    (RANK, WORLD_SIZE, MASTER_ADDR, ...): nccl on GPUs, one per local rank; gloo on CPU (also under
    ``ACCELERATE_USE_CPU``). Returns this process's device. The group is closed at exit."""
    gpu = torch.cuda.is_available() and os.environ.get("ACCELERATE_USE_CPU", "").lower() not in ("1", "true")
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if gpu else torch.device("cpu")
    if gpu:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if gpu else "gloo")
        # closed before the interpreter's teardown: gloo's threads still running then can abort a
        # finished process ("terminate called without an active exception")
        atexit.register(lambda: dist.is_initialized() and dist.destroy_process_group())
    return device


def init_from_environment() -> Optional[SequenceParallel]:
    """Under torchrun (``WORLD_SIZE`` > 1): the process group (`join_process_group`) and its
    `SequenceParallel`; a single process: None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    join_process_group()
    return SequenceParallel()


def _divisors(n: int) -> list:
    return [d for d in range(1, n + 1) if n % d == 0]


# --- cost model ---------------------------------------------------------------------

def step_costs(cfg, grid, n_audio: int, n_ref: int = 0, world: int = 1, batch: int = 1,
               bytes_per_element: int = 2) -> dict:
    """Per-rank FLOPs and communication of one forward split over `world` ranks.

    FLOPs from ``harmony.flops.model_flops``: the work with no video token in it (the
    same call at an empty video grid: audio tower, timestep MLPs) is replicated on every
    rank, the rest divides by N (the video patch embedding, also replicated, is under
    0.1 % and counted as divided). Bytes: what one rank sends (= receives) per forward:
    per layer, the video self-attention's q, k, v and output all-to-alls
    (``4 B Lv D (N-1)/N^2``), the k, v all-to-all of the audio->video attention
    (``2 B Lv D (N-1)/N^2``) and of the style alignment when there is a reference voice,
    the all-gathers of those attentions' outputs (``B Lq D (N-1)/N``), and once per
    forward the all-gather of the video head output.
    """
    from .flops import model_flops

    full = model_flops(cfg, grid, n_audio, n_ref, batch)["step"]
    audio_only = model_flops(cfg, (0, 0, 0), n_audio, n_ref, batch)["step"]
    N, D, Lv = world, cfg.video.dim, math.prod(grid)
    n_part = n_audio if cfg.interaction == "gldi" else n_ref + n_audio
    style = cfg.interaction == "gldi" and n_ref > 0
    a2a = batch * Lv * D * (N - 1) / N ** 2                  # one tensor [B, Lv, D] through an all-to-all
    per_layer = (4 + 2 + (2 if style else 0)) * a2a
    per_layer += batch * (n_part + (n_ref if style else 0)) * D * (N - 1) / N   # head all-gathers
    head = batch * Lv * math.prod(cfg.video.patch_size) * cfg.video.out_dim * (N - 1) / N
    comm = (cfg.num_layers * per_layer + head) * bytes_per_element
    return {"world": N, "flops": audio_only + (full - audio_only) / N, "flops_one": full,
            "replicated": audio_only, "bytes": comm, "video_tokens_per_rank": math.ceil(Lv / N),
            "collectives": cfg.num_layers * (4 + (2 if style else 0)) + 1}


def main(argv=None):
    import argparse

    from .flops import clip_tokens_5b
    from .config import get_config

    ap = argparse.ArgumentParser(prog="python -m harmony.parallel",
                                 description="Per-rank FLOPs and communication of one sequence-parallel step "
                                             "of the 5B model (SyncCFG: batch 3, bf16).")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--size", type=int, nargs=2, default=WAN22_VAE.frame_size[::-1], metavar=("W", "H"))
    ap.add_argument("--batch", type=int, default=3, help="samples per forward (SyncCFG: 3, CFG: 2)")
    ap.add_argument("--ref", type=int, default=0, help="reference-voice tokens")
    a = ap.parse_args(argv)
    cfg = get_config("5b")
    grid, n_audio = clip_tokens_5b(a.seconds, a.size[0], a.size[1])
    print(f"5b, {a.seconds:g} s at {a.size[0]}x{a.size[1]}: video grid {grid} = {math.prod(grid)} tokens, "
          f"{n_audio} audio tokens, {a.ref} reference tokens, batch {a.batch}, bf16, "
          f"{cfg.num_layers} layers, heads {cfg.video.num_heads}")
    print(f"{'N':>2} | {'video tok/rank':>14} | {'TFLOP/rank':>10} | {'speed-up bound':>14} | "
          f"{'replicated TFLOP':>16} | {'sent GB/rank':>12} | {'collectives':>11}")
    for n in (1, 2, 4, 8):
        c = step_costs(cfg, grid, n_audio, a.ref, n, a.batch)
        print(f"{n:>2} | {c['video_tokens_per_rank']:>14} | {c['flops'] / 1e12:>10.1f} | "
              f"{c['flops_one'] / c['flops']:>14.2f} | {c['replicated'] / 1e12:>16.2f} | "
              f"{c['bytes'] / 1e9:>12.2f} | {c['collectives'] if n > 1 else 0:>11}")
    print("(per forward = per sampling step; FLOPs from harmony.flops.model_flops, conditioning excluded; "
          "sent GB: bytes each rank sends (and receives) through all_to_all / all_gather)")


if __name__ == "__main__":
    main()
