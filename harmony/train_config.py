"""The trainer's options: one field per ``python -m harmony train`` option, and its help.

``TrainConfig`` is the whole run in one small dataclass (nanoGPT's habit): the defaults are the
H200 run's, the notebook's runs (docs/training/experiments.md) change a few on the command line.
``harmony.train`` reads it; ``TRAIN_HELP`` is each option's ``--help`` line.
"""
from __future__ import annotations

from dataclasses import dataclass

from .sampling import DEFAULT_SHIFT


@dataclass
class TrainConfig:
    config: str = "tiny"
    steps: int = 3000
    batch: int = 16
    lr: float = 3e-4
    warmup: int = 200
    weight_decay: float = 0.01
    shift: float = DEFAULT_SHIFT
    tasks: str = "synergy"  # "synergy" | "joint"
    lambda_v: float = 0.1  # weight of the audio-driven video (A2V) loss
    lambda_a: float = 0.3  # weight of the video-driven audio (V2A) loss
    lambda_i: float = 0.0  # weight of the I2AV task (clean first latent frame); 0 = no such task
    p_first_frame: float = 0.2  # joint task with a clean first latent frame (I2AV)
    p_first_frame_a2v: float = 0.0  # A2V rows with a clean first latent frame (A2V from an image; the resync pass)
    p_drop_text: float = 0.1
    p_drop_ref: float = 0.3
    ema: float = 0.999
    seconds: float = 3.0
    pool: int = 4096  # training clips kept encoded in memory
    refresh: int = 512  # clips replaced in the pool every `refresh_every` steps
    refresh_every: int = 100
    seed: int = 0
    out: str = "runs/tiny"
    save_every: int = 500
    log_every: int = 25
    max_minutes: float = 0.0  # wall-clock budget (0 = none); the LR schedule follows it
    workers: int = 0  # processes rendering world clips (0/1 = in-process)
    codecs: str = ""  # codec weights (default: the bundled tiny codecs)
    export_dtype: str = "fp32"  # dtype of the exported EMA weights: fp32 | fp16 | bf16
    init_from: str = ""  # exported model file to start from (fine-tuning); ignored when resuming
    init_job: str = ""  # start from that job's own weights in --init-from (harmony.job_weights); empty = shared
    other_codecs: int = 0  # 1: --init-from may come from other codecs (a new codec; its weights only a start)
    overrides: str = ""  # config changes, e.g. "interaction=global,dim=64" (harmony.config.apply_overrides)
    latents: str = ""  # a saved LatentPool file: every run given it trains on the same clips (no refresh)
    clip_cache: str = ""  # a folder of real clips encoded by `python -m harmony encode-clips` (harmony.clips)
    export_every: int = 0  # also export the EMA weights as ema_step<N>.safetensors every N steps (0 = never)
    # --- levers for the cross-modal paths (docs/training/experiments.md measures each) ---
    lambda_joint: float = 1.0  # weight of the joint task; 0 = no joint rows at all (saves their compute)
    driven_shift: float = 0.0  # schedule shift of the generated side's sigma in A2V / V2A / I2AV (0 = --shift)
    # per-task shifts (0 = driven_shift): V2A / A2V need sigma ~ 1 to read their partner (notebook E5),
    # while I2AV keeps the mixture that preserves low-sigma quality (E6)
    shift_a2v: float = 0.0
    shift_v2a: float = 0.0
    shift_i2av: float = 0.0
    fusion_lr: float = 1.0  # learning-rate multiplier of the cross-tower (fusion) parameters
    trainable: str = ""  # regular expression: only model parameters whose names match it train (empty = all)
    split: str = ""  # world split of the rendered training clips (speech | ambient | complex; empty = all)
    probe_every: float = 0.0  # minutes between partner-use probes of the EMA weights (0 = never)
    probe_clips: int = 8  # held-out clips per split for the probe
    p_foreign_still: float = 0.0  # I2AV rows shown as a static clip of an out-of-world still (video loss only)
    p_quiet: float = 0.0  # share of rendered clips in which nothing happens (world.quiet): still video, no events
    p_running: float = 0.0  # share of rendered clips whose face speaks running speech (world.running)
    p_connected: float = 0.0  # share of rendered clips spoken by the second synthesiser (world.connected)
    voice_aug: float = 0.0  # A2V rows' driving audio moved to another voice (train.voice_augment); 0 = off
    colour_weight: float = 0.0  # a video latent position weighs 1 + W x the share of world-colour pixels in its patch
    lambda_temporal: float = 0.0  # weight of the MSE of the video estimate's frame-to-frame change (0 = off)
    # a frozen teacher's joint predictions tether the joint rows, so that teaching the driven jobs
    # does not cost T2AV what it had (the fine-tunes here lost the voice's pitch without one)
    distill_from: str = ""  # exported model file (e.g. the bundled one); empty = no teacher
    lambda_distill: float = 1.0  # weight of the distillation term when --distill-from is given
    # --- several processes (docs/training/distributed.md) ---
    fsdp: str = "off"  # "block": FSDP2, one unit per block (under torchrun / accelerate launch)
    mixed_precision: str = "fp32"  # with --fsdp block: "bf16" = bf16 parameters in compute, float32 reduction
    checkpoint_activations: int = 0  # 1 = recompute each block's activations in backward (less memory)
    accum: int = 1  # micro-batches per step and process (gradients add up; global batch = processes x accum x batch)
    stop_at: int = 0  # end this run after step N (0 = --steps); the schedule still follows --steps


TRAIN_HELP = {
    "config": "model config to build (harmony.config names, e.g. tiny)",
    "steps": "optimizer steps",
    "batch": "world clips per step",
    "lr": "peak learning rate (AdamW)",
    "warmup": "linear learning-rate warm-up, in steps",
    "weight_decay": "AdamW weight decay",
    "shift": "flow-matching schedule shift (paper: 5)",
    "tasks": "synergy: joint + A2V + V2A losses (Cross-Task Synergy); joint: the joint loss only",
    "lambda_v": "weight of the audio-driven video (A2V) loss (paper: 0.1)",
    "lambda_a": "weight of the video-driven audio (V2A) loss (paper: 0.3)",
    "lambda_i": "weight of the I2AV task (clean first latent frame); 0 = no such task",
    "init_from": "exported model file to start from (fine-tuning); empty = random weights",
    "init_job": "start from the --init-from file's own weights for this job (T2AV, I2AV, A2V, V2A); empty = shared",
    "other_codecs": "1: --init-from may have been trained with other codecs (moving to a new codec: its weights "
                    "are only where training starts, in the new codec's latent space)",
    "p_first_frame": "share of joint samples given a clean first latent frame (I2AV)",
    "p_first_frame_a2v": "share of A2V samples given a clean first latent frame too (A2V from an image, as "
                         "I2AV's resync pass samples it)",
    "p_drop_text": "share of samples trained without text (for text CFG)",
    "p_drop_ref": "share of samples trained without the reference voice",
    "ema": "decay of the exponential moving average that is exported",
    "seconds": "length of each training clip",
    "pool": "training clips kept encoded in memory",
    "refresh": "clips of the pool replaced by new ones every --refresh-every steps",
    "refresh_every": "steps between pool refreshes",
    "seed": "random seed (data, noise and initial weights)",
    "out": "folder for checkpoints, the exported model and train_summary.json",
    "save_every": "steps between checkpoints",
    "log_every": "steps between log lines",
    "max_minutes": "wall-clock budget in minutes (0 = none); the learning-rate schedule follows it",
    "workers": "processes rendering world clips (0 or 1 = in-process)",
    "codecs": "codec weights file (empty = the bundled tiny codecs)",
    "export_dtype": "dtype of the exported EMA weights",
    "overrides": "model config changes, comma-separated key=value (interaction, audio_rope, local_window, "
                 "prediction; dim, ffn_dim, num_heads, num_layers on both towers); empty = none",
    "latents": "saved latent-pool file to train on (fixed clips, no refresh); empty = render clips",
    "clip_cache": "folder of real clips encoded by `encode-clips` (latents + umT5 text) to train on; empty = none",
    "export_every": "also export the EMA weights as ema_step<N>.safetensors every N steps (0 = never)",
    "lambda_joint": "weight of the joint task (1 in the paper); 0 drops the joint rows",
    "driven_shift": "schedule shift of the generated side's sigma in A2V / V2A / I2AV (0 = --shift)",
    "shift_a2v": "schedule shift of the video's sigma in A2V rows (0 = --driven-shift)",
    "shift_v2a": "schedule shift of the audio's sigma in V2A rows (0 = --driven-shift)",
    "shift_i2av": "schedule shift of the sigma in I2AV rows (0 = --driven-shift)",
    "trainable": "regular expression: only the model parameters whose names match it are trained, e.g. "
                 "'audio_model\\..*fusion' (empty = all)",
    "fusion_lr": "learning-rate multiplier of the cross-tower (fusion, style) parameters",
    "split": "world split of the rendered training clips: speech, ambient or complex (empty = all)",
    "probe_every": "minutes between partner-use probes of the EMA weights on held-out clips (0 = never); "
                   "lines in <out>/probe.jsonl",
    "probe_clips": "held-out clips per split for the probe",
    "p_foreign_still": "share of I2AV rows shown as a static clip of an out-of-world still image "
                       "(harmony.world.stills: photo-like, shapes, screenshot-like), scored on video only",
    "p_quiet": "share of rendered training clips in which nothing happens (harmony.world.quiet: still objects, "
               "a closed mouth, the ambience only), so that a still video gets no sound",
    "p_running": "share of rendered training clips whose face speaks running speech (harmony.world.running: "
                 "syllables back to back, 3-5 a second), so that A2V follows a sentence, not only separate syllables",
    "p_connected": "share of rendered training clips whose face speaks connected speech in a voice of the world's "
                   "second synthesiser (harmony.world.connected: consonants between the vowels, wider voices), so "
                   "that A2V follows speech it was not made with",
    "voice_aug": "strength S of another voice on A2V rows' driving audio (the bundled audio codec only): per clip "
                 "the loudness moved by up to S nats, the pitch by up to S octaves, the spectral envelope tilted "
                 "and each band moved; the syllables' timing kept (0 = off)",
    "lambda_temporal": "weight of a second video term: the MSE of the clean-sample estimate's change from one latent "
                       "frame to the next against the clip's, so that frames hold still where the clip does "
                       "(generated frames shimmer at 15-25x the real change; 0 = off)",
    "colour_weight": "W: in the video loss, each latent position weighs 1 + W x the share of its patch's pixels that "
                     "show one of the world's colours (the objects, the hair: what colour F1 reads), so that a small "
                     "object's colour is not a few numbers among a frame's background (0 = plain MSE)",
    "distill_from": "exported model file whose joint predictions tether the joint rows (a frozen teacher, e.g. "
                    "the bundled model), so that the driven jobs are taught without costing T2AV; empty = none",
    "lambda_distill": "weight of the teacher term on the joint rows (with --distill-from)",
    "fsdp": "block: shard parameters, gradients, AdamW state and EMA over the processes with FSDP2, one unit "
            "per transformer block (launch with torchrun --nproc_per_node N; state in <out>/state_dcp)",
    "mixed_precision": "with --fsdp block: bf16 computes with bf16 parameters and reduces gradients in float32",
    "checkpoint_activations": "1: recompute each block's activations in backward instead of keeping them",
    "accum": "micro-batches per step and process, gradients summed (global batch = processes x accum x batch)",
    "stop_at": "end this run after step N, resumable (0 = --steps); the learning-rate schedule follows --steps",
}
"""Help of each ``python -m harmony train`` option (one per TrainConfig field)."""
