#!/usr/bin/env bash
# Issue 11 item 8 on a lent GPU: `python -m harmony bench --shape real` at FULL depth (30 layers per tower,
# random weights filled in place, never a download) at Ovi's real token counts (5 s at 704x704: 31x22x22 =
# 15,004 video tokens, 157 audio tokens, 512x4096 text rows), then the memory plan. Fits in 8 minutes.
# Usage (repo root on the accelerator machine): OUT=/some/dir bash scripts/device_bench.sh
# Knobs: RESIDENT (layers kept on the GPU under block swap, default 4), REPEATS (default 3), PYTHON.
# Writes: $OUT/gpu.txt, $OUT/bench_real_gpu.txt (rows: bf16 / fp8 / fp8 + block swap, plain CFG batch 2 vs
#         SyncCFG batch 3, s/step, GFLOP/s, peak GiB), $OUT/memory_plan.txt, $OUT/bench_multi_gpu.txt (the bf16
#         rows under torchrun --nproc_per_node 2/4/8 on a machine with that many GPUs; otherwise one 'skipped' line)
# Expected: model build < 1 min, one SyncCFG step ~1-3 s on an H100/H200 (about 720 TFLOP), 6 rows x
# (1 warm-up + REPEATS) steps well under 5 min; the memory plan is shapes only (~1 min of CPU).
set -uo pipefail
OUT=${OUT:-runs/device_bench}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
RESIDENT=${RESIDENT:-4}
REPEATS=${REPEATS:-3}
start=$(date +%s)
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())" \
    | tee -a "$OUT/gpu.txt"
timeout 330 $PY -m harmony bench --shape real --devices cuda --layers 30 --repeats "$REPEATS" --warmup 1 \
    --resident "$RESIDENT" --no-plan 2>&1 | tee "$OUT/bench_real_gpu.txt"
echo "rows: exit ${PIPESTATUS[0]} after $(( $(date +%s) - start )) s" | tee -a "$OUT/bench_real_gpu.txt"
left=$(( 470 - ($(date +%s) - start) ))
if [ "$left" -gt 30 ]; then
    timeout "$left" $PY -m harmony bench --plan --resident "$RESIDENT" 2>&1 | tee "$OUT/memory_plan.txt"
else
    echo "no time left for the memory plan (it needs no GPU: run 'python -m harmony bench --plan' anywhere)" \
        | tee "$OUT/memory_plan.txt"
fi
# Multi-GPU rows (issue 24 item 6): the same timing command under torchrun --nproc_per_node N, the video tokens
# split across the N GPUs (harmony.parallel, docs/parallel.md). Only on a machine with 2+ GPUs; nothing depends
# on them. Knobs: MULTI_GPU_NPROCS (default: 2 4 8, each <= the GPU count), MULTI_GPU_SECONDS (per N, default 240).
ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
if [ "${ngpu:-0}" -lt 2 ]; then
    echo "multi-GPU rows skipped: ${ngpu:-0} GPU(s) on this machine, sequence parallel needs 2 or more" \
        | tee "$OUT/bench_multi_gpu.txt"
else
    : > "$OUT/bench_multi_gpu.txt"
    for n in ${MULTI_GPU_NPROCS:-2 4 8}; do
        if [ "$n" -gt "$ngpu" ]; then
            echo "torchrun --nproc_per_node $n: skipped, $ngpu GPUs here" | tee -a "$OUT/bench_multi_gpu.txt"
            continue
        fi
        timeout "${MULTI_GPU_SECONDS:-240}" $PY -m torch.distributed.run --standalone --nproc_per_node "$n" \
            -m harmony bench --shape real --devices cuda --layers 30 --repeats "$REPEATS" --warmup 1 \
            --rows bf16-cfg,bf16-sync --no-plan 2>&1 | tee -a "$OUT/bench_multi_gpu.txt"
        echo "torchrun --nproc_per_node $n: exit ${PIPESTATUS[0]}" | tee -a "$OUT/bench_multi_gpu.txt"
    done
fi
echo "total $(( $(date +%s) - start )) s"
ls -la "$OUT"
