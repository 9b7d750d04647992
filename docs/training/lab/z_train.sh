# z_train.sh OUT SEED [FLAGS...]: A2V's own video blocks, 14 CPU minutes from the bundled file's, on 2 s clips
# (the thirteenth session's a2v_all recipe, scripts/codec_move.sh); FLAGS choose the data: the rendered world pool
# with a speech variant (--pool 1024 --refresh 256 --refresh-every 400 --p-quiet 0.3 --p-connected 0.5) or a saved
# pool (--latents FILE, z11_flite_pool.py). Then: bash docs/training/lab/z_candidate.sh OUT/ema_stepN.safetensors NAME
set -e
out=$1 seed=$2
shift 2
.venv/bin/python -m harmony train --init-from harmony/assets/harmony_tiny.safetensors --init-job A2V \
  --trainable 'video_model\.blocks\.' --max-minutes 14 --steps 5000 --lr 3e-4 --warmup 20 --ema 0.99 \
  --lambda-joint 0 --lambda-v 1 --lambda-i 0 --lambda-a 0 --shift-a2v 1 --p-first-frame 0 --p-first-frame-a2v 0.3 \
  --p-drop-text 0.1 --lambda-temporal 60 --seconds 2 --batch 16 --workers 0 --export-every 150 --export-dtype fp16 \
  --seed "$seed" --out "$out" "$@"
