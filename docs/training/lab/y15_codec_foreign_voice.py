"""Y15: does the audio codec keep a foreign voice's onsets? espeak-ng sentences and the world's voice through the
bundled audio codec: onsets of the round trip against the original's (F1 +-1 frame), and the loudness-onset
correlation (a diagnosis for Y12)."""
import os, subprocess, sys, tempfile
sys.path.insert(0, os.getcwd())
import numpy as np
import torch
from harmony.controls import speech_scene
from harmony.media import read_audio, resample_audio
from harmony.metrics import audio_onset_strength, detect_audio_events, event_f1
from harmony.pipeline import HarmonyPipeline
from harmony.world import render
pipe = HarmonyPipeline.from_pretrained(None, log=lambda m: None)
sr, fps = pipe.sample_rate, pipe.fps
SENT = [("en-us", "Hello there, how are you doing today?"), ("en-gb", "The quick brown fox jumps over it."),
        ("de", "Guten Morgen, wie geht es dir heute?"), ("fr", "Bonjour, je suis content de vous voir.")]
tmp = tempfile.mkdtemp()
waves = {"world": [render(speech_scene(k)).wave for k in (1, 2, 3)], "espeak": []}
for i, (v, t) in enumerate(SENT):
    p = os.path.join(tmp, f"{i}.wav")
    subprocess.run(["espeak-ng", "-v", v, "-s", "140", "-w", p, t], check=True)
    w, r = read_audio(p)
    w = resample_audio(w.mean(0), r, sr)[: 3 * sr]
    waves["espeak"].append((0.5 * w / np.abs(w).max()).astype(np.float32))
for name, ws in waves.items():
    f1s, cors = [], []
    for w in ws:
        with torch.no_grad():
            rt = pipe.codecs.audio.decode(pipe.codecs.audio.encode(torch.as_tensor(w)[None]))[0].numpy()[: len(w)]
        a, b = detect_audio_events(w, sr, fps, 48), detect_audio_events(rt, sr, fps, 48)
        f1s.append(event_f1(a, b, 1 / fps + 1e-6))
        s1, s2 = audio_onset_strength(w, sr, fps, 48), audio_onset_strength(rt, sr, fps, 48)
        cors.append(np.corrcoef(s1, s2)[0, 1])
    print(f"{name:7} onsets kept through the codec F1 {np.mean(f1s):.2f}  onset-strength correlation {np.mean(cors):.2f}")
