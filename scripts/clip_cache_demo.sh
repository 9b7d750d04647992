#!/usr/bin/env bash
# The real-clip cache end to end on a CPU (docs/training/real_clips.md quotes its numbers):
#   1. a clip folder: 6 mp4 clips made by the bundled model (`generate`, 64x64 at 16 fps, 16 kHz,
#      3 s) with .json / .csv sidecars, and 4 bad files: a clip with its audio stripped, a 1 s clip
#      (too short for --seconds 2), random bytes named .mp4, a sidecar without its transcript;
#   2. the Wan2.2 VAE, MMAudio VAE and umT5 as tiny random files in their real layouts
#      (tests/realfiles.write_ovi_ckpts: no real weights are downloaded here);
#   3. encode-clips under torchrun, 2 processes (rank r encodes every 2nd clip);
#   4. train 20 steps on the cache (a reduced 5b-global model whose text width is the tiny umT5's).
# Usage: bash scripts/clip_cache_demo.sh [OUT]      (env PYTHON, THREADS)
set -euo pipefail
OUT=${1:-runs/clip_cache_demo}
PY=${PYTHON:-python}
export OMP_NUM_THREADS=${THREADS:-1}
rm -rf "$OUT" && mkdir -p "$OUT/clips/kitchen"
CLIPS="$OUT/clips"

prompts=("a small red ball bounces twice on the left. plain blue background."
         "a green square slides to the right. plain black background."
         "a yellow ball bounces once in the middle. plain white background."
         "a person says hello. plain grey background."
         "a blue ball bounces three times on the right. plain red background."
         "a small red ball rolls left. plain green background.")
captions=("two high thuds." "a soft hum." "one low thud." "speech." "three thuds." "a rolling rumble.")
transcripts=("" "" "" "ba lo mi" "" "")
for i in 0 1 2 3 4 5; do
  dir="$CLIPS"; [ "$i" -ge 4 ] && dir="$CLIPS/kitchen"  # clips are found in sub-folders too
  "$PY" -m harmony generate "${prompts[$i]}" --caption "${captions[$i]}" --transcript "${transcripts[$i]}" \
    --seconds 3 --seed "$i" --steps 10 -o "$dir/clip$i.mp4" >/dev/null 2>&1
  "$PY" - "$dir/clip$i" "${prompts[$i]}" "${captions[$i]}" "${transcripts[$i]}" "$i" <<'EOF'
import csv, json, sys
stem, prompt, caption, transcript, i = sys.argv[1:]
row = {"prompt": prompt, "caption": caption, "transcript": transcript}
if int(i) % 2:  # odd clips: a one-row CSV sidecar; even clips: JSON
    with open(stem + ".csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(row)); w.writeheader(); w.writerow(row)
else:
    json.dump(row, open(stem + ".json", "w"))
EOF
done
FFMPEG=$("$PY" -c "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())")
"$FFMPEG" -v error -i "$CLIPS/clip0.mp4" -an -c copy "$CLIPS/silent.mp4"; cp "$CLIPS/clip0.json" "$CLIPS/silent.json"
"$PY" -m harmony generate "a yellow ball bounces once. plain black background." --caption "one thud." \
  --seconds 1 --steps 10 -o "$CLIPS/short.mp4" >/dev/null 2>&1; cp "$CLIPS/clip0.json" "$CLIPS/short.json"
head -c 20000 /dev/urandom > "$CLIPS/broken.mp4"; cp "$CLIPS/clip0.json" "$CLIPS/broken.json"
cp "$CLIPS/clip0.mp4" "$CLIPS/notranscript.mp4"
echo '{"prompt": "a small red ball bounces.", "caption": "two thuds."}' > "$CLIPS/notranscript.json"

"$PY" -c "import sys; sys.path.insert(0, 'tests'); from realfiles import write_ovi_ckpts; write_ovi_ckpts('$OUT/ckpts')"
W="$OUT/ckpts/Wan2.2-TI2V-5B"; M="$OUT/ckpts/MMAudio/ext_weights"
start=$(date +%s.%N)
"$PY" -m torch.distributed.run --nproc_per_node 2 -m harmony encode-clips "$CLIPS" --out "$OUT/cache" \
  --video-vae "$W/Wan2.2_VAE.pth" --audio-vae "$M/v1-16.pth" --text-encoder "$W/models_t5_umt5-xxl-enc-bf16.pth" \
  --seconds 2 --size 64x64
echo "encode-clips wall time (torchrun, 2 processes): $("$PY" -c "import time; print(round(time.time() - $start, 1))") s"
"$PY" - "$OUT/cache/index.json" <<'EOF'
import json, sys
ix = json.load(open(sys.argv[1]))
print(f"index: {ix['encoded']} clips encoded, {ix['skipped_count']} skipped {ix['skipped_by_kind']}, "
      f"per-rank wall s {ix['wall_s_per_rank']}")
for s in ix["skipped"]:
    print(f"  skipped {s['file']}: {s['reason']}")
EOF
du -sh "$OUT/cache"

"$PY" -m harmony train --clip-cache "$OUT/cache" --config 5b-global \
  --overrides dim=64,ffn_dim=128,num_heads=2,num_layers=2,text_dim=32 --steps 20 --batch 4 --warmup 5 \
  --log-every 5 --out "$OUT/train" 2>&1 | grep -v "it/s\]" | tail -3
cat "$OUT/train/train_log.jsonl"
