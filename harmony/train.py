"""Cross-Task Synergy trainer (paper §3.3), read top to bottom.

Every step draws a batch of world clips and trains three tasks on it in one
batched forward:

* **joint**: video and audio noisy at the same sigma (sometimes with a clean
  first frame, so the model also learns I2AV);
* **A2V**: audio clean (``t_a = 0``), loss on video only;
* **V2A**: video clean (``t_v = 0``), loss on audio only;

* **I2AV** (``--lambda-i`` > 0): the first latent frame clean (``t = 0`` on that
  frame only), loss on frames 1..N and on the audio;

``L = L_joint + λv · L_A2V + λa · L_V2A + λi · L_I2AV`` (``--tasks joint`` trains
the joint loss alone). Flow matching with shift 5. ``--init-from FILE``
starts from an exported model file (and its text-encoder file) instead of
random weights, for fine-tuning.
Text and the reference voice are dropped at random so that text CFG and
voice-free generation work. EMA weights, safetensors checkpoints, resumable.

Runs as one CPU process (``python -m harmony train``) and under
``accelerate launch -m harmony train`` on several devices unchanged.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import time

import torch
import torch.nn.functional as F

from .config import apply_overrides, get_config
from .conditioner import Conditioner
from .files import sha256_file
from .jobs import DEFAULT_MAX_SECONDS, JOBS
from .model import HarmonyModel
from .probe import PartnerProbe
from .sampling import shift_sigmas
# the data and the training state live in their own modules; their names stay importable from here
from .train_config import TRAIN_HELP, TrainConfig  # noqa: F401
from .train_data import LatentPool, encode_foreign_stills, encode_latent_pool  # noqa: F401
from .train_state import (EXPORT_DTYPES, export_default, init_from_export, init_from_file,  # noqa: F401
                          init_from_ovi, load_training_state, save_training_state)


# --------------------------------------------------------------------------
# the Cross-Task Synergy loss
# --------------------------------------------------------------------------

def noisy(x0, noise, sigma):
    """Flow-matching interpolation; sigma broadcast from the batch dim."""
    s = sigma.reshape(-1, *([1] * (x0.dim() - 1)))
    return (1 - s) * x0 + s * noise


def _video_mse(pred, target, t_video, weight=None):
    """Mean squared error over the noisy latent frames only (a clean, given frame is not scored);
    ``weight [b, 1, F, h, w]``: each latent position's weight (``--colour-weight``), a weighted mean."""
    noisy_frames = (t_video > 0).float()[:, None, :, None, None].expand_as(target)
    if weight is not None:
        noisy_frames = noisy_frames * weight
    return ((pred - target) ** 2 * noisy_frames).sum() / noisy_frames.sum().clamp(min=1e-6)


def _temporal_mse(pred, target, t_video, x0_target: bool):
    """Mean squared error of the clean-sample estimate's frame-to-frame change against the clip's, over
    pairs of consecutive noisy latent frames (``--lambda-temporal``). The x0 error is ``pred - target`` for
    an x0 network, ``sigma * (target - pred)`` for a velocity one (``x0 = z - sigma * u``). A still
    background scores zero only if every frame's estimate errs alike: frame-to-frame shimmer, which the
    per-position MSE weighs as little as a steady offset, is what this term sees."""
    sigma = (t_video / 1000)[:, None, :, None, None]
    err = pred - target if x0_target else sigma * (target - pred)
    step = err[:, :, 1:] - err[:, :, :-1]
    pairs = ((t_video[:, 1:] > 0) & (t_video[:, :-1] > 0)).float()[:, None, :, None, None].expand_as(step)
    return (step ** 2 * pairs).sum() / pairs.sum().clamp(min=1e-6)


def _audio_mse(pred, target, rows):
    """Mean squared error over the audio of the given rows (a bool mask over the batch); 0 when none."""
    keep = rows.float()[:, None, None].expand_as(target)
    return ((pred - target) ** 2 * keep).sum() / keep.sum().clamp(min=1)


def voice_augment(a0: torch.Tensor, gen: torch.Generator, strength: float) -> torch.Tensor:
    """Another voice for the same timing (``--voice-aug``; latents of the bundled analytic audio codec,
    ``harmony.codecs.toy_audio``, normalised by its default statistics). Per clip: the loudness moved by up
    to ``strength`` nats, the pitch by up to ``strength`` octaves, the 14-band spectral envelope tilted by up
    to 1.5 x ``strength`` nats from its lowest band to its highest, and each band moved by up to 0.75 x
    ``strength``. The loudness envelope's shape, which carries the syllables' timing, is the clip's own, so
    A2V learns to follow when a voice sounds, not which voice it is (notebook Y12: the world's voice only)."""
    from .codecs.toy_audio import AudioCodec

    _, std = AudioCodec.default_stats()
    names = AudioCodec.CHANNELS
    env = [i for i, c in enumerate(names) if c.startswith("env")]
    bands = [i for i, c in enumerate(names) if c.startswith("band")]
    b = a0.shape[0]

    def r(*shape):  # uniform in -1..1, from the trainer's generator
        return torch.rand(*shape, generator=gen) * 2 - 1

    delta = torch.zeros(b, 1, len(names))
    delta[:, 0, env] = strength * r(b, 1)
    delta[:, 0, names.index("log_f0")] = strength * math.log(2.0) * r(b)
    delta[:, 0, bands] = strength * (1.5 * r(b, 1) * torch.linspace(-0.5, 0.5, len(bands)) + 0.75 * r(b, len(bands)))
    return a0 + (delta / std).to(a0)


def synergy_loss(model, conditioner, batch, tc: TrainConfig, gen: torch.Generator,
                 prediction: str = "x0", teacher=None):
    """Return (total loss, dict of the task losses). ``prediction``: what the network outputs,
    ``"x0"`` (clean sample) or ``"velocity"`` (noise - x0). ``teacher``: ``(model, conditioner)``,
    frozen; its prediction on the joint rows is a second target for them (``distill``)."""
    device = next(model.parameters()).device
    v0, a0 = batch["video"].to(device), batch["audio"].to(device)
    b, f = v0.shape[0], v0.shape[2]
    tasks = ["joint"] if tc.tasks == "joint" else (["joint"] if tc.lambda_joint > 0 else []) + [
        t for t, w in (("a2v", tc.lambda_v), ("v2a", tc.lambda_a), ("i2av", tc.lambda_i)) if w > 0]
    n = len(tasks)

    # text / reference dropout (one draw per clip, shared by its tasks)
    drop_text = torch.rand(b, generator=gen) < tc.p_drop_text
    drop_ref = torch.rand(b, generator=gen) < tc.p_drop_ref
    prompts = ["" if d else p for d, p in zip(drop_text, batch["prompt"])]
    captions = ["" if d else c for d, c in zip(drop_text, batch["caption"])]
    transcripts = ["" if d else t for d, t in zip(drop_text, batch["transcript"])]
    refs = [None if d else r for d, r in zip(drop_ref, batch["refs"])]
    cond = conditioner(prompts, captions, transcripts, refs, device=device)

    u = torch.rand(b, generator=gen, dtype=torch.float64)
    sigma = shift_sigmas(u, tc.shift).float().to(device)
    # the generated side of a driven task (A2V / V2A / I2AV) may follow its own schedule, one per task
    def driven_sigma(task):
        shift = getattr(tc, "shift_" + task) or tc.driven_shift
        return shift_sigmas(u, shift).float().to(device) if shift > 0 else sigma
    nv = torch.randn(v0.shape, generator=gen).to(device)
    na = torch.randn(a0.shape, generator=gen).to(device)
    first_clean = (torch.rand(b, generator=gen) < tc.p_first_frame).to(device)
    # drawn only when used, so that a run without it draws what it always drew
    first_a2v = (torch.rand(b, generator=gen) < tc.p_first_frame_a2v).to(device) if tc.p_first_frame_a2v > 0 else None
    a_a2v = voice_augment(a0, gen, tc.voice_aug) if tc.voice_aug > 0 and "a2v" in tasks else a0  # A2V's driving voice
    # I2AV rows shown as a static clip of an out-of-world still (harmony.world.stills): video only
    foreign = torch.zeros(b, dtype=torch.bool, device=device)
    v_i2av = v0
    if "i2av" in tasks and tc.p_foreign_still > 0 and batch.get("stills") is not None:
        foreign = (torch.rand(b, generator=gen) < tc.p_foreign_still).to(device)
        still = batch["stills"].to(device).expand_as(v0)
        v_i2av = torch.where(foreign[:, None, None, None, None], still, v0)

    zv_list, za_list, tv_list, ta_list = [], [], [], []
    for task in tasks:
        s_task = sigma if task == "joint" else driven_sigma(task)
        sigma_v = s_task[:, None].expand(b, f).clone()  # per latent frame
        sigma_a = s_task.clone()
        if task == "joint":
            sigma_v[first_clean, 0] = 0
        elif task == "i2av":
            sigma_v[:, 0] = 0
        elif task == "a2v":
            sigma_a.zero_()
            if first_a2v is not None:
                sigma_v[first_a2v, 0] = 0
        elif task == "v2a":
            sigma_v.zero_()
        sigma_vb = sigma_v[:, None, :, None, None]
        zv_list.append((1 - sigma_vb) * (v_i2av if task == "i2av" else v0) + sigma_vb * nv)
        za_list.append(noisy(a_a2v if task == "a2v" else a0, na, sigma_a))
        tv_list.append(sigma_v * 1000)
        ta_list.append(sigma_a * 1000)
    out_v, out_a = model(torch.cat(zv_list), torch.cat(za_list), torch.cat(tv_list),
                         torch.cat(ta_list), cond.repeat(n))

    x0_target = prediction == "x0"
    target_v = v0 if x0_target else nv - v0
    target_a = a0 if x0_target else na - a0

    ov, oa = out_v.chunk(n), out_a.chunk(n)
    weight = None  # the objects' colours weigh more (--colour-weight); a foreign still's patches are not the clip's
    if tc.colour_weight > 0 and batch.get("colour") is not None:
        weight = 1 + tc.colour_weight * batch["colour"].to(device)[:, None]
    losses = {}
    for i, task in enumerate(tasks):
        tgt_v, w = target_v, weight
        if task == "i2av" and bool(foreign.any()):
            tgt_v = v_i2av if x0_target else nv - v_i2av
            w = None if w is None else torch.where(foreign[:, None, None, None, None], torch.ones_like(w), w)
        lv = _video_mse(ov[i], tgt_v, tv_list[i], w)
        if tc.lambda_temporal > 0 and task != "v2a":  # V2A's video is given, clean
            lv = lv + tc.lambda_temporal * _temporal_mse(ov[i], tgt_v, tv_list[i], x0_target)
        # a still's audio is not the clip's: not scored
        la = _audio_mse(oa[i], target_a, ~foreign) if task == "i2av" else F.mse_loss(oa[i], target_a)
        if task in ("joint", "i2av"):
            losses[task] = lv + la
        elif task == "a2v":
            losses["a2v"] = lv
        else:
            losses["v2a"] = la
    if teacher is not None and "joint" in tasks:  # the same noisy joint rows, the teacher's own text encoders
        t_model, t_text = teacher
        with torch.no_grad():
            tv, ta = t_model(zv_list[0], za_list[0], tv_list[0], ta_list[0],
                             t_text(prompts, captions, transcripts, refs, device=device))
        # the teacher never saw a quiet clip (world.quiet): its answer there is the prior that adds
        # sounds to a still video, so quiet rows keep only their ground truth
        taught = ~batch["quiet"].to(device) if "quiet" in batch else torch.ones(b, dtype=torch.bool, device=device)
        losses["distill"] = _video_mse(ov[0][taught], tv[taught], tv_list[0][taught]) + _audio_mse(oa[0], ta, taught)
    joint_weight = 1.0 if tc.tasks == "joint" else tc.lambda_joint
    total = (joint_weight * losses.get("joint", 0) + tc.lambda_v * losses.get("a2v", 0)
             + tc.lambda_a * losses.get("v2a", 0) + tc.lambda_i * losses.get("i2av", 0)
             + tc.lambda_distill * losses.get("distill", 0))
    return total, {k: float(v.detach()) for k, v in losses.items()}


# --------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------

def is_fusion_parameter(name: str) -> bool:
    """The cross-tower parameters (``--fusion-lr`` scales their learning rate): the partner
    keys / values and their norms, and GLDI's style alignment."""
    return "fusion" in name or "style" in name


def train(tc: TrainConfig):
    from tqdm import tqdm

    from . import distributed as hd
    from .codecs import DEFAULT_CODECS_PATH, load_codecs

    # sharded: --fsdp block, or accelerate launch with an FSDP config (configs/accelerate/fsdp.yaml)
    fsdp = tc.fsdp == "block" or os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true"
    if tc.mixed_precision != "fp32" and not fsdp:
        raise ValueError(f"--mixed-precision {tc.mixed_precision} is the sharded run's (--fsdp block); "
                         "without it the trainer computes in float32")
    if fsdp and tc.probe_every > 0:
        raise ValueError("--probe-every is not available with --fsdp block (the probe reads the full EMA on one "
                         "process); probe the exported ema_step<N>.safetensors files instead (--export-every)")
    acc = None
    if fsdp:  # the trainer shards the model itself (harmony.distributed), whatever the launcher
        device = hd.init_process_group()
    else:
        try:
            from accelerate import Accelerator
            acc = Accelerator()
            if int(os.environ.get("WORLD_SIZE", "1")) > 1 and acc.num_processes == 1:
                raise RuntimeError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but accelerate set up one process; "
                                   "on CPU launch with ACCELERATE_USE_CPU=true accelerate launch --multi_gpu "
                                   "--num_processes N, or shard: torchrun ... --fsdp block "
                                   "(docs/training/distributed.md)")
        except ImportError:  # plain single-process run
            pass
        device = acc.device if acc else torch.device("cpu")
    rank, n_proc = hd.world()
    main_process = rank == 0
    torch.manual_seed(tc.seed)  # same initial weights on every process
    # data shard d = rank * accum + j (micro-batch j of this process) draws its own clips and noise, so
    # N processes x accum K see the same global batch as one process with accum N * K
    shards = [rank * tc.accum + j for j in range(tc.accum)]
    gens = [torch.Generator().manual_seed(tc.seed + 1 + 1000 * d) for d in shards]
    os.makedirs(tc.out, exist_ok=True)

    from .codecs.contract import geometry_meta

    codecs = load_codecs(tc.codecs or None, device=device)
    if tc.voice_aug > 0:
        from .codecs.toy_audio import AudioCodec
        if not isinstance(codecs[1], AudioCodec):
            raise ValueError(f"--voice-aug moves channels of the bundled analytic audio codec's latents; the audio "
                             f"codec here is {type(codecs[1]).__name__}. Train without --voice-aug.")
    cfg = apply_overrides(get_config(tc.config), tc.overrides)
    # the toy codecs' geometry and the default clip limit, unless the config records its own (5b: the
    # Wan2.2 VAE / MMAudio geometry and Ovi's 5 s, which a --clip-cache run trains on)
    cfg = cfg.replace(meta={**geometry_meta(*codecs), "max_seconds": DEFAULT_MAX_SECONDS, **cfg.meta,
                            "trained_seconds": tc.seconds, "codecs": "tiny_codecs.safetensors",
                            "codecs_sha256": sha256_file(tc.codecs or DEFAULT_CODECS_PATH)})
    model = HarmonyModel(cfg).to(device)
    clips = None
    if tc.clip_cache:  # real clips: their latents and frozen umT5 text come from the cache (harmony.clips)
        from .clips import ClipCache
        clips = ClipCache(tc.clip_cache)
        cfg = clips.check(cfg)
    conditioner = clips.text(cfg) if clips else Conditioner(cfg).to(device)
    resuming = hd.has_state(tc.out) if fsdp else os.path.exists(os.path.join(tc.out, "state.safetensors"))
    if tc.init_from and not resuming:
        cfg = init_from_file(tc.init_from, model, conditioner, cfg, tc.init_job, bool(tc.other_codecs))
        print(f"initialised from {tc.init_from} (step {cfg.meta.get('init_step', '?')})")
    teacher = None
    if tc.distill_from:  # frozen, in evaluation mode, never exported
        t_model, t_text = HarmonyModel(cfg).to(device), Conditioner(cfg).to(device)
        init_from_file(tc.distill_from, t_model, t_text, cfg)
        for p in list(t_model.parameters()) + list(t_text.parameters()):
            p.requires_grad_(False)
        teacher = (t_model.eval(), t_text.eval())
        print(f"joint rows tethered to {tc.distill_from} (lambda {tc.lambda_distill:g})")
    mixed_precision, checkpoint = tc.mixed_precision, bool(tc.checkpoint_activations)
    if fsdp:
        if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":  # fsdp.yaml's settings
            mixed_precision = "bf16" if os.environ.get("ACCELERATE_MIXED_PRECISION") == "bf16" else mixed_precision
            checkpoint = checkpoint or os.environ.get("FSDP_ACTIVATION_CHECKPOINTING", "").lower() == "true"
        hd.shard(model, conditioner, device, mixed_precision, checkpoint)
        print(f"[rank {rank}/{n_proc}] FSDP2: one unit per block, {mixed_precision} parameters in compute, "
              f"activation checkpointing {'on' if checkpoint else 'off'}", flush=True)
    else:
        model.checkpoint_blocks = checkpoint
    if tc.trainable:  # e.g. only the audio tower's partner path: the rest of the model stays as it was
        pattern = re.compile(tc.trainable)
        for name, p in model.named_parameters():
            p.requires_grad_(bool(pattern.search(name)))
        for p in conditioner.parameters():
            p.requires_grad_(False)
    params = [p for p in list(model.parameters()) + list(conditioner.parameters()) if p.requires_grad]
    if not params:
        raise ValueError(f"--trainable {tc.trainable!r} matches no model parameter; names look like "
                         "'audio_model.blocks.0.cross_attn.k_fusion.weight'")
    fusion = [p for name, p in model.named_parameters() if is_fusion_parameter(name) and p.requires_grad]
    rest = [p for p in params if all(p is not q for q in fusion)]
    groups = [g for g in ({"params": rest, "lr_mult": 1.0}, {"params": fusion, "lr_mult": tc.fusion_lr}) if g["params"]]
    opt = torch.optim.AdamW(groups, lr=tc.lr, weight_decay=tc.weight_decay, betas=(0.9, 0.99))
    ema = {f"model.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    ema.update({f"text.{k}": v.detach().clone() for k, v in conditioner.state_dict().items()})
    step = 0
    if resuming and fsdp:
        step = hd.saved_step(tc.out)  # the state itself is loaded once the pools exist (their generators)
    elif resuming:
        step = load_training_state(tc.out, model, conditioner, ema, opt)
        print(f"resumed from {tc.out} at step {step}")
    if acc:
        model, conditioner, opt = acc.prepare(model, conditioner, opt)
    core = acc.unwrap_model(model) if acc else model
    core_text = acc.unwrap_model(conditioner) if acc else conditioner

    t0 = time.time()
    if clips:
        pools = [clips.pool(tc.seed + step + 7919 * d, d, n_proc * tc.accum, device) for d in shards]
    elif tc.latents:  # a fixed, shared set of clips (ablation rows see the same data)
        pools = [LatentPool.load(tc.latents, codecs, tc.seed + step + 7919 * d, device) for d in shards]
        if abs(pools[0].seconds - tc.seconds) > 1e-6:
            cfg = cfg.replace(meta={**cfg.meta, "trained_seconds": pools[0].seconds})
    else:
        pools = [LatentPool(codecs, tc.seconds, tc.pool, tc.seed + step + 7919 * d, tc.workers, device,
                            split=tc.split, p_quiet=tc.p_quiet, colour=tc.colour_weight > 0,
                            p_running=tc.p_running, p_connected=tc.p_connected) for d in shards]
    pool = pools[0]
    for name, have, want in (("video", pool.data["video"].shape[1], cfg.video.in_dim),
                             ("audio", pool.data["audio"].shape[-1], cfg.audio.in_dim)):
        if have != want:
            raise ValueError(f"training clips have {have} {name} latent channels but --config {tc.config} expects "
                             f"{want}; give --latents made by that model's codecs (e.g. harmony.train."
                             "encode_latent_pool with the Wan2.2 VAE for a 5b config)")
    stills = None
    if tc.p_foreign_still > 0 and tc.lambda_i > 0:
        stills = encode_foreign_stills(codecs[0], 1024, tc.seed, device)
    n_params = sum(p.numel() for p in core.parameters()) + sum(p.numel() for p in core_text.parameters())
    print(f"pool of {pool.size} clips rendered and encoded in {time.time() - t0:.1f}s; "
          f"{n_params / 1e6:.2f} M params, {sum(p.numel() for p in params) / 1e6:.2f} M of them trained; "
          f"device {device}")
    if resuming and fsdp:  # after the pools: their generators are part of the state
        step = hd.load_state(tc.out, model, conditioner, ema, opt, gens + [p.rng for p in pools])
        print(f"resumed from {tc.out} at step {step} (sharded state, {n_proc} processes)")
    log = open(os.path.join(tc.out, "train_log.jsonl"), "a") if main_process else None
    end = min(tc.stop_at, tc.steps) if tc.stop_at > 0 else tc.steps
    bar = tqdm(total=end, initial=step, disable=not main_process)
    t_start, cpu_start = time.time(), time.process_time()
    budget = tc.max_minutes * 60 if tc.max_minutes > 0 else float("inf")
    probe_path = os.path.join(tc.out, "probe.jsonl")
    probe = PartnerProbe(cfg, codecs, tc.probe_clips, tc.seconds, tc.split, probe_path) if (
        tc.probe_every > 0 and main_process) else None
    next_probe = 0.0  # seconds of this run's wall time at which the next probe runs

    def save(at: int):  # a sharded state is written by every process, the others by the main one
        if fsdp:
            hd.save_state(tc.out, core, core_text, ema, opt, gens + [p.rng for p in pools], at,
                          {"harmony_config": cfg.to_dict(), "train_config": tc.__dict__})
        elif main_process:
            save_training_state(tc.out, core, core_text, ema, opt, at, tc, cfg)

    def export(path: str, at: int):  # sharded: every process sends its EMA shards to rank 0
        full = hd.gather_to_rank0(ema) if fsdp else ema
        if main_process:
            export_default(full, cfg, path, at, tc.export_dtype)
    while step < end:
        if probe is not None and time.time() - t_start >= next_probe:
            probe(ema, step, time.time() - t_start, time.process_time() - cpu_start)
            next_probe = time.time() - t_start + 60 * tc.probe_every
        # progress drives warm-up + cosine decay; a wall-clock budget ends training early
        progress = max(step / tc.steps, (time.time() - t_start) / budget)
        if n_proc > 1 and budget < float("inf"):  # one schedule (and one stop) for all processes
            shared = torch.tensor([progress], device=device)
            torch.distributed.all_reduce(shared, op=torch.distributed.ReduceOp.MAX)
            progress = float(shared)
        if progress >= 1:
            print(f"time budget of {tc.max_minutes:g} min reached at step {step}")
            break
        lr = tc.lr * min(1.0, (step + 1) / tc.warmup) * 0.5 * (1 + math.cos(math.pi * progress))
        for g in opt.param_groups:
            g["lr"] = lr * g.get("lr_mult", 1.0)
        model.train()
        opt.zero_grad(set_to_none=True)
        loss, parts = 0.0, {}
        for pool_j, gen in zip(pools, gens):  # micro-batches (--accum): gradients add up
            batch = pool_j.batch(tc.batch)
            if stills is not None:
                batch["stills"] = stills[torch.randint(0, len(stills), (tc.batch,), generator=gen)]
            loss_j, parts_j = synergy_loss(model, conditioner, batch, tc, gen, cfg.prediction, teacher)
            (acc.backward(loss_j / tc.accum) if acc else (loss_j / tc.accum).backward())
            loss += float(loss_j.detach()) / tc.accum
            parts = {k: parts.get(k, 0.0) + v / tc.accum for k, v in parts_j.items()}
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():  # EMA of model and text encoders
            d = min(tc.ema, (1 + step) / (10 + step))
            live = {f"model.{k}": v for k, v in core.state_dict().items()}
            live.update({f"text.{k}": v for k, v in core_text.state_dict().items()})
            for k, v in live.items():
                if v.is_floating_point():
                    ema[k].lerp_(v.detach(), 1 - d)
                else:
                    ema[k].copy_(v)
        step += 1
        bar.update(1)
        if step % tc.log_every == 0 or step == 1:
            if n_proc > 1:  # the logged loss is the global batch's (every process's micro-batches)
                loss, parts = _mean_over_processes(loss, parts, device)
            bar.set_postfix(loss=f"{loss:.4f}", **{k: f"{v:.4f}" for k, v in parts.items()})
            if log:
                log.write(json.dumps({"step": step, "loss": round(loss, 5),
                                      **{k: round(v, 5) for k, v in parts.items()},
                                      "lr": lr, "elapsed_s": round(time.time() - t_start, 1)}) + "\n")
                log.flush()
        if tc.refresh > 0 and not tc.latents and step % tc.refresh_every == 0:
            for pool_j in pools:
                pool_j.refresh(tc.refresh)
        if step % tc.save_every == 0:
            save(step)
        if tc.export_every > 0 and step % tc.export_every == 0:
            export(os.path.join(tc.out, f"ema_step{step}.safetensors"), step)
    bar.close()
    wall = time.time() - t_start
    if probe is not None:
        probe(ema, step, wall, time.process_time() - cpu_start)
    save(step)
    export(os.path.join(tc.out, "harmony_tiny.safetensors"), step)
    held = hd.state_bytes(params, opt, ema)  # this process's parameter + optimizer + EMA bytes
    if n_proc > 1:
        every = [None] * n_proc
        torch.distributed.all_gather_object(every, held)
        held = every
    if main_process:
        with open(os.path.join(tc.out, "train_summary.json"), "w") as fh:
            json.dump({"steps": step, "wall_s_this_run": round(wall, 1),
                       "cpu_s_this_run": round(time.process_time() - cpu_start, 1), "device": str(device),
                       "params_m": round(n_params / 1e6, 3), "processes": n_proc, "sharded": fsdp,
                       "state_bytes_per_process": held if n_proc > 1 else [held], "config": tc.__dict__},
                      fh, indent=1)
        print(f"done: {step} steps, {wall:.0f}s this run; weights in {tc.out}")
    if n_proc > 1 and torch.distributed.is_initialized():
        # every process leaves the group together: one that closed its gloo pairs while another still
        # wrote its summary could abort the finished run at exit ("terminate called without an active
        # exception"); the atexit close in harmony.parallel stays for runs that end in an error
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def _mean_over_processes(loss: float, parts: dict, device):
    """The mean of the loss and of each task loss over all processes."""
    keys = sorted(parts)
    t = torch.tensor([loss] + [parts[k] for k in keys], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    t = (t / torch.distributed.get_world_size()).tolist()
    return t[0], dict(zip(keys, t[1:]))




def main(argv=None):
    from .cli import Parser, program

    ap = Parser(prog=f"{program()} train", description="Cross-Task Synergy training (paper section 3.3) of a Harmony model on the\n"
                "synthetic audio-visual world; the EMA weights go to <out>/harmony_tiny.safetensors.",
                epilog=f"example:\n  {program()} train --steps 3000 --out runs/tiny")
    choices = {"tasks": ("synergy", "joint"), "export_dtype": tuple(EXPORT_DTYPES), "fsdp": ("off", "block"),
               "init_job": ("",) + JOBS, "mixed_precision": ("fp32", "bf16"), "checkpoint_activations": (0, 1),
               "other_codecs": (0, 1)}
    for name, default in TrainConfig().__dict__.items():
        if isinstance(default, dict):
            continue
        kind = type(default)
        ap.add_argument("--" + name.replace("_", "-"), type=kind, default=default, choices=choices.get(name),
                        help=TRAIN_HELP.get(name, ""))
    args = ap.parse_args(argv)
    from . import validate

    try:  # every count and rate in range, at parse time (before any clip is rendered or weight built)
        for name in ("steps", "batch", "pool", "refresh_every", "save_every", "log_every", "probe_clips", "accum"):
            validate.integer(getattr(args, name), name, getattr(TrainConfig(), name), via="cli", low=1)
        for name in ("warmup", "refresh", "workers", "export_every", "seed", "stop_at"):
            validate.integer(getattr(args, name), name, getattr(TrainConfig(), name), via="cli", low=0)
        for name in ("lr", "seconds", "shift"):
            validate.number(getattr(args, name), name, f"{getattr(TrainConfig(), name):g}", via="cli", low=0,
                            low_open=True)
        for name in ("weight_decay", "lambda_v", "lambda_a", "lambda_i", "lambda_joint", "lambda_distill", "colour_weight",
                     "lambda_temporal", "voice_aug", "driven_shift", "fusion_lr", "shift_a2v", "shift_v2a",
                     "shift_i2av", "max_minutes", "probe_every"):
            validate.number(getattr(args, name), name, f"{getattr(TrainConfig(), name):g}", via="cli", low=0)
        for name in ("p_first_frame", "p_first_frame_a2v", "p_drop_text", "p_drop_ref", "p_foreign_still", "p_quiet",
                     "p_running", "p_connected", "ema"):
            validate.number(getattr(args, name), name, f"{getattr(TrainConfig(), name):g}", via="cli", low=0,
                            high=1)
    except validate.InputError as e:
        ap.error(str(e))
    tc = TrainConfig(**{k: v for k, v in vars(args).items()})
    if tc.export_dtype not in EXPORT_DTYPES:
        ap.error(f"--export-dtype must be one of {list(EXPORT_DTYPES)}, got {tc.export_dtype!r}")
    if tc.tasks not in ("synergy", "joint"):
        ap.error(f"--tasks must be 'synergy' or 'joint', got {tc.tasks!r}")
    for flag, p in (("--p-quiet", tc.p_quiet), ("--p-running", tc.p_running), ("--p-connected", tc.p_connected)):
        if p > 0 and (tc.clip_cache or tc.latents):
            ap.error(f"{flag} changes the rendered world clips; it does not apply to --latents / --clip-cache "
                     "(drop one)")
    if tc.colour_weight > 0 and (tc.clip_cache or tc.latents):
        ap.error("--colour-weight reads the rendered world frames' colours; it does not apply to --latents / "
                 "--clip-cache (drop one)")
    if tc.distill_from and (tc.fsdp != "off" or tc.clip_cache):
        ap.error("--distill-from runs a whole teacher on one process with the world's text encoders; "
                 "it does not combine with --fsdp or --clip-cache (drop one)")
    if tc.clip_cache and tc.latents:
        ap.error("--clip-cache and --latents: give one (both are the clips to train on)")
    train(tc)


if __name__ == "__main__":
    main()
