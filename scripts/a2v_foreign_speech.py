"""A2V driven by speech nobody here made: espeak-ng sentences (a lab check, issue 19).

The world's voices are glottal pulses through formants made by ``harmony.world``; this drives
the bundled model's A2V with a text-to-speech engine's voice instead (``espeak-ng``, a Debian /
Homebrew package; not a dependency of the pack) and measures, on the decoded video, whether the
mouth moves with the syllables: F1 (+-1 frame) of the generated video's events against the TTS
audio's own events (``harmony.metrics.detect_audio_events``), and the SyncNet-style offset and
confidence. The floor pairs each generated video with *another* sentence's audio.

    python scripts/a2v_foreign_speech.py --seeds 0,1 -o docs/training/lab/p3_a2v_espeak.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import wave as wavfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SENTENCES = ("hello there, how are you today?", "the quick brown fox jumps over it.",
             "one, two, three, four, five.", "please call my sister on monday.",
             "we like to make small movies.", "open the door and walk inside.")
SECONDS = 3.0


def espeak(text: str, rate: int) -> tuple[np.ndarray, int]:
    """``(mono float32 wave, sample rate)`` of ``text`` spoken by espeak-ng (English)."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "s.wav")
        subprocess.run(["espeak-ng", "-v", "en", "-s", str(rate), "-w", path, text], check=True)
        with wavfile.open(path, "rb") as f:
            sr, n, width = f.getframerate(), f.getnframes(), f.getsampwidth()
            pcm = np.frombuffer(f.readframes(n), dtype={2: np.int16, 4: np.int32}[width])
    w = pcm.astype(np.float32) / float(np.iinfo(pcm.dtype).max)
    n = int(SECONDS * sr)
    w = np.pad(w[:n], (0, max(0, n - len(w))))
    return 0.5 * w / max(float(np.abs(w).max()), 1e-6), sr


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rate", type=int, default=150, help="espeak-ng words per minute")
    ap.add_argument("--st", type=float, default=None, help="timing anchor scale (default: the model file's)")
    ap.add_argument("-o", "--output", default=None)
    args = ap.parse_args(argv)
    if shutil.which("espeak-ng") is None:
        sys.exit("needs espeak-ng (apt install espeak-ng / brew install espeak-ng)")
    from harmony import controls as C
    from harmony.batch_generate import generate_batch
    from harmony.metrics import av_offset, detect_audio_events, detect_visual_events, event_f1
    from harmony.pipeline import HarmonyPipeline

    pipe = HarmonyPipeline.from_pretrained(log=lambda m: None)
    fps = float(pipe.fps)
    seeds = [int(s) for s in args.seeds.split(",")]
    speech = [espeak(t, args.rate) for t in SENTENCES]
    face = C.speech_scene(1)  # a held-out speech scene's texts: a face on a wall, talking
    order = [(i, s) for i in range(len(SENTENCES)) for s in seeds]
    out = generate_batch(pipe, "A2V", [(face.prompt, face.audio_caption, SENTENCES[i]) for i, _ in order],
                         [s for _, s in order], seconds=SECONDS, steps=args.steps, st=args.st,
                         driving_audio=[(speech[i][0][None], speech[i][1]) for i, _ in order])
    n_frames = int(SECONDS * fps)
    truth = [detect_audio_events(w, sr, fps, n_frames) for w, sr in speech]
    rows = []
    for (i, s), (frames, _) in zip(order, out):
        ev = detect_visual_events(frames, fps)
        j = (i + 1) % len(SENTENCES)                                  # another sentence's audio: the floor
        off, conf = av_offset(frames, fps, *speech[i])
        _, conf_other = av_offset(frames, fps, *speech[j])
        rows.append({"sentence": SENTENCES[i], "seed": s, "audio_events": len(truth[i]), "video_events": len(ev),
                     "f1": event_f1(ev, truth[i], 1 / fps + 1e-6), "f1_other": event_f1(ev, truth[j], 1 / fps + 1e-6),
                     "offset_s": off, "confidence": conf, "confidence_other": conf_other})
        print(" ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in rows[-1].items()))
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("f1", "f1_other", "confidence", "confidence_other")}
    mean["abs_offset_s"] = float(np.mean([abs(r["offset_s"]) for r in rows]))
    print("mean:", " ".join(f"{k} {v:.3f}" for k, v in mean.items()))
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"command": "python scripts/a2v_foreign_speech.py " + " ".join(argv or sys.argv[1:]),
                       "rows": rows, "mean": mean}, f, indent=1)


if __name__ == "__main__":
    main()
