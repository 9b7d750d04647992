"""``python -m harmony bench``: speed and memory, measured (never in tests).

Rows (``--rows``, default all):

- ``fp32`` / ``bf16`` / ``fp8``: one model forward (one sampling step's network
  evaluation) of the ``5b`` config cut to 2 layers at full width, with 320
  video tokens (latent 5x16x16, patch 1x2x2), 40 audio tokens and a 512-row
  text context of width 4096: seconds per forward, the model FLOPs of that
  forward (``model_flops``, from the config) and the achieved GFLOP/s. ``fp8``
  stores the block Linear weights in float8_e4m3fn (scaled, as ``load_model``
  does) and computes in bf16 on CUDA, fp32 on the CPU. When the model offers
  ``prepare`` (conditioning-only work done once per sampling run), the timed
  forward takes prepared conditioning and the FLOPs exclude that work.
- ``swap``: the bf16 model under ``BlockSwap`` with 0 resident layers, so every
  block's weights are copied in before its turn and dropped after it.
- ``tiny``: seconds per guided sampling step of the ``tiny`` config (plain CFG,
  SyncCFG batched, SyncCFG as three passes).

``--shape real`` (issue 11): the ``5b`` GLDI model (``--layers N``, default the full 30) at the real
clip's token counts (``real_tokens``: 5 s at 704x704 -> 31 x 22 x 22 = 15,004 video tokens, 157
audio tokens, 512 text rows of width 4096 per tower; ``--seconds`` / ``--size`` change the clip,
``--ref-seconds`` adds reference-voice tokens). Rows (``REAL_ROWS``): seconds per guided sampling step
through the ``SyncCFG`` denoiser for plain CFG (one forward, batch 2) and SyncCFG batched (one
forward, batch 3), with bf16 weights, fp8 weights, and fp8 weights under ``BlockSwap`` with
``--resident N`` layers kept; model FLOPs of the step and GFLOP/s; peak memory reset per row.
Random weights are filled in place (``_fill_random_``), never downloaded. Before the rows, the
**memory plan** (``memory_plan``; ``--plan`` prints only it): weights counted on the meta device,
activations of one step and of the Wan2.2 VAE tiled decode tracked on the meta device
(``LiveBytes`` with attention as a fused kernel, ``FusedAttention``), the umT5-XXL encoder by its
parameter count, and which options fit 24 / 32 / 80 GB.

Peak memory is reset per row: ``torch.cuda.reset_peak_memory_stats`` on a GPU;
on the CPU the process's peak RSS (VmHWM) is reset through
``/proc/self/clear_refs`` where Linux allows it, else the column says n/a.
Also printed: the model FLOPs per step of the full ``5b`` model at a
realistic 5 s clip, the weight bytes of the full ``5b`` model per storage
format and, on CUDA, the achieved fraction of the device's dense peak.
"""
from __future__ import annotations

import dataclasses
import math
import os
import shlex
import sys
import time
import weakref
from types import SimpleNamespace

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .codecs.contract import WAN22_VAE, meta_value
from .config import HarmonyConfig, get_config
from .jobs import clip_geometry
from .model import Conditioning, HarmonyModel

ROWS = ("fp32", "bf16", "fp8", "swap", "tiny")

ISSUE15_SHAPE = {"frames": 5, "hw": 16, "audio": 40, "text_rows": 512}
"""Latent 5x16x16 (320 video tokens with patch 1x2x2), 40 audio tokens, 512 text rows."""

DEVICE_PEAK_TFLOPS = {
    # name substring -> dense (no sparsity) peak TFLOP/s per compute dtype, from the vendors' data sheets
    "H200": {torch.bfloat16: 989.0, torch.float16: 989.0, torch.float32: 67.0},
    "H100": {torch.bfloat16: 989.0, torch.float16: 989.0, torch.float32: 67.0},
    "A100": {torch.bfloat16: 312.0, torch.float16: 312.0, torch.float32: 19.5},
    "RTX 4090": {torch.bfloat16: 165.2, torch.float16: 165.2, torch.float32: 82.6},
}


def reduced(name: str, layers: int) -> HarmonyConfig:
    """Named config with both towers cut to `layers` layers (width unchanged)."""
    cfg = get_config(name)
    return cfg.replace(video=dataclasses.replace(cfg.video, num_layers=layers),
                       audio=dataclasses.replace(cfg.audio, num_layers=layers))


# --- FLOP count -----------------------------------------------------------------

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


# --- memory ---------------------------------------------------------------------

def _reset_peak(device) -> bool:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # Linux: reset the peak resident set size (VmHWM)
        return True
    except OSError:
        return False


def _peak_gib(device, resettable: bool):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    if not resettable:
        return None
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 2**30
    except OSError:
        pass
    return None


# --- the model at issue-15 shapes ---------------------------------------------------

def _fill_random_(model: HarmonyModel, seed: int = 0):
    """Random weights of Wan-like scale, fast: N(0, 1/fan_in) values tiled from one 4M-value pool, norms 1.

    (Drawing 1.5 B fresh normals takes over a minute on 2 cores; the timing does not care.)
    """
    g = torch.Generator().manual_seed(seed)
    pool = torch.randn(1 << 22, generator=g)
    pools = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            key = (p.device, p.dtype)
            if key not in pools:  # one copy of the pool per device and dtype: no cross-device copy per chunk
                pools[key] = pool.to(p.device, p.dtype)
            src = pools[key]
            flat = p.view(-1)
            if p.dim() == 1 and "norm" in name:
                flat.fill_(1.0)
                continue
            scale = 1.0 / math.sqrt(p[0].numel()) if p.dim() >= 2 else 0.02
            for i in range(0, flat.numel(), pool.numel()):
                n = min(pool.numel(), flat.numel() - i)
                flat[i:i + n].copy_(src[:n]).mul_(scale)
    return model


def _issue15_inputs(cfg, device, dtype, batch=1):
    s = ISSUE15_SHAPE
    g = torch.Generator().manual_seed(1)
    zv = torch.randn(batch, cfg.video.in_dim, s["frames"], s["hw"], s["hw"], generator=g)
    za = torch.randn(batch, s["audio"], cfg.audio.in_dim, generator=g)
    cond = Conditioning(torch.randn(batch, s["text_rows"], cfg.video.text_dim, generator=g),
                        torch.randn(batch, s["text_rows"], cfg.audio.text_dim, generator=g))
    t = torch.full((batch,), 700.0)
    return zv.to(device, dtype), za.to(device, dtype), t.to(device), t.to(device), cond.to(device, dtype)


def _to_fp8_(model: HarmonyModel):
    """Block Linear weights -> scaled float8_e4m3fn, as ``load_model(dtype="fp8_e4m3fn")`` stores them."""
    from .checkpoint import quantizable_weights, quantize_fp8

    for key in quantizable_weights(model):
        module = model.get_submodule(key.rsplit(".", 1)[0])
        q, scale = quantize_fp8(module.weight.data, torch.float8_e4m3fn, scaled=True)
        module.weight.data = q
        module.register_buffer("scale_weight", scale)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_forward(model, inputs, repeats, device):
    """Median seconds of one forward (after one warm-up call); prepared conditioning when the model offers it."""
    zv, za, tv, ta, cond = inputs
    prepared = hasattr(model, "prepare")
    times, cpu = [], []
    with torch.no_grad():
        c = model.prepare(cond, dtype=zv.dtype, device=zv.device) if prepared else cond
        for i in range(repeats + 1):
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            model(zv, za, tv, ta, c)
            _sync(device)
            if i:
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
    return sorted(times)[len(times) // 2], sorted(cpu)[len(cpu) // 2], prepared


def _peak_fraction(device, dtype, gflops):
    if device.type != "cuda":
        return ""
    name = torch.cuda.get_device_name(device)
    for key, peaks in DEVICE_PEAK_TFLOPS.items():
        if key in name and dtype in peaks:
            return f"{100 * gflops / (1000 * peaks[dtype]):.1f} % of {peaks[dtype]:g}"
    return "unknown device"


def precision_rows(device, wanted, repeats, out):
    cfg = reduced("5b", 2)
    s = ISSUE15_SHAPE
    pt, ph, pw = cfg.video.patch_size
    grid = (s["frames"] // pt, s["hw"] // ph, s["hw"] // pw)
    flops = model_flops(cfg, grid, s["audio"])
    t0 = time.perf_counter()
    with torch.device("meta"):
        model = HarmonyModel(cfg)
    model = _fill_random_(model.to_empty(device=device)).eval()
    print(f"  built 5b-width 2-layer model in {time.perf_counter() - t0:.1f} s")
    cuda = device.type == "cuda"
    order = [r for r in ("fp32", "bf16", "swap", "fp8") if r in wanted]
    for row in order:
        if row == "fp32":
            model.float()
            compute = torch.float32
        elif row in ("bf16", "swap"):
            model.to(torch.bfloat16)
            compute = torch.bfloat16
        else:  # fp8
            model.to(torch.bfloat16)
            _to_fp8_(model)
            compute = torch.bfloat16 if cuda else torch.float32
        inputs = _issue15_inputs(cfg, device, compute)
        swap = None
        if row == "swap":
            from .offload import BlockSwap

            model.to("cpu")
            swap = BlockSwap(model, resident_blocks=0, device=device)
        resettable = _reset_peak(device)
        sec, cpu_sec, prepared = time_forward(model, inputs, repeats, device)
        peak = _peak_gib(device, resettable)
        f = flops["step"] if prepared else flops["total"]
        gflops = f / sec / 1e9
        label = {"fp32": "fp32", "bf16": "bf16", "fp8": "fp8 e4m3fn storage",
                 "swap": "bf16, block swap 0 resident"}[row]
        out.append((device.type, label, str(compute).replace("torch.", ""), "prepared" if prepared else "raw",
                    sec, cpu_sec, f / 1e9, gflops, peak, _peak_fraction(device, compute, gflops)))
        if swap is not None:
            moved = sum(len(layer.slots) for layer in swap.layers.values())
            nbytes = sum(s.master.numel() * s.master.element_size() for layer in swap.layers.values() for s in layer.slots)
            copies = getattr(swap, "copies", None)
            print(f"  block swap: {len(swap.layers)} layers ({moved} tensors, {nbytes / 2**30:.2f} GiB) streamed per forward"
                  + (f"; {copies} tensor copies over {repeats + 1} forwards" if copies is not None else
                     ("; on the CPU .to('cpu') returns the same tensor: nothing is copied" if not cuda else "")))
            swap.remove()
            model.to(device)
    del model


def tiny_rows(device, repeats, out):
    """Seconds per guided sampling step of the tiny config (uses the sampler's denoiser)."""
    from .guidance import Guidance, SyncCFG
    from .jobs import Job

    cfg = get_config("tiny")
    torch.manual_seed(0)
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    model = HarmonyModel(cfg).to(device, dtype).eval()
    g = torch.Generator().manual_seed(0)
    zv = torch.randn(1, cfg.video.in_dim, 48, 4, 4, generator=g).to(device, dtype)  # the earlier bench's shape
    za = torch.randn(1, 94, cfg.audio.in_dim, generator=g).to(device, dtype)
    cond = Conditioning(torch.randn(1, 48, cfg.video.text_dim, generator=g),
                        torch.randn(1, 48, cfg.audio.text_dim, generator=g)).to(device, dtype)
    uncond = Conditioning(torch.zeros_like(cond.video_context), torch.zeros_like(cond.audio_context))
    silent = torch.zeros(cfg.audio.in_dim, device=device, dtype=dtype)
    for mode, batched, key in (("cfg", True, "plain CFG"), ("synccfg", True, "SyncCFG batched"),
                               ("synccfg", False, "SyncCFG 3 passes")):
        den = SyncCFG(model, cond, Guidance(mode, batched=batched), Job(), uncond, silent)  # default scales
        sigma_v = torch.full((1, zv.shape[2]), 0.7, dtype=torch.float64, device=device)
        sigma_a = torch.full((1,), 0.7, dtype=torch.float64, device=device)
        resettable = _reset_peak(device)
        times, cpu = [], []
        with torch.no_grad():
            for i in range(repeats + 1):
                _sync(device)
                t0, c0 = time.perf_counter(), time.process_time()
                den(zv, za, sigma_v, sigma_a)
                _sync(device)
                if i:
                    times.append(time.perf_counter() - t0)
                    cpu.append(time.process_time() - c0)
        sec, cpu_sec = sorted(times)[len(times) // 2], sorted(cpu)[len(cpu) // 2]
        out.append((device.type, f"tiny, step: {key}", str(dtype).replace("torch.", ""), "prepared", sec, cpu_sec,
                    None, None, _peak_gib(device, resettable), ""))


def weight_bytes_5b():
    """Bytes of the full 5b model's weights per storage format (meta device, no allocation)."""
    t = model_weight_table(get_config("5b"))
    return {"params": t["params"], "fp32": 4 * t["params"], "bf16": t["bf16"], "fp8": t["fp8"]}


# --- memory plan: counted on the meta device (shapes only, nothing allocated) -----------------

GiB = 2 ** 30

PLAN_BUDGETS_GIB = (24, 32, 80)
PLAN_RESERVE_GIB = 1.0
"""Kept free on every card in the plan: the CUDA context, cuBLAS / cuDNN workspaces and allocator
rounding (none of which ``torch.cuda.max_memory_allocated`` counts). An assumption, not measured."""

UMT5_XXL = {"vocab": 256384, "d_model": 4096, "d_kv": 64, "heads": 64, "layers": 24, "d_ff": 10240, "buckets": 32}
"""umT5-XXL encoder geometry (the shapes of ``models_t5_umt5-xxl-enc-bf16.pth`` / ``umt5_xxl_*.safetensors``)."""


def umt5_encoder_params(vocab, d_model, d_kv, heads, layers, d_ff, buckets) -> int:
    """Parameters of a umT5 encoder (``transformers.UMT5EncoderModel``): the shared embedding, per layer
    a LayerNorm weight, q/k/v/o (``d_model x heads*d_kv`` each), its own relative-position bias
    (``buckets x heads``), a second LayerNorm and the gated FFN (wi_0, wi_1, wo), and the final norm."""
    inner = heads * d_kv
    per_layer = d_model + 4 * d_model * inner + buckets * heads + d_model + 3 * d_model * d_ff
    return vocab * d_model + layers * per_layer + d_model


def _layer_index(name: str):
    """``i`` for a tensor inside transformer layer i (``...blocks.i...``), else None."""
    parts = name.split(".")
    for j, p in enumerate(parts[:-1]):
        if p == "blocks" and parts[j + 1].isdigit():
            return int(parts[j + 1])
    return None


def weight_table(entries, fp8_names=()) -> dict:
    """Bytes of a model's weights per storage format, from ``(name, shape, bytes per value)`` entries,
    the bytes being those of the bf16-stored model (2 B; 4 B for the tensors the model keeps in fp32
    whatever the storage dtype: Wan's time embedding, time projection and modulation).

    bf16: those bytes. fp8 (``load_model(dtype="fp8_e4m3fn")``): 1 B per value of the names in
    `fp8_names` (the block Linear weights) plus one 4 B float32 scale each; the rest as in bf16.
    Returns totals and the same split into non-block tensors (``fixed``) and per-layer tensors
    (``layers[i]``: video block i + audio block i), which is what block swap moves.
    """
    fp8_names = set(fp8_names)
    out = {"params": 0, "bf16": 0, "fp8": 0, "fixed": {"bf16": 0, "fp8": 0}, "layers": {}}
    for name, shape, width in entries:
        n = math.prod(shape)
        b16 = width * n
        b8 = n + 4 if name in fp8_names else b16
        out["params"] += n
        out["bf16"] += b16
        out["fp8"] += b8
        i = _layer_index(name)
        slot = out["fixed"] if i is None else out["layers"].setdefault(i, {"bf16": 0, "fp8": 0})
        slot["bf16"] += b16
        slot["fp8"] += b8
    return out


def model_weight_table(cfg: HarmonyConfig) -> dict:
    """``weight_table`` of the model built on the meta device (no weights allocated) and converted to
    bf16 there by the model's own rule (what stays fp32 is read off the result)."""
    from .checkpoint import quantizable_weights

    with torch.device("meta"):
        model = HarmonyModel(cfg).to(torch.bfloat16)
    entries = [(n, tuple(t.shape), t.element_size()) for n, t in model.state_dict().items()]
    return weight_table(entries, quantizable_weights(model))


def device_weight_bytes(table: dict, fmt: str, resident=None, prefetch: bool = True) -> int:
    """Weight bytes on the device: everything (``resident=None``), or under ``BlockSwap`` with
    `resident` layers kept: non-block tensors + the resident layers + the streamed layers present
    at once (the running one and, with prefetch, the next one)."""
    fixed = table["fixed"][fmt]
    layers = [table["layers"][i][fmt] for i in sorted(table["layers"])]
    if resident is None:
        return fixed + sum(layers)
    if not 0 <= resident <= len(layers):
        raise ValueError(f"resident must be in 0..{len(layers)}, got {resident}")
    streamed = layers[resident:]
    at_once = sorted(streamed, reverse=True)[: (2 if prefetch else 1)]
    return fixed + sum(layers[:resident]) + sum(at_once)


class LiveBytes(TorchDispatchMode):
    """Peak bytes of the tensor storages created inside the mode that are alive at the same time
    (what ``torch.cuda.max_memory_allocated`` counts, less workspaces and allocator rounding).
    Works on the meta device, where nothing is computed."""

    def __init__(self):
        super().__init__()
        self.live: dict = {}
        self.now = self.peak = 0

    def _free(self, key):
        entry = self.live.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.now -= entry[0]
            del self.live[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                st = t.untyped_storage()
                key = st._cdata
                if key not in self.live:
                    self.live[key] = [st.nbytes(), 0]
                    self.now += st.nbytes()
                    self.peak = max(self.peak, self.now)
                self.live[key][1] += 1
                weakref.finalize(t, self._free, key)
        return out


class FusedAttention(TorchFunctionMode):
    """``scaled_dot_product_attention`` as the fused GPU kernels run it (flash / memory-efficient):
    only the output [B, H, Lq, Dv] and the row log-sum-exp [B, H, Lq] fp32 are allocated, never the
    Lq x Lk score matrix (the meta device would otherwise take torch's math fallback)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.nn.functional.scaled_dot_product_attention:
            q, v = args[0], args[2]
            out = torch.empty(*q.shape[:-1], v.shape[-1], dtype=q.dtype, device=q.device)
            lse = torch.empty(*q.shape[:-1], dtype=torch.float32, device=q.device)
            del lse
            return out
        return func(*args, **(kwargs or {}))


def step_activation_bytes(cfg: HarmonyConfig, tokens: dict, mode: str, fmt: str = "bf16", n_ref: int = 0) -> int:
    """Peak live bytes of one guided sampling step (``SyncCFG`` denoiser, batched) of the model on the
    meta device, compute bf16, weights stored as `fmt`: everything the step creates (latents in the
    network dtype, the batched inputs, every layer's activations, fp8 weights cast on use, the
    outputs and the guidance arithmetic in fp32), not the weights themselves."""
    from .guidance import Guidance, SyncCFG
    from .jobs import Job

    dt = torch.bfloat16
    with torch.device("meta"):
        model = HarmonyModel(cfg).to(dt).eval()
    if fmt == "fp8":
        _to_fp8_(model)
    f, h, w = tokens["latent"]
    meta = torch.device("meta")
    zv = torch.empty(1, cfg.video.in_dim, f, h, w, device=meta)
    za = torch.empty(1, tokens["audio_tokens"], cfg.audio.in_dim, device=meta)
    ctx = torch.empty(1, cfg.video.text_len, cfg.video.text_dim, device=meta, dtype=dt)
    ref = torch.empty(1, n_ref, cfg.audio.in_dim, device=meta, dtype=dt) if n_ref else None
    cond = Conditioning(ctx, ctx, ref)
    uncond = Conditioning(ctx, ctx, ref)
    den = SyncCFG(model, cond, Guidance(mode, batched=True), Job(), uncond,
                  torch.empty(cfg.audio.in_dim, device=meta), dtype=dt)
    sv = torch.full((1, f), 0.7, dtype=torch.float64, device=meta)
    sa = torch.full((1,), 0.7, dtype=torch.float64, device=meta)
    den._batched_cond(den.passes(zv, za, sv, sa), dt, meta)  # conditioning prepared once per run, not per step
    with torch.no_grad(), FusedAttention(), LiveBytes() as track:
        out = den(zv, za, sv, sa)
        del out
    return track.peak


def vae_decode_bytes(tokens: dict, dtype=torch.bfloat16) -> tuple:
    """(decoder weight bytes, peak live bytes) of the Wan2.2 VAE decode of the clip, tiled as
    ``WanVAE.decode`` does by default, on the meta device in `dtype` (the pipeline's compute dtype)."""
    from .codecs.wan_vae import WanVAE

    with torch.device("meta"):
        vae = WanVAE().to(dtype).eval()
    dec = sum(p.numel() * p.element_size() for m in (vae.decoder, vae.conv2) for p in m.parameters())
    f, h, w = tokens["latent"]
    z = torch.empty(1, vae.z_dim, f, h, w, device="meta", dtype=dtype)
    with torch.no_grad(), FusedAttention(), LiveBytes() as track:
        out = vae.decode(z)
        del out
    return dec, track.peak, (vae.tile, vae.tile_overlap)


def plan_rows(weights: dict, act: dict, text_bytes: int, vae_bytes: int, options) -> list:
    """Peak device bytes per option: ``max`` of the three phases that do not overlap in time.

    `weights[option]`: DiT weight bytes on the device for that option; `act[mode]` (and
    ``act[(mode, fmt)]`` when given): step activations; `text_bytes`: umT5 weights + activations
    (encoded before sampling, freed after); `vae_bytes`: Wan decoder weights + tiled decode peak
    (after sampling). The DiT weights on the device stay there through all three phases.
    Returns ``[(option, mode, dit_weights, text_phase, step_phase, decode_phase, peak)]``.
    """
    rows = []
    for option, fmt in options:
        w = weights[option]
        for mode in ("cfg", "synccfg"):
            a = act.get((mode, fmt), act.get(mode))
            phases = (w + text_bytes, w + a, w + vae_bytes)
            rows.append((option, mode, w) + phases + (max(phases),))
    return rows


def fits(peak_bytes: int, budget_gib: float, reserve_gib: float = PLAN_RESERVE_GIB) -> bool:
    """The plan's rule: the peak fits a card of `budget_gib` when it is at most budget - reserve."""
    return peak_bytes <= (budget_gib - reserve_gib) * GiB


def memory_plan(cfg: HarmonyConfig, tokens: dict, residents=(0, 4, 10), n_ref: int = 0, print_fn=print) -> list:
    """Print (and return the rows of) the memory plan for `cfg` at the clip `tokens`."""
    g = lambda b: f"{b / GiB:.2f}"  # noqa: E731
    table = model_weight_table(cfg)
    L = cfg.num_layers
    per_layer = {fmt: table["layers"][0][fmt] for fmt in ("bf16", "fp8")}
    print_fn(f"memory plan: {cfg.video.dim}-wide {L}-layer GLDI model ({cfg.interaction}), "
             f"{table['params'] / 1e9:.3f} B params, counted on the meta device (nothing allocated)")
    print_fn(f"clip: {tokens['seconds']:g} s {tokens['size'][0]}x{tokens['size'][1]}: {tokens['frames']} frames -> "
             f"latent {'x'.join(map(str, tokens['latent']))} -> {'x'.join(map(str, tokens['grid']))} = "
             f"{tokens['video_tokens']:,} video tokens; {tokens['audio_tokens']} audio tokens"
             + (f" + {n_ref} reference-voice tokens" if n_ref else " (no reference voice)")
             + f"; text {cfg.video.text_len} rows x {cfg.video.text_dim} per tower")
    print_fn("1 GiB = 2^30 B. Weights (bytes per value: bf16 2 B, but 4 B for the time embedding / projection and "
             "modulation tensors the model keeps in fp32; fp8 e4m3fn: 1 B for the block Linear weights + a 4 B scale "
             "each, the rest as in bf16):")
    fx, ly = table["fixed"], per_layer
    for fmt in ("bf16", "fp8"):
        print_fn(f"  {fmt:4}: non-block {g(fx[fmt])} GiB + {L} layers x {g(ly[fmt])} GiB = {g(table[fmt])} GiB")
    weights, options = {}, []
    for fmt in ("bf16", "fp8"):
        name = f"{fmt}, resident"
        weights[name] = device_weight_bytes(table, fmt)
        options.append((name, fmt))
    for r in residents:
        if r >= L:
            continue
        name = f"fp8 + block swap, {r} resident"
        weights[name] = device_weight_bytes(table, "fp8", r)
        options.append((name, "fp8"))
        print_fn(f"  fp8 + block swap with {r} resident: non-block {g(fx['fp8'])} + {r} x {g(ly['fp8'])} resident "
                 f"+ 2 x {g(ly['fp8'])} streamed (running + prefetched) = {g(weights[name])} GiB on the device")
    act = {}
    for mode, batch in (("cfg", 2), ("synccfg", 3)):
        for fmt in ("bf16", "fp8"):
            act[(mode, fmt)] = step_activation_bytes(cfg, tokens, mode, fmt, n_ref)
        v, a = tokens["video_tokens"] * batch, (tokens["audio_tokens"] + n_ref) * batch
        print_fn(f"step activations, {'plain CFG' if mode == 'cfg' else 'SyncCFG batched'} (batch {batch}: "
                 f"{v:,} video + {a:,} audio token rows): bf16 weights {g(act[(mode, 'bf16')])} GiB, fp8 weights "
                 f"{g(act[(mode, 'fp8')])} GiB (the bf16 copy of an fp8 weight in use is counted; equal when the peak is "
                 f"elsewhere); "
                 f"e.g. one {cfg.video.dim}-wide bf16 residual stream = {v:,} x {cfg.video.dim} x 2 B = "
                 f"{g(v * cfg.video.dim * 2)} GiB, one FFN hidden = {v:,} x {cfg.video.ffn_dim} x 2 B = "
                 f"{g(v * cfg.video.ffn_dim * 2)} GiB")
    u = UMT5_XXL
    n_t5 = umt5_encoder_params(**u)
    t5_w = 2 * n_t5
    t5_act = 2 * (u["heads"] * cfg.video.text_len ** 2 * 4) + 4 * cfg.video.text_len * u["d_ff"] * 2
    text_bytes = t5_w + t5_act
    print_fn(f"umT5-XXL encoder (loaded for encoding, freed before sampling): {n_t5 / 1e9:.3f} B params x 2 B (bf16) = "
             f"{g(t5_w)} GiB + activations, estimated (not tracked) as 2 x {u['heads']} heads x {cfg.video.text_len}^2 x 4 B (scores) + "
             f"4 x {cfg.video.text_len} x {u['d_ff']} x 2 B (FFN) = {g(t5_act)} GiB -> {g(text_bytes)} GiB")
    dec_w, dec_act, (tile, overlap) = vae_decode_bytes(tokens)
    vae_bytes = dec_w + dec_act
    print_fn(f"Wan2.2 VAE decode (bf16, tiles of {tile} latents overlapping {overlap}, frames assembled on the "
             f"device): decoder weights {g(dec_w)} GiB + peak live tensors {g(dec_act)} GiB = {g(vae_bytes)} GiB")
    print_fn(f"peak = DiT weights on the device + max(text encoding, one sampling step, VAE decode); "
             f"fits a card when peak <= card - {PLAN_RESERVE_GIB:g} GiB reserve (CUDA context, workspaces: assumed)")
    rows = plan_rows(weights, act, text_bytes, vae_bytes, options)
    head = (f"{'DiT weights':31} | {'guidance':15} | {'weights':>7} | {'+text':>6} | {'+step':>6} | {'+decode':>7} "
            f"| {'peak':>6} | " + " | ".join(f"{b:>2} GB" for b in PLAN_BUDGETS_GIB))
    print_fn(head)
    print_fn("-" * len(head))
    for option, mode, w, tp, sp, dp, peak in rows:
        fit = " | ".join(f"{'yes' if fits(peak, b) else 'no':>5}" for b in PLAN_BUDGETS_GIB)
        print_fn(f"{option:31} | {'plain CFG (B=2)' if mode == 'cfg' else 'SyncCFG (B=3)':15} | {g(w):>7} | "
                 f"{g(tp):>6} | {g(sp):>6} | {g(dp):>7} | {g(peak):>6} | {fit}")
    print_fn("(GiB; +text / +step / +decode: DiT weights plus that phase. The pipeline encodes the prompt on the "
             "device while the DiT weights are there (HarmonyPipeline.encode_text -> UMT5Conditioner on its device), "
             "so +text is often the peak; encoding before the DiT moves in, or on the CPU, would leave max(+step, "
             "+decode). Not counted: the MMAudio VAE + BigVGAN "
             "(decoded after the video, far smaller), the Wan encoder for SyncCFG's blank frame (one frame), "
             "cuDNN workspaces, fragmentation)")
    return rows


# --- rows at the real token counts -------------------------------------------------------------

REAL_ROWS = ("bf16-cfg", "bf16-sync", "fp8-cfg", "fp8-sync", "swap-cfg", "swap-sync")
"""Real-shape rows: weights bf16 or fp8 (block Linear weights e4m3fn, scaled), resident or fp8 under
``BlockSwap`` with ``--resident`` layers kept; guidance plain CFG (one forward, batch 2) or SyncCFG
batched (one forward, batch 3)."""


def real_rows(device, cfg: HarmonyConfig, tokens: dict, wanted, repeats: int, warmup: int, resident: int,
              n_ref: int, out: list, log=print, sp=None):
    from .guidance import Guidance, SyncCFG
    from .jobs import Job

    dt = torch.bfloat16
    t0 = time.perf_counter()
    with torch.device("meta"):
        model = HarmonyModel(cfg).to(dt)
    model = _fill_random_(model.to_empty(device=device)).eval()
    if sp is not None:  # under torchrun: the video tokens split across the processes (harmony.parallel)
        from . import parallel

        parallel.apply(model, sp)
    log(f"  built the {cfg.num_layers}-layer model (bf16, random weights filled in place) in "
        f"{time.perf_counter() - t0:.1f} s")
    g = torch.Generator().manual_seed(1)
    f, h, w = tokens["latent"]
    zv = torch.randn(1, cfg.video.in_dim, f, h, w, generator=g).to(device)  # fp32 ODE state, as the sampler keeps it
    za = torch.randn(1, tokens["audio_tokens"], cfg.audio.in_dim, generator=g).to(device)
    ctx = torch.randn(1, cfg.video.text_len, cfg.video.text_dim, generator=g).to(device, dt)
    ref = torch.randn(1, n_ref, cfg.audio.in_dim, generator=g).to(device, dt) if n_ref else None
    cond = Conditioning(ctx, ctx.clone(), ref)
    uncond = Conditioning(torch.zeros_like(ctx), torch.zeros_like(ctx), ref)
    silent = torch.randn(cfg.audio.in_dim, generator=g).to(device)
    sv = torch.full((1, f), 0.7, dtype=torch.float64, device=device)
    sa = torch.full((1,), 0.7, dtype=torch.float64, device=device)
    grid, n_audio = tokens["grid"], tokens["audio_tokens"]
    order = [r for r in REAL_ROWS if r in wanted]  # bf16 rows before fp8 (quantising is one-way)
    quantised, swap = False, None
    for row in order:
        weights, mode = row.split("-")
        if weights in ("fp8", "swap") and not quantised:
            _to_fp8_(model)
            quantised = True
        if weights == "swap" and swap is None:
            from .offload import BlockSwap

            model.to("cpu")
            swap = BlockSwap(model, resident_blocks=min(resident, cfg.num_layers), device=device)
        mode = "synccfg" if mode == "sync" else "cfg"
        den = SyncCFG(model, cond, Guidance(mode, batched=True), Job(), uncond, silent, dtype=dt)
        passes = den.passes(zv, za, sv, sa)
        den._batched_cond(passes, dt, device)  # conditioning-only work: once per sampling run, not timed
        batch = len(passes)
        _sync(device)
        resettable = _reset_peak(device)
        times, cpu = [], []
        for i in range(warmup + repeats):
            _sync(device)
            t1, c1 = time.perf_counter(), time.process_time()
            den(zv, za, sv, sa)
            _sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - t1)
                cpu.append(time.process_time() - c1)
        peak = _peak_gib(device, resettable)
        sec, cpu_sec = sorted(times)[len(times) // 2], sorted(cpu)[len(cpu) // 2]
        fl = model_flops(cfg, grid, n_audio, n_ref, batch=batch)["step"]
        label = {"bf16": "bf16", "fp8": "fp8 e4m3fn storage", "swap": f"fp8 + block swap {swap.resident_blocks if swap else resident} res."}[weights]
        label += ", " + ("plain CFG" if mode == "cfg" else "SyncCFG")
        ranks = 1 if sp is None else sp.world
        if ranks > 1:  # GFLOP/s of all the ranks together; the fraction is of one device's peak, per rank
            label += f", seq. parallel x{ranks}"
        out.append((device.type, label, batch, sec, cpu_sec, fl / 1e9, fl / sec / 1e9, peak,
                    _peak_fraction(device, dt, fl / sec / 1e9 / ranks)))
        log(f"  {label}: batch {batch}, {sec:.3f} s/step")
    if swap is not None:
        log(f"  block swap: {len(swap.layers)} of {cfg.num_layers} layers streamed, {swap.copies} tensor copies, "
            f"{swap.bytes_copied / GiB:.2f} GiB copied over all swap rows")
        swap.remove()
    del model


def print_real_rows(rows, print_fn=print):
    head = (f"{'device':6} | {'row':34} | {'batch':>5} | {'s/step':>9} | {'CPU s':>8} | {'GFLOP':>9} | "
            f"{'GFLOP/s':>8} | {'peak GiB':>8} | of device peak")
    print_fn(head)
    print_fn("-" * len(head))
    for dev, label, batch, sec, cpu_sec, gf, gfs, peak, frac in rows:
        print_fn(f"{dev:6} | {label:34} | {batch:5d} | {sec:9.3f} | {cpu_sec:8.1f} | {gf:9.1f} | {gfs:8.1f} | "
                 f"{'n/a' if peak is None else f'{peak:8.2f}':>8} | {frac}")
    by = {label: sec for _, label, _, sec, *_ in rows}
    cpu_by = {label: (cpu_sec, gf) for _, label, _, _, cpu_sec, gf, *_ in rows}
    for w in ("bf16", "fp8 e4m3fn storage"):
        c, s = by.get(f"{w}, plain CFG"), by.get(f"{w}, SyncCFG")
        if c and s:
            (cc, cf), (sc, sf) = cpu_by[f"{w}, plain CFG"], cpu_by[f"{w}, SyncCFG"]
            print_fn(f"ratio SyncCFG / plain CFG step ({w}): {s / c:.2f} wall (target <= 1.5); process CPU time "
                     f"{sc / cc:.2f}, model FLOPs {sf / cf:.2f}")
    for mode in ("plain CFG", "SyncCFG"):
        b, f8 = by.get(f"bf16, {mode}"), by.get(f"fp8 e4m3fn storage, {mode}")
        if b and f8:
            print_fn(f"speed-up fp8 / bf16 ({mode}): {b / f8:.2f}x (target >= 1.3x where the GPU has fp8 matmuls; "
                     "harmony casts fp8 weights to bf16 on use, no fp8 matmul)")
        sw = [sec for _, label, _, sec, *_ in rows if label.startswith("fp8 + block swap") and label.endswith(mode)]
        if sw and f8:
            print_fn(f"block swap slow-down over resident fp8 ({mode}): {100 * (sw[0] / f8 - 1):+.0f} % (target <= +25 %)")


def _parse_size(text):
    try:
        h, w = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ValueError(f"--size: {text!r} is not HxW (e.g. 704x704)") from None
    return h, w


def main(argv=None):
    from .cli import Parser, program

    ap = Parser(prog=f"{program()} bench", description="Speed and memory, measured: seconds per sampling step\n"
                "and peak memory, per precision and guidance mode; --shape real: at Ovi's real token counts,\n"
                "with the memory plan (what fits in 24 / 32 / 80 GB).")
    ap.add_argument("--shape", default="issue15", choices=("issue15", "real"),
                    help="issue15: the small forward rows (320 video tokens) + tiny rows; real: the 5b GLDI model at "
                         "the real clip's token counts (rows " + ", ".join(REAL_ROWS) + ") and the memory plan")
    ap.add_argument("--repeats", type=int, default=2, help="timed calls per row")
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls before each row's timed ones (real shape)")
    ap.add_argument("--rows", default=None,
                    help=f"comma-separated rows to run; issue15: {', '.join(ROWS)}; real: {', '.join(REAL_ROWS)} "
                         "(default: all of the shape's rows)")
    ap.add_argument("--quick", action="store_true", help="one timed call per row, rows fp32,bf16,tiny (issue15)")
    ap.add_argument("--devices", default="all", choices=("all", "cpu", "cuda"),
                    help="where to measure (all = CPU, plus the GPU when present; real shape: the GPU when present, "
                         "else the CPU)")
    ap.add_argument("--layers", type=int, default=None,
                    help="real shape: layers per tower of the measured model (default 30, the full 5b; the memory "
                         "plan is always for the full model)")
    ap.add_argument("--seconds", type=float, default=5.0, help="real shape: clip length of the measured rows")
    ap.add_argument("--size", default="{}x{}".format(*WAN22_VAE.frame_size),
                    help="real shape: frame size HxW (multiples of 32)")
    ap.add_argument("--resident", type=int, default=None,
                    help="real shape: layers kept on the device under block swap (default 4, at most --layers)")
    ap.add_argument("--ref-seconds", type=float, default=0.0,
                    help="real shape: reference-voice length (its tokens join the audio sequence; 0 = none, T2AV)")
    ap.add_argument("--plan", action="store_true", help="real shape: print the memory plan only (no compute)")
    ap.add_argument("--no-plan", action="store_true", help="real shape: skip the memory plan")
    a = ap.parse_args(argv)
    if a.repeats < 1:
        ap.error("--repeats must be at least 1")
    if a.warmup < 0:
        ap.error("--warmup must be 0 or more")
    if a.shape == "real" or a.plan:
        return main_real(ap, a, argv)
    wanted = [r.strip() for r in (a.rows or ",".join(ROWS)).split(",") if r.strip()]
    bad = [r for r in wanted if r not in ROWS]
    if bad:
        ap.error(f"unknown --rows {bad}; choose from {', '.join(ROWS)} (or use --shape real)")
    if a.quick:
        wanted, a.repeats = [r for r in ("fp32", "bf16", "tiny") if r in wanted], 1
    torch.set_grad_enabled(False)
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}" if hasattr(os, "getloadavg") else "")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"))
    s = ISSUE15_SHAPE
    print(f"forward rows: 5b config cut to 2 layers (dim 3072, ffn 14336), latent {s['frames']}x{s['hw']}x{s['hw']} "
          f"-> 320 video tokens, {s['audio']} audio tokens, text {s['text_rows']}x4096, batch 1, "
          f"median of {a.repeats} after 1 warm-up")
    rows = []
    devices = [torch.device("cpu")] if a.devices in ("all", "cpu") else []
    if a.devices in ("all", "cuda") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    for dev in devices:
        if any(r in wanted for r in ("fp32", "bf16", "fp8", "swap")):
            precision_rows(dev, wanted, a.repeats, rows)
        if "tiny" in wanted:
            tiny_rows(dev, a.repeats, rows)
    print()
    head = (f"{'device':6} | {'row':28} | {'compute':8} | {'cond':8} | {'s/forward':>9} | {'CPU s':>8} | "
            f"{'GFLOP':>7} | {'GFLOP/s':>8} | {'peak GiB':>8} | of device peak")
    print(head)
    print("-" * len(head))
    for dev, label, compute, cond, sec, cpu_sec, gf, gfs, peak, frac in rows:
        print(f"{dev:6} | {label:28} | {compute:8} | {cond:8} | {sec:9.4f} | {cpu_sec:8.2f} | "
              f"{'' if gf is None else f'{gf:7.1f}':>7} | {'' if gfs is None else f'{gfs:8.1f}':>8} | "
              f"{'n/a' if peak is None else f'{peak:8.2f}':>8} | {frac}")
    print("(s/forward and s/step: wall-clock median; CPU s: process CPU time of the same call, all threads, which a "
          "busy shared machine disturbs less; GFLOP/s from wall time. peak GiB: torch.cuda.max_memory_allocated on "
          "a GPU; on the CPU the whole process's peak RSS since the row began)")
    cfg5 = get_config("5b")
    grid, n_audio = clip_tokens_5b()
    fl = model_flops(cfg5, grid, n_audio)
    print()
    print(f"full 5b model, 5 s clip at 704x704 (grid {grid} = {math.prod(grid)} video tokens, {n_audio} audio tokens), "
          f"batch 1: {fl['total'] / 1e12:.1f} TFLOP per forward, of which {fl['conditioning'] / 1e12:.3f} TFLOP "
          f"conditioning-only (text embeddings)")
    wb = weight_bytes_5b()
    print(f"5b model weights ({wb['params'] / 1e9:.2f} B params):  fp32 {wb['fp32'] / 2**30:.1f} GiB | "
          f"bf16 {wb['bf16'] / 2**30:.1f} GiB | fp8 (block linears e4m3fn, rest bf16) {wb['fp8'] / 2**30:.1f} GiB")



def main_real(ap, a, argv):
    """``--shape real``: the header with the token arithmetic, the memory plan, the rows."""
    wanted = [r.strip() for r in (a.rows or ",".join(REAL_ROWS)).split(",") if r.strip()]
    bad = [r for r in wanted if r not in REAL_ROWS]
    if bad:
        ap.error(f"unknown --rows {bad} for --shape real; choose from {', '.join(REAL_ROWS)}")
    try:
        size = _parse_size(a.size)
        full = get_config("5b")
        tokens = real_tokens(full, a.seconds, size)
        plan_tokens = real_tokens(full, 5.0, size)
    except ValueError as e:
        ap.error(str(e))
    if a.ref_seconds < 0:
        ap.error("--ref-seconds must be 0 or more")
    n_ref = math.ceil(a.ref_seconds * meta_value(full.meta, "audio_latent_rate") - 1e-6) if a.ref_seconds else 0
    cuda = torch.cuda.is_available() and a.devices != "cpu"
    if a.devices == "cuda" and not torch.cuda.is_available():
        ap.error("--devices cuda: no GPU here")
    from . import parallel

    sp = parallel.init_from_environment()  # under torchrun --nproc_per_node N: sequence-parallel rows
    if sp is not None and sp.rank:  # rank 0 prints the rows
        sys.stdout = open(os.devnull, "w")
    device = torch.device("cuda" if cuda else "cpu")
    layers = a.layers if a.layers is not None else full.num_layers
    if not 1 <= layers <= full.num_layers:
        ap.error(f"--layers must be in 1..{full.num_layers}, got {layers}")
    if a.resident is None:
        a.resident = min(4, layers)
    if not 0 <= a.resident <= layers:
        ap.error(f"--resident must be in 0..{layers} (the measured model's layers), got {a.resident}")
    torch.set_grad_enabled(False)
    print("$ python -m harmony bench " + " ".join(shlex.quote(x) for x in (sys.argv[1:] if argv is None else argv)))
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}" if hasattr(os, "getloadavg") else "")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"))
    print()
    if not a.no_plan:
        memory_plan(full, plan_tokens, residents=sorted({0, a.resident, 10}), n_ref=n_ref)
        print()
    if a.plan:
        return 0
    cfg = reduced("5b", layers)
    print(f"rows on {device.type}: the 5b GLDI config cut to {layers} of {full.num_layers} layers per tower "
          f"(dim {cfg.video.dim}, ffn {cfg.video.ffn_dim}, heads {cfg.video.num_heads}), bf16 compute, random weights")
    print(f"clip of the rows: {tokens['seconds']:g} s {size[0]}x{size[1]}: {tokens['frames']} frames -> latent "
          f"{'x'.join(map(str, tokens['latent']))} -> {'x'.join(map(str, tokens['grid']))} = "
          f"{tokens['video_tokens']:,} video tokens, {tokens['audio_tokens']} audio tokens"
          + (f" + {n_ref} reference-voice tokens" if n_ref else "")
          + f", text {cfg.video.text_len}x{cfg.video.text_dim} per tower"
          + ("" if a.seconds == 5.0 else "  (SHORTER than the real 5 s clip)"))
    print(f"one step = one batched network forward through the SyncCFG denoiser (plain CFG: batch 2 = cond + "
          f"uncond; SyncCFG: batch 3 = joint + silent-audio + static-video), conditioning prepared once before "
          f"timing; {a.warmup} warm-up + median of {a.repeats}; block swap keeps {min(a.resident, layers)} of "
          f"{layers} layers resident")
    rows = []
    real_rows(device, cfg, tokens, wanted, a.repeats, a.warmup, a.resident, n_ref, rows, sp=sp)
    print()
    print_real_rows(rows)
    print("(s/step: wall-clock median; CPU s: process CPU time of the same call; GFLOP: model FLOPs of the step "
          "(model_flops, conditioning excluded); GFLOP/s from wall time; peak GiB: torch.cuda.max_memory_allocated "
          "on a GPU, the process's peak RSS on the CPU, reset per row)")
    return 0


if __name__ == "__main__":
    main()
