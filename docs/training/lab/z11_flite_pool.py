"""Z11: a training pool in which half the talking faces speak a second, real synthesiser (flite) and their mouths
follow its sound: the world's speech scenes (2 s) with the voice replaced by a flite sentence of random words
(voices kal, kal16, awb, rms, slt; pace 0.8-1.4x; pitch 80-220 Hz where the voice takes it) and the face's
syllables laid on the sentence's own loudness (a syllable = a loud stretch between dips of the frame level;
the mouth opens as it starts, shuts 1 frame before the next; Z11) or, with RULE=phones, on flite's own vowel
segments (Z12: the world's rule, the mouth opens on the frame a vowel starts). The other half: the usual world pool (30 % quiet).
Written as a ``--latents`` file for ``python -m harmony train``; espeak-ng stays unseen (the held-out
synthesiser of z_a2v_foreign_voices.py). Needs the Debian program `flite`; a lab experiment, not a test.

    [RULE=phones] python docs/training/lab/z11_flite_pool.py OUT.safetensors [N_FLITE N_WORLD]"""
import copy, os, subprocess, sys, tempfile
sys.path.insert(0, os.getcwd())
import numpy as np
import torch

torch.set_num_threads(2)
from harmony.media import read_audio, resample_audio
from harmony.train_data import LatentPool
from harmony.codecs.tiny import load_codecs
from harmony.world import render, sample_scene
from harmony.world.video import render_frames

WORDS = ("we went down to the river this morning and saw a boat near old bridge you can call me when your "
         "train comes back home please bring some tea milk bread I would like another cup of coffee thank "
         "nobody knows where time has gone tomorrow it will rain again they said she looked at him over table "
         "my brother lives in small town by sea our dog likes running after birds every day open window "
         "because room is too warm what did tell them about new plan maybe later we should talk first").split()
VOICES = ("kal", "kal16", "awb", "rms", "slt")
SECONDS = 2.0
RULE = os.environ.get("RULE", "loud")  # the mouth's rule: "loud" (Z11) or "phones" (Z12: flite's vowel segments)


VOWEL_LETTER = {"aa": "a", "ae": "a", "ah": "a", "aw": "a", "ay": "a", "ax": "a", "eh": "e", "ey": "e", "er": "e",
                "axr": "e", "ih": "i", "iy": "i", "ix": "i", "ao": "o", "ow": "o", "oy": "o", "uh": "u", "uw": "u"}


def flite_wave(rng, path, sr, text=None, voice=None, stretch=None):
    """(wave at ``sr``, text, phones): a flite sentence (random words, voice, pace and pitch unless given) and
    its segments as (phone, start s, end s) from ``flite -psdur``."""
    text = text or " ".join(rng.choice(WORDS, size=int(rng.integers(4, 11))))
    voice = voice or str(rng.choice(VOICES))
    stretch = stretch or rng.uniform(0.8, 1.4)
    res = subprocess.run(["flite", "-voice", voice, "--setf", f"duration_stretch={stretch:.2f}",
                          "--setf", f"int_f0_target_mean={rng.uniform(80, 220):.0f}", "-psdur", "-t", text,
                          "-o", path], check=True, capture_output=True, text=True)
    phones, t0 = [], 0.0
    for item in res.stdout.split():
        name, end = item.rsplit(":", 1)
        phones.append((name, t0, float(end)))
        t0 = float(end)
    w, r = read_audio(path)
    w = np.asarray(w, np.float32)
    w = w.mean(0) if w.ndim == 2 else w
    return resample_audio(w, r, sr), text, phones


def vowel_syllables(phones, offset_s, fps, num_frames):
    """(onsets, durations, vowel letters): the world's mouth rule on flite's own segments: the mouth opens on
    the frame a vowel starts and stays open for the vowel and a frame more (the release), shut at least a frame
    before the next vowel."""
    vowels = [(round((a + offset_s) * fps), 1 + max(1, round((b - a) * fps)), VOWEL_LETTER[p])
              for p, a, b in phones if p in VOWEL_LETTER]
    onsets, durations, letters = [], [], []
    for i, (f, d, v) in enumerate(vowels):
        if f >= num_frames or (onsets and f <= onsets[-1]):
            continue
        nxt = vowels[i + 1][0] if i + 1 < len(vowels) else num_frames + 1
        onsets.append(f)
        durations.append(max(1, min(d, nxt - f - 1)))
        letters.append(v)
    return onsets, durations, letters


def loud_syllables(w, sr, fps, num_frames):
    """(onsets, durations): a syllable per loud stretch of the frame level (dB), split at dips of >= 3 dB."""
    hop = int(sr // fps)
    lv = np.array([20 * np.log10(np.sqrt(np.mean(w[i * hop:(i + 1) * hop] ** 2)) + 1e-5) for i in range(num_frames)])
    loud = lv > lv.max() - 22
    onsets, durations, f = [], [], 0
    while f < num_frames:
        if not loud[f]:
            f += 1
            continue
        g = f  # walk the stretch; cut it where the level dips 3 dB below the peak so far and rises again
        peak = lv[f]
        while g + 1 < num_frames and loud[g + 1]:
            if lv[g + 1] > lv[g] and peak - lv[g] >= 3 and g - f >= 2:
                break
            peak = max(peak, lv[g + 1])
            g += 1
        d = max(1, g - f)  # open until a frame before the next syllable or the silence
        onsets.append(f)
        durations.append(d)
        f = g + 1
    return onsets, durations


def main():
    out = sys.argv[1]
    n_flite = int(sys.argv[2]) if len(sys.argv) > 2 else 640
    n_world = int(sys.argv[3]) if len(sys.argv) > 3 else 640
    codecs = load_codecs(None)
    vc, ac = codecs
    rng = np.random.default_rng(11)
    tmp = tempfile.mkdtemp()
    frames, waves, texts = [], [], {"prompt": [], "caption": [], "transcript": []}
    seed = 200_000
    while len(frames) < n_flite:
        seed += 1
        sc = sample_scene(seed, "speech", SECONDS)
        if sc.face is None:
            continue
        clip = render(sc)
        n, F = len(clip.wave), sc.num_frames
        w, text, phones = flite_wave(rng, os.path.join(tmp, "s.wav"), clip.sample_rate)
        start = int(rng.integers(0, int(0.4 * clip.sample_rate)))
        w = np.pad(w, (start, max(0, n - start - len(w))))[:n]
        lvl = np.sqrt(np.mean(clip.wave ** 2)) / (np.sqrt(np.mean(w ** 2)) + 1e-9) * np.exp(rng.uniform(-0.5, 0.5))
        w = w * lvl
        if RULE == "phones":
            on, du, letters = vowel_syllables(phones, start / clip.sample_rate, sc.fps, F)
        else:
            on, du = loud_syllables(w, clip.sample_rate, sc.fps, F)
            letters = [str(rng.choice(list("aeiou"))) for _ in on]
        if not on:
            continue
        q = copy.deepcopy(sc)
        q.face.onsets, q.face.durations = on, du
        q.face.syllables = ["b" + v for v in letters]
        frames.append(render_frames(q))
        waves.append(w.astype(np.float32))
        texts["prompt"].append(sc.prompt)
        texts["caption"].append(sc.audio_caption)
        texts["transcript"].append(text)
        if len(frames) % 64 == 0:
            print("flite clips", len(frames), flush=True)
    with torch.no_grad():
        video = torch.cat([vc.encode(torch.from_numpy(np.stack(frames[i:i + 32]))) for i in range(0, len(frames), 32)])
        audio = torch.cat([ac.encode(torch.from_numpy(np.stack(waves[i:i + 32]))) for i in range(0, len(waves), 32)])
    world = LatentPool(codecs, SECONDS, n_world, 12345, p_quiet=0.3)
    data = {"video": torch.cat([video, world.data["video"]]), "audio": torch.cat([audio, world.data["audio"]]),
            "refs": [None] * len(frames) + list(world.data["refs"])}
    for k in texts:
        data[k] = texts[k] + list(world.data[k])
    LatentPool(codecs, SECONDS, 0, 0, data=data).save(out, {"z11": f"{len(frames)} flite + {n_world} world"})
    print("wrote", out, data["video"].shape, data["audio"].shape)


if __name__ == "__main__":
    main()
