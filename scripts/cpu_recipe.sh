#!/usr/bin/env bash
# The recipe of record for the bundled tiny model, on a CPU (issue 19): fine-tune the shipped
# weights so that every job follows its input. What the lab notebook supports
# (docs/training/experiments.md):
#   - the generated side of A2V / V2A / I2AV at high noise: below sigma ~0.7 the noisy latent itself
#     gives the events away and the partner is never needed, which is why the old recipe (shared
#     sigma) left it unused. V2A rows at sigma ~1 (--shift-v2a 1000: E5, the V2A controls pass),
#     I2AV (and A2V unless SHIFT_A2V says otherwise) on a mixture (--driven-shift 20: two thirds of
#     the rows above sigma 0.9) that keeps the low-sigma quality (E6);
#   - every driven task weighted like the joint task (lambda 1), the joint task kept at shift 5
#     so that T2AV keeps what it had;
#   - I2AV also on out-of-world stills (--p-foreign-still), so a photo or a screenshot persists;
#   - a share of quiet clips (--p-quiet: nothing moves, nothing sounds), which the world never draws
#     otherwise, so that a still video gets no sound.
# Resumable: run it again with the same OUT and it continues from OUT/state.safetensors (the
# learning-rate schedule follows --steps; MINUTES caps one run's wall time).
# Usage: bash scripts/cpu_recipe.sh [MINUTES] [OUT]
#   env: STEPS, THREADS, INIT, SECONDS_PER_CLIP, BATCH, LR, SHIFT_V2A, SHIFT_A2V, SHIFT_I2AV, EXPORT_EVERY, P_QUIET, STOP_AT
set -euo pipefail
MINUTES=${1:-60}
OUT=${2:-runs/recipe}
STEPS=${STEPS:-5000}
INIT=${INIT:-harmony/assets/harmony_tiny.safetensors}
mkdir -p "$OUT"
export OMP_NUM_THREADS=${THREADS:-2}
${PYTHON:-python} -m harmony train --init-from "$INIT" \
  --steps "$STEPS" --max-minutes "$MINUTES" --seconds ${SECONDS_PER_CLIP:-2} --batch ${BATCH:-12} --lr ${LR:-5e-4} --warmup 50 --ema 0.995 \
  --lambda-joint 1 --lambda-v 1 --lambda-a 1 --lambda-i 1 --driven-shift 20 \
  --shift-v2a ${SHIFT_V2A:-1000} --shift-a2v ${SHIFT_A2V:-0} --shift-i2av ${SHIFT_I2AV:-0} --p-foreign-still 0.3 --p-quiet ${P_QUIET:-0.1} \
  --p-first-frame 0.2 --pool 1024 --refresh 256 --refresh-every 400 \
  --probe-every 5 --probe-clips 4 --save-every 200 --log-every 25 --export-every ${EXPORT_EVERY:-500} \
  --export-dtype fp16 --seed 19 --stop-at ${STOP_AT:-0} --out "$OUT"
