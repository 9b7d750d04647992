#!/usr/bin/env bash
# The move of the bundled tiny model to a better video codec, on a CPU (issue 19 item 3; lab notebook
# docs/training/experiments.md, entries Q5, Q6, T1-T4, U1, W2-W6, X6-X12 and X14-X15). Every stage starts from the
# previous one's output and is skipped when that output exists, so the chain resumes stage by stage.
#
#   codec  (Q5, T1, T2) the video codec's encoder and decoder train on from the shipped pair: 11 minutes
#          on 200 clips (Q5), then 15 minutes on 3,000 fresh 1.5 s clips and 15 on 4,000 more (T1, T2). The
#          shipped codec had seen 200 scenes and did not generalise (30 dB on its training frames, 24 on
#          held-out ones); many short scenes close that gap. The audio codec is analytic and unchanged.
#   q6     the DiT's shared weights moved to the Q5 codec's latents (40 minutes; R1's recipe without its
#          teacher, which lives in the old latent space)
#   m1     ... and on to the final codec's latents (T3)
#   jobs   V2A's and I2AV's own blocks (harmony/job_weights.py), copied from the bundled file onto m1
#          (job-weights --jobs-from) and trained on their own rows in the new space (T4): V2A's audio
#          blocks on V2A rows at sigma ~1, half of them quiet (K5's rows); I2AV's video blocks on I2AV
#          rows with out-of-world stills (J3's rows)
#   t4     m1 plus both jobs' tensors and the tuned sampling settings: the bundled file's, but V2A's timing
#          anchor at st 1 (selection seeds in the new space, T4)
#   v2a_more  V2A's blocks 14 more minutes on t4 (U1)
#   w2     m1's shared weights 40 more minutes with the temporal term (--lambda-temporal 60), the text encoders
#          frozen (W2)
#   a2v    A2V's own video blocks on speech rows, sigma as A2V samples it, the temporal term (W3)
#   i2av_w2  I2AV's video blocks re-fit on w2's weights (W5)
#   file   w2's shared weights with each job's own blocks: V2A U1's audio blocks and m1's video tower, I2AV W5's,
#          A2V W3's; the tuned settings. The bundled model of the twelfth session: all nine input controls pass
#          held out (notebook W1-W6).
#   a2v_all, blend, resync, i2av_t, bundled  the thirteenth session's A2V blocks, T2AV's resync pass and I2AV's
#          blocks with the temporal term (below; notebook X1-X15): the bundled model since then (MODEL_CARD.md).
#
# Usage: bash scripts/codec_move.sh [OUT]      (about 5 hours of this 2-core CPU)
#   env: PYTHON, THREADS
set -euo pipefail
OUT=${1:-runs/move}
PY=${PYTHON:-python}
THREADS=${THREADS:-2}
export OMP_NUM_THREADS=$THREADS OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
mkdir -p "$OUT/premove"
# the chain starts from the model and codecs bundled before the move (their last commit on main: 6e49128)
PREMOVE=${PREMOVE:-6e49128}
for f in harmony_tiny.safetensors harmony_tiny.text.safetensors tiny_codecs.safetensors; do
  [ -f "$OUT/premove/$f" ] || git show "$PREMOVE:harmony/assets/$f" > "$OUT/premove/$f"
done
BUNDLED=$OUT/premove/harmony_tiny.safetensors

codec() {  # codec NAME INIT ARGS...: train OUT/NAME/tiny_codecs.safetensors from INIT unless it exists
  local name=$1 init=$2; shift 2
  [ -f "$OUT/$name/tiny_codecs.safetensors" ] || $PY -m harmony.codecs train --init "$init" \
    --out "$OUT/$name/tiny_codecs.safetensors" --threads "$THREADS" --watch-every 250 "$@"
}
codec q5 "$OUT/premove/tiny_codecs.safetensors" --minutes 11 --clips 200 --seed-offset 1000 --lr 1e-3 --colour-weight 10
codec t1 "$OUT/q5/tiny_codecs.safetensors" --minutes 15 --clips 3000 --seconds 1.5 --seed-offset 3000 --lr 1e-3 \
  --colour-weight 10
codec t2 "$OUT/t1/tiny_codecs.safetensors" --minutes 15 --clips 4000 --seconds 1.5 --seed-offset 6000 --lr 7e-4 \
  --colour-weight 10
CODECS=$OUT/t2/tiny_codecs.safetensors

ROWS="--seconds 2 --batch 12 --lr 2e-4 --warmup 30 --ema 0.995 --lambda-joint 1 --lambda-v 1 --lambda-a 1
  --lambda-i 1 --driven-shift 20 --shift-v2a 1000 --shift-a2v 1000 --p-foreign-still 0.3 --p-quiet 0.1
  --p-first-frame 0.2 --pool 1024 --refresh 256 --refresh-every 400 --save-every 200 --export-every 300
  --export-dtype fp16 --workers 1"
stage() {  # stage NAME INIT ARGS...: train OUT/NAME from INIT unless its export exists
  local name=$1 init=$2; shift 2
  [ -f "$OUT/$name/harmony_tiny.safetensors" ] || $PY -m harmony train --init-from "$init" "$@" --out "$OUT/$name"
}
# shellcheck disable=SC2086
stage q6 "$BUNDLED" --other-codecs 1 --codecs "$OUT/q5/tiny_codecs.safetensors" --max-minutes 40 --steps 5000 \
  $ROWS --seed 29
# shellcheck disable=SC2086
stage m1 "$OUT/q6/harmony_tiny.safetensors" --other-codecs 1 --codecs "$CODECS" --max-minutes 40 --steps 5000 \
  $ROWS --seed 31

# --- jobs' own weights in the new space ------------------------------------------------------------
mkdir -p "$OUT/m1_jobs"
[ -f "$OUT/m1_jobs/harmony_tiny.safetensors" ] || $PY -m harmony job-weights "$OUT/m1/harmony_tiny.safetensors" \
  "$OUT/m1_jobs/harmony_tiny.safetensors" --jobs-from "$BUNDLED"
POOL="--codecs $CODECS --seconds 2 --batch 16 --pool 1024 --refresh 256 --refresh-every 400 --export-dtype fp16"
V2A_ROWS="--lambda-joint 0 --lambda-v 0 --lambda-i 0 --lambda-a 1 --shift-v2a 1000 --p-first-frame 0 --p-drop-text 0.5
  --p-quiet 0.5"
I2AV_ROWS="--lambda-joint 0 --lambda-v 0 --lambda-i 1 --lambda-a 0 --p-foreign-still 0.3 --p-first-frame 0 --p-quiet 0.3
  --p-drop-text 0.1"
# shellcheck disable=SC2086
stage v2a "$OUT/m1_jobs/harmony_tiny.safetensors" --init-job V2A --trainable 'audio_model\.blocks\.' \
  --max-minutes 12 --steps 2000 --lr 1e-4 --warmup 20 --ema 0.995 $V2A_ROWS $POOL --export-every 150 --seed 81
# shellcheck disable=SC2086
stage i2av "$OUT/m1_jobs/harmony_tiny.safetensors" --init-job I2AV --trainable 'video_model\.blocks\.' \
  --max-minutes 12 --steps 2000 --lr 3e-4 --warmup 20 --ema 0.99 $I2AV_ROWS $POOL --export-every 150 --seed 83

TUNED="--tuned I2AV:sv=2 --tuned A2V:shift=1,st=1 --tuned V2A:st=1"
mkdir -p "$OUT/t4"
# shellcheck disable=SC2086
[ -f "$OUT/t4/harmony_tiny.safetensors" ] || $PY -m harmony job-weights "$OUT/m1/harmony_tiny.safetensors" \
  "$OUT/t4/harmony_tiny.safetensors" --job V2A="$OUT/v2a/harmony_tiny.safetensors" \
  --job I2AV="$OUT/i2av/harmony_tiny.safetensors" --only '(audio|video)_model\.blocks\.' $TUNED
# V2A's blocks 14 more minutes on the same rows (U1): the still lamp and the flash pass held out at the export of
# step 750, picked on selection seeds 10-25
# shellcheck disable=SC2086
stage v2a_more "$OUT/t4/harmony_tiny.safetensors" --init-job V2A --trainable 'audio_model\.blocks\.' \
  --max-minutes 14 --steps 5000 --lr 1e-4 --warmup 20 --ema 0.995 $V2A_ROWS $POOL --export-every 150 --seed 91
# --- the twelfth session (notebook W2-W5) ---------------------------------------------------------------
# w2: m1's shared weights 40 more minutes with the temporal term; --trainable '.' keeps the text encoders frozen,
#     so the jobs' own weights still fit
# shellcheck disable=SC2086
stage w2 "$OUT/m1/harmony_tiny.safetensors" --codecs "$CODECS" --max-minutes 40 --steps 5000 $ROWS --export-every 150 \
  --workers 0 --seed 33 --lambda-temporal 60 --trainable '.'
# a2v (W3): A2V's own video blocks on speech rows, sigma as A2V samples it (shift 1), the temporal term; step 600
# shellcheck disable=SC2086
stage a2v "$OUT/w2/harmony_tiny.safetensors" --trainable 'video_model\.blocks\.' --max-minutes 14 --steps 5000 \
  --lr 3e-4 --warmup 20 --ema 0.99 --lambda-joint 0 --lambda-v 1 --lambda-i 0 --lambda-a 0 --shift-a2v 1 \
  --p-first-frame 0 --p-quiet 0.3 --p-drop-text 0.1 --split speech --lambda-temporal 60 $POOL --workers 0 \
  --export-every 150 --seed 95
# each job keeps only the blocks it trained
ONLY=(--only 'V2A=audio_model\.blocks\.' --only 'I2AV=video_model\.blocks\.' --only 'A2V=video_model\.blocks\.')
mkdir -p "$OUT/w3"
# shellcheck disable=SC2086
[ -f "$OUT/w3/harmony_tiny.safetensors" ] || $PY -m harmony job-weights "$OUT/w2/harmony_tiny.safetensors" \
  "$OUT/w3/harmony_tiny.safetensors" --job V2A="$OUT/v2a_more/ema_step750.safetensors" \
  --job I2AV="$OUT/i2av/harmony_tiny.safetensors" --job A2V="$OUT/a2v/ema_step600.safetensors" "${ONLY[@]}" $TUNED
# I2AV's video blocks re-fit on W2's weights (W5; it ran at one thread beside W4, a V2A re-fit not kept): step 900
# shellcheck disable=SC2086
OMP_NUM_THREADS=1 stage i2av_w2 "$OUT/w3/harmony_tiny.safetensors" --init-job I2AV --trainable 'video_model\.blocks\.' \
  --max-minutes 14 --steps 5000 --lr 3e-4 --warmup 20 --ema 0.99 $I2AV_ROWS $POOL --workers 0 --export-every 150 \
  --seed 99
# the shipped file: W2's shared weights; V2A computes with U1's audio blocks and m1's video blocks (the tower its
# audio blocks were trained to read; W4 re-fit them on W2's video tower and the still lamp got sounds), I2AV with
# W5's video blocks, A2V with W3's
# shellcheck disable=SC2086
$PY -m harmony job-weights "$OUT/w2/harmony_tiny.safetensors" "$OUT/harmony_tiny.safetensors" \
  --job V2A="$OUT/v2a_more/ema_step750.safetensors" --job I2AV="$OUT/i2av_w2/ema_step900.safetensors" \
  --job A2V="$OUT/a2v/ema_step600.safetensors" --only 'V2A=(audio|video)_model\.blocks\.' \
  --only 'I2AV=video_model\.blocks\.' --only 'A2V=video_model\.blocks\.' $TUNED
cp "$CODECS" "$OUT/tiny_codecs.safetensors"
echo "move done: $OUT/harmony_tiny.safetensors (+ .text.safetensors) with $OUT/tiny_codecs.safetensors"

# --- the thirteenth session: the resync pass (notebook X1-X12) ---------------------------------------
# a2v_all  A2V's video blocks 14 more minutes from W3's on every split, a third of the rows with the first frame
#          held too (--p-first-frame-a2v: A2V from an image), the temporal term (X6); step 900
# blend    0.7 x W3's blocks + 0.3 x X6's (WiSE-FT, scripts/blend_weights.py; X12): W3 alone shifts the
#          colours of every scene it did not train on when it re-times T2AV's picture, X6 alone loses some
#          of A2V's lip-sync (speech control 0.82 on selection seeds)
# resync   the moved file with those A2V blocks, and T2AV's resync pass at 0.2 (sampling.sample): T2AV's
#          picture sampled again as A2V from its own generated sound over the last fifth of the schedule
# shellcheck disable=SC2086
stage a2v_all "$OUT/harmony_tiny.safetensors" --init-job A2V --trainable 'video_model\.blocks\.' --max-minutes 14 \
  --steps 5000 --lr 3e-4 --warmup 20 --ema 0.99 --lambda-joint 0 --lambda-v 1 --lambda-i 0 --lambda-a 0 \
  --shift-a2v 1 --p-first-frame 0 --p-first-frame-a2v 0.3 --p-quiet 0.3 --p-drop-text 0.1 --lambda-temporal 60 \
  $POOL --workers 0 --export-every 150 --seed 96
mkdir -p "$OUT/blend" "$OUT/resync"
[ -f "$OUT/blend/harmony_tiny.safetensors" ] || $PY scripts/blend_weights.py "$OUT/harmony_tiny.safetensors" \
  "$OUT/a2v_all/ema_step900.safetensors" "$OUT/blend/harmony_tiny.safetensors" --a-job A2V --weight 0.7 \
  --only 'video_model\.blocks\.'
# shellcheck disable=SC2086
$PY -m harmony job-weights "$OUT/w2/harmony_tiny.safetensors" "$OUT/resync/harmony_tiny.safetensors" \
  --jobs-from "$OUT/harmony_tiny.safetensors" --job A2V="$OUT/blend/harmony_tiny.safetensors" \
  --only 'A2V=video_model\.blocks\.' $TUNED --tuned T2AV:resync=0.2
# i2av_t  I2AV's video blocks 14 more minutes from the resync file's, with the temporal term (X14); step 1200 (X15)
# shellcheck disable=SC2086
stage i2av_t "$OUT/resync/harmony_tiny.safetensors" --init-job I2AV --trainable 'video_model\.blocks\.' \
  --max-minutes 14 --steps 5000 --lr 3e-4 --warmup 20 --ema 0.99 $I2AV_ROWS --lambda-temporal 60 $POOL --workers 0 \
  --export-every 150 --seed 97
mkdir -p "$OUT/bundled"
# shellcheck disable=SC2086
$PY -m harmony job-weights "$OUT/w2/harmony_tiny.safetensors" "$OUT/bundled/harmony_tiny.safetensors" \
  --jobs-from "$OUT/resync/harmony_tiny.safetensors" --job I2AV="$OUT/i2av_t/ema_step1200.safetensors" \
  --only 'I2AV=video_model\.blocks\.' $TUNED --tuned T2AV:resync=0.2
echo "done: $OUT/bundled/harmony_tiny.safetensors (+ .text.safetensors) with $OUT/tiny_codecs.safetensors"
