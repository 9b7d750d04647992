"""Y12: A2V driven by a voice nobody here made (espeak-ng, a formant speech synthesiser, several voices and
languages), against the world's own voice. The mouth's events (visual onsets) against the driving audio's onsets
(F1 at +-1 frame) and the sync confidence / offset of picture and sound; floor: each picture against the next
clip's audio. Needs the `espeak-ng` program (Debian package espeak-ng); a lab check, not a test."""
import os, subprocess, sys, tempfile, time
sys.path.insert(0, os.getcwd())
import numpy as np
import torch
torch.set_num_threads(2)
from harmony.batch_generate import generate_batch
from harmony.controls import speech_scene
from harmony.media import read_audio, resample_audio
from harmony.metrics import av_offset, detect_audio_events, detect_visual_events, event_f1
from harmony.pipeline import HarmonyPipeline
from harmony.world import render

SENTENCES = [("en-us", "Hello there, how are you doing today?"), ("en-gb", "The quick brown fox jumps over it."),
             ("en-us+f3", "Please call Stella, ask her to bring these."), ("de", "Guten Morgen, wie geht es dir heute?"),
             ("fr", "Bonjour, je suis content de vous voir."), ("es", "Buenos dias, me llamo Pedro y tengo hambre.")]
SEEDS = [10, 11]
SLOW = [("en-us", "ba. da. ma. pa. ta."), ("en-gb", "go. no. so. to. lo."), ("de", "ja. nein. gut. da. so."),
        ("en-us+f3", "me. you. we. see. do.")]
pipe = HarmonyPipeline.from_pretrained(os.environ.get("MODEL") or None, log=lambda m: None)
sr, fps = pipe.sample_rate, pipe.fps
base = render(speech_scene(1))
tmp = tempfile.mkdtemp()
def espeak(sentences, *opts):
  waves = []
  for i, (voice, text) in enumerate(sentences):
    path = os.path.join(tmp, f"{i}.wav")
    subprocess.run(["espeak-ng", "-v", voice, *opts, "-w", path, text], check=True)
    w, r = read_audio(path)
    w = resample_audio(np.asarray(w, np.float32).mean(0) if np.ndim(w) == 2 else np.asarray(w, np.float32), r, sr)
    n = int(3.0 * sr)
    w = np.pad(w, (0, max(0, n - len(w))))[:n]
    waves.append(0.5 * w / (np.abs(w).max() + 1e-9))
  return waves
from harmony.world import running
drives = [("world", [render(speech_scene(k)).wave for k in (1, 2, 3)]),
          ("running", [render(running(speech_scene(k))).wave for k in (1, 2, 3)]), ("espeak", espeak(SENTENCES, "-s", "140")),
          ("slow", espeak(SLOW, "-s", "90", "-g", "25"))]
if len(sys.argv) > 1:
    drives = [d for d in drives if d[0] in sys.argv[1].split(",")]
for name, ws in drives:
    items = [(w, s) for w in ws for s in SEEDS]
    t0 = time.time()
    out = generate_batch(pipe, "A2V", [(base.prompt, base.audio_caption, "")] * len(items), [s for _, s in items],
                         driving_audio=[(w[None], sr) for w, _ in items])
    f1, conf, off, f1_floor, conf_floor = [], [], [], [], []
    for j, ((frames, _), (w, s)) in enumerate(zip(out, items)):
        a_ev = detect_audio_events(w, sr, fps, num_frames=len(frames))
        v_ev = detect_visual_events(frames, fps)
        f1.append(event_f1(a_ev, v_ev, 1 / fps + 1e-6))
        o, c = av_offset(frames, fps, w, sr)
        conf.append(c); off.append(abs(o))
        w2 = items[(j + len(SEEDS)) % len(items)][0]  # another clip's audio
        f1_floor.append(event_f1(detect_audio_events(w2, sr, fps, num_frames=len(frames)), v_ev, 1 / fps + 1e-6))
        conf_floor.append(av_offset(frames, fps, w2, sr)[1])
    print(f"{name:7} n={len(items):2} F1 mouth vs voice {np.mean(f1):.2f} (other clip's voice {np.mean(f1_floor):.2f}) | "
          f"sync conf {np.mean(conf):.2f} (other {np.mean(conf_floor):.2f}) | |offset| {np.mean(off):.3f} s "
          f"| per clip F1 {' '.join(f'{x:.2f}' for x in f1)} ({time.time() - t0:.0f} s)", flush=True)
