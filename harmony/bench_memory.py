"""The bench's memory plan: weights and activations counted on the meta device (shapes only,
nothing allocated).

:func:`memory_plan` prints, for a config at a clip's token counts (:func:`harmony.flops.real_tokens`),
the weight bytes per storage format (:func:`model_weight_table`), the activations of one sampling
step tracked with :class:`LiveBytes` while attention runs as one fused kernel
(:class:`FusedAttention`), the umT5-XXL encoder by its parameter count, the Wan2.2 VAE's tiled
decode, and which options fit 24 / 32 / 80 GB cards (``python -m harmony bench --plan``).
"""
from __future__ import annotations

import math
import weakref

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .checkpoint import to_fp8_
from .config import HarmonyConfig, get_config
from .model import Conditioning, HarmonyModel

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
        to_fp8_(model)
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



def weight_bytes_5b():
    """Bytes of the full 5b model's weights per storage format (meta device, no allocation)."""
    t = model_weight_table(get_config("5b"))
    return {"params": t["params"], "fp32": 4 * t["params"], "bf16": t["bf16"], "fp8": t["fp8"]}
