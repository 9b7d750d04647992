#!/usr/bin/env bash
# Train the bundled tiny Harmony on a GPU machine and benchmark there, in one run.
# Usage (on the accelerator machine, repo root): OUT=/some/dir bash scripts/device_train.sh [MINUTES]
# Extra trainer flags via TRAIN_ARGS, e.g. the issue-10 task mix (docs/training/issue10_cause.md):
#   TRAIN_ARGS="--lambda-i 1 --lambda-a 1 --lambda-v 1" (add --init-from FILE to fine-tune)
# Writes: $OUT/harmony_tiny.safetensors (+ .text.safetensors), train_log.jsonl,
#         train_summary.json, train.log, bench_gpu.txt
set -uo pipefail
MINUTES=${1:-6}
OUT=${OUT:-runs/device}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
$PY -m harmony train --steps 200000 --max-minutes "$MINUTES" --batch 64 --lr 5e-4 --warmup 300 \
    --pool 12288 --refresh 0 --refresh-every 1000000000 --workers 15 --save-every 1000000000 \
    --log-every 100 --export-dtype fp16 ${TRAIN_ARGS:-} --out "$OUT/run" 2>&1 | tr '\r' '\n' | grep -v '^ *[0-9]*%|' | tee "$OUT/train.log"
cp "$OUT/run/harmony_tiny.safetensors" "$OUT/run/harmony_tiny.text.safetensors" \
   "$OUT/run/train_log.jsonl" "$OUT/run/train_summary.json" "$OUT/" 2>/dev/null
rm -rf "$OUT/run"
timeout 150 $PY -m harmony bench --repeats 5 --devices cuda 2>&1 | tee "$OUT/bench_gpu.txt"
ls -la "$OUT"
