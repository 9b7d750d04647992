"""The model's FLOP count and a clip's token counts, from the config alone (nothing runs).

:func:`model_flops`: the matmul and attention FLOPs of one ``HarmonyModel`` forward for a video
patch grid and audio token count; :func:`real_tokens`: the frames, latent shape, patch grid and
token counts of a real clip by the pipeline's rules (the Wan VAE's ``4k+1`` frames, the codec
strides and rates in ``cfg.meta``). The bench reports GFLOP/s with these
(``python -m harmony bench``), the memory plan and the frame-size check count tokens with them.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

from .codecs.contract import WAN22_VAE, meta_value
from .config import HarmonyConfig, get_config
from .jobs import clip_geometry


def model_flops(cfg: HarmonyConfig, grid, n_audio: int, n_ref: int = 0, batch: int = 1) -> dict:
    """Matmul and attention FLOPs of one ``HarmonyModel`` forward (a multiply-add = 2 FLOPs).

    `grid`: the video patch grid (f, h, w); `n_audio`: target audio tokens;
    `n_ref`: reference-voice tokens. Counted: every Linear / patch-embedding
    matmul and the two matmuls of each attention (q k^T and p v, dense: a
    window mask is applied inside a full score matrix). Not counted: norms,
    activations, RoPE, softmax, modulation (all O(tokens x dim)). The text
    context is always padded to ``text_len`` rows. Timesteps are one per
    sample (one group per tower). Returns a dict with ``"conditioning"`` (text
    embedding MLPs: work that depends only on the conditioning), ``"step"``
    (the rest), ``"total"`` and ``"attention"`` (the part of ``"step"`` in the
    attention matmuls), each for the whole batch.
    """
    v, a = cfg.video, cfg.audio
    D = v.dim
    Lv = math.prod(grid)
    La = n_ref + n_audio  # audio sequence as the audio tower sees it
    gldi = cfg.interaction == "gldi"
    n_part = n_audio if gldi else La  # audio tokens taking part in the cross-tower attention

    def mm(m, k, n):
        return 2 * m * k * n

    attention = 0

    def attn(lq, lk):
        nonlocal attention
        attention += 2 * lq * lk * D * 2  # q k^T and p v over all heads
        return 2 * lq * lk * D * 2

    cond = mm(v.text_len, v.text_dim, D) + mm(v.text_len, D, D) + mm(a.text_len, a.text_dim, D) + mm(a.text_len, D, D)
    step = 0
    # patch embeddings
    step += mm(Lv, v.in_dim * math.prod(v.patch_size), D)
    k, H = a.audio_patch_kernel, a.patch_hidden
    step += mm(La, a.in_dim * k, D) + 3 * mm(La, D * k, H)  # Conv1d, then ConvMLP w1, w3 (D->H), w2 (H->D)
    # timestep embeddings (one group per tower; reference tokens add a t=0 group per token when present)
    for tc, groups in ((v, 1), (a, 1 if not n_ref else La)):
        step += mm(groups, tc.freq_dim, D) + mm(groups, D, D) + mm(groups, D, 6 * D)
    for _ in range(cfg.num_layers):
        for tc, L, partner_q, partner_k in ((v, Lv, Lv, n_part), (a, La, n_part, Lv)):
            step += mm(L, D, 3 * D) + attn(L, L) + mm(L, D, D)          # self-attention q, k, v, o
            step += mm(L, D, D) + mm(tc.text_len, D, 2 * D) + attn(L, tc.text_len) + mm(L, D, D)  # text q, k, v, o
            step += mm(partner_k, D, 2 * D) + attn(partner_q, partner_k)  # partner k, v and attention
            step += mm(L, D, tc.ffn_dim) + mm(L, tc.ffn_dim, D)          # FFN
        if gldi and n_ref:  # style alignment: reference queries attend the whole video
            step += mm(n_ref, D, D) + mm(Lv, D, 2 * D) + attn(n_ref, Lv) + mm(n_ref, D, D)
    step += mm(Lv, D, math.prod(v.patch_size) * v.out_dim) + mm(La, D, a.out_dim)  # heads
    return {"conditioning": batch * cond, "step": batch * step, "total": batch * (cond + step),
            "attention": batch * attention}


def real_tokens(cfg: HarmonyConfig, seconds: float = 5.0, size=WAN22_VAE.frame_size) -> dict:
    """Token counts of one clip, by the pipeline's rules (`harmony.jobs.clip_geometry`) with the
    codec geometry the config's meta records (``harmony.codecs.contract.META_KEYS``).

    Frames: ``round(seconds * fps)`` cut to ``stride * (n // stride) + 1`` (the Wan VAE's
    first latent frame covers one frame, every further one ``stride``); latent frames
    ``1 + (frames - 1) // stride``; latent size ``size / spatial stride``; video tokens the
    patch grid; audio tokens ``ceil(seconds * audio latent rate)``. 5 s at 24 fps, 704x704:
    121 frames -> 31 x 44 x 44 latents -> 31 x 22 x 22 = 15,004 tokens; 157 audio tokens.
    """
    m = {k: meta_value(cfg.meta, k) for k in ("video_fps", "video_temporal_stride", "video_spatial_stride",
                                              "audio_latent_rate")}
    for key, value in m.items():
        if value is None:
            raise ValueError(f"config has no meta[{key!r}] (the codec geometry); use a real-scale config such as 5b")
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds!r}")
    s = int(m["video_spatial_stride"])
    pt, ph, pw = cfg.video.patch_size
    h, w = (int(x) for x in size)
    if h % (s * ph) or w % (s * pw) or h <= 0 or w <= 0:
        raise ValueError(f"size {h}x{w}: height and width must be positive multiples of {s * ph} "
                         f"(VAE stride {s} x patch {ph}), e.g. 704x704")
    video = SimpleNamespace(temporal_stride=int(m["video_temporal_stride"]), spatial_stride=s,
                            latent_channels=cfg.video.in_dim)
    audio = SimpleNamespace(latent_rate=float(m["audio_latent_rate"]), latent_channels=cfg.audio.in_dim)
    g = clip_geometry(seconds, float(m["video_fps"]), (h, w), video, audio)
    latent = g.video[1:]
    grid = (latent[0] // pt, latent[1] // ph, latent[2] // pw)
    return {"seconds": seconds, "size": (h, w), "frames": g.n_frames, "latent": latent, "grid": grid,
            "video_tokens": math.prod(grid), "audio_tokens": g.n_audio}


def clip_tokens_5b(seconds: float = 5.0, width: int = WAN22_VAE.frame_size[1],
                   height: int = WAN22_VAE.frame_size[0]):
    """Video grid and audio tokens of the full ``5b`` model for a clip (``real_tokens``)."""
    t = real_tokens(get_config("5b"), seconds, (height, width))
    return t["grid"], t["audio_tokens"]
