#!/usr/bin/env bash
# The chain of CPU fine-tunes behind the bundled tiny model (issue 19; each stage is an entry of
# docs/training/experiments.md). Every stage starts from the previous stage's exported EMA weights
# and is skipped when its own export exists, so the chain resumes stage by stage (a stage itself
# resumes from OUT/<stage>/state.safetensors). Step counts replace the wall-time caps the notebook's
# runs had, so the learning-rate schedules follow steps here (the runs' followed minutes).
#
#   0. the H200 run (MODEL_CARD "How it was trained"), then recipe 1 (scripts/cpu_recipe.sh from it,
#      three parts, ~133 CPU minutes): committed as docs/training/recipe/harmony_tiny_recipe.safetensors.
#   1. recipe 2: per-task sigma, V2A and A2V rows at sigma ~1 beside the joint rows (1,200 steps).
#   2. F2: only the audio tower's partner path trains, on V2A rows at sigma ~1 (1,082 steps): the audio
#      starts to follow the video.
#   3. R1: every weight trains on all four tasks while the H200 model (docs/training/h200/, the bundled
#      model before R1), as a frozen teacher, tethers the joint rows (683 steps): T2AV gets its voice
#      pitch back, V2A keeps following the video (shipped in the third session).
#      R1 ran before the teacher skipped quiet clips; a rerun of this stage skips them (its 10 % quiet rows).
#   (The fourth session's runs S2-S9 continue from R1; none replaced it. Their commands are in the notebook.)
#
# Usage: bash scripts/cpu_chain.sh [OUT]      (about 2.5 hours of this 2-core CPU from stage 1)
#   env: PYTHON, THREADS
set -euo pipefail
OUT=${1:-runs/chain}
PY=${PYTHON:-python}
export OMP_NUM_THREADS=${THREADS:-2} OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
TEACHER=docs/training/h200/harmony_tiny.safetensors  # + its .text.safetensors
RECIPE1=docs/training/recipe/harmony_tiny_recipe.safetensors
mkdir -p "$OUT"

if [ ! -f "$OUT/recipe2/harmony_tiny.safetensors" ]; then
  INIT=$RECIPE1 STEPS=4000 STOP_AT=1200 SHIFT_A2V=1000 P_QUIET=0 PYTHON=$PY \
    bash scripts/cpu_recipe.sh 0 "$OUT/recipe2"
fi

if [ ! -f "$OUT/f2/harmony_tiny.safetensors" ]; then
  $PY -m harmony train --init-from "$OUT/recipe2/harmony_tiny.safetensors" \
    --trainable 'audio_model\..*(fusion|style)' --steps 1082 --lr 2e-3 --warmup 20 --ema 0.99 \
    --lambda-joint 0 --lambda-v 0 --lambda-i 0 --lambda-a 1 --shift-v2a 1000 --p-first-frame 0 \
    --seconds 2 --batch 16 --pool 1024 --refresh 256 --refresh-every 400 --export-every 200 \
    --export-dtype fp16 --seed 23 --out "$OUT/f2"
fi

if [ ! -f "$OUT/r1/harmony_tiny.safetensors" ]; then
  $PY -m harmony train --init-from "$OUT/f2/harmony_tiny.safetensors" --distill-from "$TEACHER" \
    --lambda-distill 2 --steps 683 --seconds 2 --batch 12 --lr 2e-4 --warmup 30 --ema 0.995 \
    --lambda-joint 1 --lambda-v 1 --lambda-a 1 --lambda-i 1 --driven-shift 20 --shift-v2a 1000 --shift-a2v 1000 \
    --p-foreign-still 0.3 --p-quiet 0.1 --p-first-frame 0.2 --pool 1024 --refresh 256 --refresh-every 400 \
    --probe-every 6 --probe-clips 4 --save-every 100 --log-every 25 --export-every 150 --export-dtype fp16 \
    --seed 23 --out "$OUT/r1"
fi

echo "chain done: $OUT/r1/harmony_tiny.safetensors (+ .text.safetensors)"
