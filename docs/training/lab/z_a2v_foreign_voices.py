"""Z: A2V driven by voices nobody here made: espeak-ng (a formant synthesiser; six voices and languages) and
flite (CMU diphone and statistical voices: kal16, awb, rms, slt), against the world's two voices (Y12 plus flite
and the second synthesiser, world.connected). The mouth's events (visual onsets) against the driving audio's onsets
(F1 at +-1 frame) and the sync confidence / offset of picture and sound; floor: each picture against the next
clip's audio. Needs the programs `espeak-ng` and `flite` (Debian packages of those names); a lab check, not a test.

    [MODEL=file] [GAIN=g] [ORACLE=1] python docs/training/lab/z_a2v_foreign_voices.py [world,connected,...]

GAIN scales the foreign voices; ORACLE=1 scores mouths laid on the voice itself (the metrics' ceiling, no model)."""
import copy, os, subprocess, sys, tempfile, time
sys.path.insert(0, os.getcwd())
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np
import torch
torch.set_num_threads(2)
from harmony.batch_generate import generate_batch
from harmony.controls import speech_scene
from harmony.media import read_audio, resample_audio
from harmony.metrics import av_offset, detect_audio_events, detect_visual_events, envelope_sync, event_f1
from harmony.pipeline import HarmonyPipeline
from harmony.world import connected, render, running
from harmony.world.video import render_frames
from z11_flite_pool import loud_syllables, vowel_syllables

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
FLITE = [("kal16", "Hello there, how are you doing today?"), ("awb", "The quick brown fox jumps over it."),
         ("rms", "Please call Stella, ask her to bring these."), ("slt", "I would like a cup of tea, thank you."),
         ("kal16", "We went down to the river this morning."), ("slt", "Nobody knows where the time has gone.")]


FLITE_PHONES = []  # per flite sentence: (phone, start s, end s)


def synthesise(sentences, *opts, program="espeak-ng"):
    """3 s waves at the pipeline's rate, peak 0.5, from espeak-ng (voice, text) or flite (voice, text)."""
    waves = []
    for i, (voice, text) in enumerate(sentences):
        path = os.path.join(tmp, f"{i}.wav")
        if program == "flite":  # with its segments' end times (the phone oracle's vowels)
            out = subprocess.run(["flite", "-voice", voice, "-psdur", "-t", text, "-o", path], check=True,
                                 capture_output=True, text=True).stdout.split()
            ends = [(p.rsplit(":", 1)[0], float(p.rsplit(":", 1)[1])) for p in out]
            FLITE_PHONES.append([(p, a, b) for (p, b), a in zip(ends, [0.0] + [e for _, e in ends[:-1]])])
        else:
            subprocess.run(["espeak-ng", "-v", voice, *opts, "-w", path, text], check=True)
        w, r = read_audio(path)
        w = np.asarray(w, np.float32)
        w = resample_audio(w.mean(0) if w.ndim == 2 else w, r, sr)
        n = int(3.0 * sr)
        w = np.pad(w, (0, max(0, n - len(w))))[:n]
        waves.append(0.5 * w / (np.abs(w).max() + 1e-9))
    return waves


drives = [("world", [render(speech_scene(k)).wave for k in (1, 2, 3)]),
          ("connected", [render(connected(speech_scene(k))).wave for k in (1, 2, 3)]),
          ("flite", synthesise(FLITE, program="flite")),
          ("running", [render(running(speech_scene(k))).wave for k in (1, 2, 3)]),
          ("espeak", synthesise(SENTENCES, "-s", "140")),
          ("slow", synthesise(SLOW, "-s", "90", "-g", "25"))]


def rise_conf(frames, w):
    """av_offset's confidence with the voice's loudness rises (positive change of the frame log-rms, a syllable
    nucleus starting) in place of its spectral-flux onsets: the world's mouth rule (it opens as a vowel starts)."""
    from harmony.metrics import _zscore, visual_event_strength
    v = _zscore(visual_event_strength(frames, fps))
    hop = int(sr // fps)
    lr = np.log(np.array([np.sqrt(np.mean(w[i * hop:(i + 1) * hop] ** 2)) for i in range(len(v))]) + 3e-3)
    a = _zscore(np.maximum(np.diff(lr, prepend=lr[0]), 0))
    corr = [np.dot(v[max(0, -lag):len(v) - max(0, lag)], a[max(0, lag):len(a) - max(0, -lag)]) / len(v)
            for lag in range(-8, 9)]
    return float(max(corr) - np.median(corr))


def envelope_conf(frames, w):
    """Z13's envelope score, now harmony.metrics.envelope_sync: (confidence, best lag in frames)."""
    offset, conf = envelope_sync(frames, fps, w, sr)
    return conf, int(round(offset * fps))


def oracle_frames(w, rule, index=0):
    """The speech control's face with its mouth laid on the voice itself (no model): opening on the metric's
    own audio events ("events", 3 frames each), on the voice's loud stretches (Z11's rule, "loud") or on a flite
    sentence's own vowel segments (Z12's rule, "phones": the world's rule, which no other voice here gives)."""
    sc = copy.deepcopy(base.scene)
    F = len(base.frames)
    if rule == "phones":
        on, du, letters = vowel_syllables(FLITE_PHONES[index], 0.0, fps, F)
    elif rule == "events":
        on = sorted({int(round(t * fps)) for t in detect_audio_events(w, sr, fps, num_frames=F)})
        du = [max(1, min(3, b - a - 1)) for a, b in zip(on, on[1:] + [F + 3])]
    else:
        on, du = loud_syllables(w, sr, fps, F)
    sc.face.onsets, sc.face.durations = on, du
    sc.face.syllables = ["ba"] * len(on)
    return render_frames(sc)


if os.environ.get("GAIN"):  # the foreign voices scaled (their loudness against the world's)
    g = float(os.environ["GAIN"])
    drives = [(n, [w * g if n in ("flite", "espeak", "slow") else w for w in ws]) for n, ws in drives]
if len(sys.argv) > 1:
    drives = [d for d in drives if d[0] in sys.argv[1].split(",")]
if os.environ.get("ORACLE"):  # the metrics' ceiling: mouths laid on the voice, no model
    for name, ws in drives:
        for rule in ("events", "loud") + (("phones",) if name == "flite" else ()):
            res = []
            for j, w in enumerate(ws):
                frames = oracle_frames(w, rule, j)
                w2 = ws[(j + 1) % len(ws)]
                v_ev = detect_visual_events(frames, fps)
                res.append([event_f1(detect_audio_events(x, sr, fps, num_frames=len(frames)), v_ev, 1 / fps + 1e-6)
                            for x in (w, w2)] + [av_offset(frames, fps, w, sr)[1], av_offset(frames, fps, w2, sr)[1],
                                                 rise_conf(frames, w), rise_conf(frames, w2),
                                                 envelope_conf(frames, w)[0], envelope_conf(frames, w2)[0]])
            r = np.mean(res, 0)
            print(f"{name:9} mouth on the voice's {rule:6}: F1 {r[0]:.2f} (other {r[1]:.2f}) | sync conf {r[2]:.2f} "
                  f"(other {r[3]:.2f}) | loudness-rise conf {r[4]:.2f} (other {r[5]:.2f}) | envelope conf "
                  f"{r[6]:.2f} (other {r[7]:.2f})", flush=True)
    sys.exit(0)
for name, ws in drives:
    items = [(w, s) for w in ws for s in SEEDS]
    t0 = time.time()
    out = generate_batch(pipe, "A2V", [(base.prompt, base.audio_caption, "")] * len(items), [s for _, s in items],
                         driving_audio=[(w[None], sr) for w, _ in items])
    f1, conf, off, f1_floor, conf_floor, rise, rise_floor, env, env_floor = [], [], [], [], [], [], [], [], []
    for j, ((frames, _), (w, s)) in enumerate(zip(out, items)):
        a_ev = detect_audio_events(w, sr, fps, num_frames=len(frames))
        v_ev = detect_visual_events(frames, fps)
        f1.append(event_f1(a_ev, v_ev, 1 / fps + 1e-6))
        o, c = av_offset(frames, fps, w, sr)
        conf.append(c); off.append(abs(o))
        w2 = items[(j + len(SEEDS)) % len(items)][0]  # another clip's audio
        f1_floor.append(event_f1(detect_audio_events(w2, sr, fps, num_frames=len(frames)), v_ev, 1 / fps + 1e-6))
        conf_floor.append(av_offset(frames, fps, w2, sr)[1])
        rise.append(rise_conf(frames, w)); rise_floor.append(rise_conf(frames, w2))
        env.append(envelope_conf(frames, w)[0]); env_floor.append(envelope_conf(frames, w2)[0])
    print(f"{name:9} n={len(items):2} F1 mouth vs voice {np.mean(f1):.2f} (other clip's voice {np.mean(f1_floor):.2f}) | "
          f"sync conf {np.mean(conf):.2f} (other {np.mean(conf_floor):.2f}) | loudness-rise conf {np.mean(rise):.2f} "
          f"(other {np.mean(rise_floor):.2f}) | envelope conf {np.mean(env):.2f} (other {np.mean(env_floor):.2f}; "
          f"above it in {int(np.sum(np.array(env) > np.array(env_floor)))}/{len(env)}) "
          f"| |offset| {np.mean(off):.3f} s "
          f"| per clip F1 {' '.join(f'{x:.2f}' for x in f1)} ({time.time() - t0:.0f} s)", flush=True)
