"""Audio synthesiser: a scene's waveform, mono float32 at 16 kHz in -1..1.

- Speech: each syllable is a consonant (a sharp-onset burst, murmur or hiss)
  followed by a voiced vowel: a glottal pulse train at the voice's pitch
  shaped by vowel formants scaled by the voice's vocal-tract size and
  spectral tilt. Same voice = same pitch and timbre (the reference voice
  clip says other syllables with it).
- Impacts: ball -> low "thud" (pitch falls with ball size), block -> wooden
  "knock", lamp -> bell-like "chime" (pitch falls with lamp size).
- Ambience: a steady bed (quiet / hum / wind / rain) with no onsets.
Every event sound starts with a ~1 ms attack on the exact sample of its
frame time, so onsets stay well defined even through lossy codecs.
"""
from __future__ import annotations

import numpy as np

FORMANTS = {  # vowel -> formant frequencies (Hz) for formant_scale 1
    "a": (730, 1090, 2440), "e": (530, 1840, 2480), "i": (300, 2250, 3000),
    "o": (570, 840, 2410), "u": (320, 870, 2240),
}
FORMANT_BANDWIDTH = (90.0, 110.0, 170.0)
FORMANT_GAIN = (1.0, 0.55, 0.3)
RELEASE_S = 0.03


def _fft_filter(x: np.ndarray, gain_of_freq, sr: int) -> np.ndarray:
    """Filter ``x`` by a zero-phase gain curve ``gain_of_freq(freqs_hz)`` (zero-padded FFT)."""
    n = len(x)
    nfft = 1 << int(np.ceil(np.log2(max(2 * n, 16))))
    spec = np.fft.rfft(x, nfft)
    spec *= gain_of_freq(np.fft.rfftfreq(nfft, 1.0 / sr))
    return np.fft.irfft(spec, nfft)[:n]


def _envelope(n, sr, attack_s, release_s):
    t = np.arange(n) / sr
    env = np.clip(t / max(attack_s, 1e-4), 0, 1)
    return env * np.clip((n / sr - t) / max(release_s, 1e-4), 0, 1)


def _formant_response(f, formants, bandwidths, tilt):
    """Gain at frequencies ``f`` (Hz) of three formants (centres ``formants[k]``, widths ``bandwidths[k]``,
    each a number or an array that broadcasts with ``f``) over a spectral tilt; nothing below 60 Hz."""
    g = 0.0
    for fk, bk, ak in zip(formants, bandwidths, FORMANT_GAIN):
        g = g + ak / (1.0 + ((f - fk) / (bk / 2)) ** 2)
    return (g + 0.02) * (1.0 + f / 400.0) ** (-tilt) * (f > 60)


def _vowel_gain(vowel, voice):
    fs = np.asarray(FORMANTS[vowel], np.float64) * voice.formant_scale
    widths = [b * voice.formant_scale for b in FORMANT_BANDWIDTH]
    return lambda f: _formant_response(f, fs, widths, 1.6 - 0.5 * voice.brightness)


def _pulse_train(f0_track: np.ndarray, sr: int) -> np.ndarray:
    """Glottal impulses at the times the pitch phase crosses an integer (fractional placement)."""
    phase = np.cumsum(f0_track / sr)
    k = np.nonzero(np.diff(np.floor(phase)) > 0)[0]
    frac = (phase[k + 1] - np.floor(phase[k + 1])) / np.maximum(f0_track[k + 1] / sr, 1e-9)
    frac = np.clip(frac, 0, 1)
    out = np.zeros(len(f0_track) + 1)
    np.add.at(out, k + 1, 1.0 - frac)
    np.add.at(out, k + 2, frac)
    return out[:len(f0_track)]


def syllable(syl: str, voice, seconds: float, intonation: float, sr: int, rng) -> np.ndarray:
    """One syllable (consonant + vowel) of ``seconds`` length."""
    n = int(round(seconds * sr))
    cons, vowel = syl[0], syl[1]
    out = np.zeros(n)
    # consonant part: start of the vowel and the consonant's own sound
    if cons in "bdg":
        v_start, burst, band = 0.012, 0.010, {"b": (100, 1500), "d": (2500, 6000), "g": (1200, 3000)}[cons]
    elif cons in "ptk":
        v_start, burst, band = 0.045, 0.040, {"p": (100, 1500), "t": (2500, 7000), "k": (1200, 3500)}[cons]
    elif cons == "s":
        v_start, burst, band = 0.070, 0.070, (3500, 7800)
    else:  # m, n, l: voiced murmur
        v_start, burst, band = 0.045, 0.0, None
    nb = int(burst * sr)
    if nb > 0:
        noise = _fft_filter(rng.standard_normal(nb), lambda f: ((f > band[0]) & (f < band[1])).astype(float), sr)
        noise *= _envelope(nb, sr, 0.001, 0.6 * burst) * (0.1 if cons != "s" else 0.06) / (noise.std() + 1e-9)
        if cons in "ptk":  # a sharper release burst on top of the aspiration
            noise[: int(0.008 * sr)] *= 1.8
        out[:nb] += noise
    t = np.arange(n) / sr
    f0 = voice.f0 * intonation * (1.04 - 0.08 * t / max(seconds, 1e-3)) * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t))
    src = _pulse_train(f0, sr) + voice.breathiness * 0.3 * rng.standard_normal(n)
    n_vs = int(v_start * sr)
    if cons in "mnl":  # murmur from the onset: nasal / lateral formants
        mur = _fft_filter(src[:n_vs], _vowel_gain("u", voice), sr)
        mur *= _envelope(n_vs, sr, 0.0015, 0.005) * 0.10 / (mur.std() + 1e-9)
        out[:n_vs] += mur
    vow = _fft_filter(src[n_vs:], _vowel_gain(vowel, voice), sr)
    vow *= _envelope(n - n_vs, sr, 0.004, RELEASE_S) * 0.13 / (vow.std() + 1e-9)
    out[n_vs:] += vow
    return out


def impact(kind: str, pitch_hz: float, loud: float, sr: int, rng) -> np.ndarray:
    """The sound of one event of an object of ``kind`` (ball / block / lamp)."""
    if kind == "ball":
        n = int(0.25 * sr)
        t = np.arange(n) / sr
        f = pitch_hz * (1 + 0.6 * np.exp(-t / 0.02))
        body = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / 0.07)
        click = _fft_filter(rng.standard_normal(n), lambda fr: (fr < 2500).astype(float), sr) * np.exp(-t / 0.004)
        s = body + 0.25 * click / (click[:80].std() + 1e-9)
    elif kind == "block":
        n = int(0.2 * sr)
        t = np.arange(n) / sr
        s = sum(a * np.sin(2 * np.pi * pitch_hz * m * t) * np.exp(-t / d)
                for m, a, d in ((1.0, 1.0, 0.05), (2.76, 0.5, 0.03), (5.4, 0.25, 0.02)))
        click = rng.standard_normal(n) * np.exp(-t / 0.002)
        s = s + 0.3 * click
    else:  # lamp chime
        n = int(0.5 * sr)
        t = np.arange(n) / sr
        s = sum(a * np.sin(2 * np.pi * pitch_hz * m * t) * np.exp(-t / d)
                for m, a, d in ((1.0, 1.0, 0.35), (2.0, 0.4, 0.25), (3.0, 0.2, 0.15), (4.2, 0.1, 0.1)))
    s = s * _envelope(n, sr, 0.001, 0.02)
    return loud * s / (np.abs(s).max() + 1e-9)


def ambience(kind: str, level: float, n: int, sr: int, rng) -> np.ndarray:
    """A steady background bed with rms ~ ``level``."""
    t = np.arange(n) / sr
    if kind == "hum":
        f = rng.uniform(50, 120)
        s = sum(np.sin(2 * np.pi * f * k * t + rng.uniform(0, 6.3)) / k for k in range(1, 5))
    elif kind == "wind":
        s = _fft_filter(rng.standard_normal(n), lambda f: 1.0 / (1 + (f / 300.0) ** 2), sr)
        s *= 1 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.2, 0.5) * t + rng.uniform(0, 6.3))
    elif kind == "rain":
        s = _fft_filter(rng.standard_normal(n), lambda f: ((f > 2000) & (f < 7000)).astype(float), sr)
    else:  # quiet room: faint white noise
        s = rng.standard_normal(n)
        level = level * 0.2
    return level * s / (s.std() + 1e-9)


def _mix_at(wave, sound, start):
    end = min(len(wave), start + len(sound))
    if end > start:
        wave[start:end] += sound[: end - start]


def render_wave(scene) -> np.ndarray:
    """The scene's soundtrack: float32 ``[T]`` in -1..1."""
    sr, fps = scene.sample_rate, scene.fps
    rng = np.random.default_rng([scene.noise_seed, 1])
    wave = ambience(scene.ambience, scene.ambience_level, scene.num_samples, sr, rng)
    face = scene.face
    if face is not None and face.voice.style == "connected":
        wave += connected_speech(face.voice, face.syllables, face.onsets, face.durations, face.intonation,
                                 len(wave), sr, fps, rng)
    elif face is not None:
        for f, d, syl, inton in zip(face.onsets, face.durations, face.syllables, face.intonation):
            _mix_at(wave, syllable(syl, face.voice, d / fps, inton, sr, rng), f * sr // fps)
    for o in scene.objects:
        loud = {"ball": 0.55, "block": 0.45, "lamp": 0.3}[o.kind] * (1.2 if o.size == "large" else 1.0)
        for f in o.event_frames:
            _mix_at(wave, impact(o.kind, o.pitch_hz, loud, sr, rng), f * sr // fps)
    peak = np.abs(wave).max()
    if peak > 0.95:
        wave *= 0.95 / peak
    return wave.astype(np.float32)


def render_ref_voice(scene, seconds: float = 1.5) -> np.ndarray | None:
    """1.5 s of the scene's voice saying its ``ref_syllables`` (None without a face)."""
    face = scene.face
    if face is None:
        return None
    sr = scene.sample_rate
    rng = np.random.default_rng([scene.noise_seed, 2])
    wave = ambience("quiet", 0.01, int(seconds * sr), sr, rng)
    if face.voice.style == "connected":  # the same voice saying its four syllables as one phrase
        k = len(face.ref_syllables)
        wave += connected_speech(face.voice, face.ref_syllables, [2 + 5 * i for i in range(k)], [3] * k,
                                 [1.0 + 0.03 * (i % 2) for i in range(k)], len(wave), sr, scene.fps, rng)
    else:
        for i, syl in enumerate(face.ref_syllables):
            _mix_at(wave, syllable(syl, face.voice, 0.25, 1.0 + 0.03 * (i % 2), sr, rng),
                    int((0.08 + 0.35 * i) * sr))
    peak = np.abs(wave).max()
    if peak > 0.95:
        wave *= 0.95 / peak
    return wave.astype(np.float32)


# ----------------------------------------------------------------------------- connected speech
# A second speech synthesiser with its own phonetics (``Voice.style == "connected"``; ``scene.connected``).
# The world's ``syllable`` voice says isolated consonant-vowel syllables with silence between them; a model
# trained on it alone does not follow a sentence from another synthesiser (notebook Y12). Here syllables run
# into each other: the gap between two vowels is the next syllable's consonant (a nasal murmur, a glide, a
# fricative hiss or a stop's closure and release burst), formants glide from one sound to the next, vowels
# come from a wider inventory (some are diphthongs), and the pitch follows one contour over the utterance.
# What stays is the world's rule that a syllable's vowel starts on the frame its mouth opens.
CONNECTED_VOWELS = {  # the mouth's vowel letter -> vowels this voice may say for it (F1, F2, F3 Hz at scale 1)
    "a": ((730, 1090, 2440), (660, 1720, 2410), (640, 1000, 2500)),
    "e": ((530, 1840, 2480), (390, 1990, 2550), (490, 1350, 1690)),
    "i": ((300, 2250, 3000), (390, 1990, 2550)),
    "o": ((570, 840, 2410), (520, 1190, 2390), (450, 900, 2300)),
    "u": ((320, 870, 2240), (440, 1020, 2240), (490, 1350, 1690)),
}
CONSONANT_OF = {"b": "stop", "d": "stop", "g": "stop", "p": "stop", "t": "stop", "k": "stop",
                "s": "fricative", "m": "nasal", "n": "nasal", "l": "glide"}
NASAL_FORMANTS = (260, 1100, 2300)
FRICATIVE_BANDS = ((3500, 7800), (2200, 6500), (1200, 4000))
_HOP = 64  # control / STFT hop (4 ms at 16 kHz)


def _formant_gains(freqs, tracks, bandwidths, tilt):
    """``[frames, bins]`` gains of three formants following ``tracks [frames, 3]`` (Hz), with a spectral tilt."""
    return _formant_response(freqs[None, :], [tracks[:, k:k + 1] for k in range(3)], bandwidths, tilt)


def _shaped(x, gains, sr):
    """``x`` filtered by per-frame ``gains`` (STFT, hop ``_HOP``), then brought to unit short-time rms."""
    from scipy.signal import istft, stft
    n_fft = 512
    _, _, spec = stft(x, sr, nperseg=n_fft, noverlap=n_fft - _HOP, boundary="even")
    m = min(spec.shape[1], gains.shape[0])
    spec = spec[:, :m] * gains[:m].T
    _, y = istft(spec, sr, nperseg=n_fft, noverlap=n_fft - _HOP)
    y = np.pad(y, (0, max(0, len(x) - len(y))))[: len(x)]
    rms = np.sqrt(np.convolve(y ** 2, np.ones(320) / 320, mode="same")) + 1e-6  # 20 ms
    return y / np.maximum(rms, 0.05 * rms.max())


def connected_speech(voice, syllables, onsets, durations, intonation, n: int, sr: int, fps: int, rng) -> np.ndarray:
    """Connected speech of ``n`` samples: syllable ``i``'s vowel from frame ``onsets[i]`` for ``durations[i]``
    frames (the mouth open), the next syllable's consonant in the gap before it (see the section's comment)."""
    t = np.arange(n) / sr
    nf = n // _HOP + 1
    tc = np.arange(nf) * _HOP / sr                          # control-frame times
    scale = voice.formant_scale
    voiced_env, noise_env = np.zeros(n), np.zeros(n)
    keys_t, keys_f = [], []                                  # formant key points (time, F1..F3)
    fric_band = np.zeros(nf, int)
    starts = [o / fps for o in onsets]
    ends = [(o + d) / fps for o, d in zip(onsets, durations)]
    stress = rng.uniform(0.35, 1.0, size=len(syllables))  # unstressed syllables are weaker (up to 9 dB)
    if len(syllables):
        stress[int(rng.integers(0, len(syllables)))] = 1.0  # one fully stressed syllable
    for i, (syl, t0, t1) in enumerate(zip(syllables, starts, ends)):
        vowels = CONNECTED_VOWELS[syl[1]]
        va = np.asarray(vowels[int(rng.integers(0, len(vowels)))], float) * scale
        vb = np.asarray(vowels[int(rng.integers(0, len(vowels)))], float) * scale if rng.random() < 0.35 else va
        kind = CONSONANT_OF[syl[0]]
        gap_start = ends[i - 1] if i > 0 else None
        # the consonant before this vowel, in the gap since the previous vowel (a pause: silence)
        if gap_start is not None and t0 - gap_start < 0.25 and rng.random() > 0.1:
            g = (t >= gap_start) & (t < t0)
            near = min(stress[i - 1], stress[i])  # a consonant is quieter than the vowels beside it
            if kind in ("nasal", "glide"):
                voiced_env[g] = near * (rng.uniform(0.2, 0.35) if kind == "nasal" else rng.uniform(0.3, 0.45))
                locus = (np.asarray(NASAL_FORMANTS, float) if kind == "nasal"
                         else np.array([300.0, rng.uniform(700, 2200), 2400.0])) * scale
                keys_t.append(0.5 * (gap_start + t0)); keys_f.append(locus)
            elif kind == "fricative":
                noise_env[g] = near * rng.uniform(0.25, 0.5)
                fric_band[(tc >= gap_start) & (tc < t0)] = int(rng.integers(0, len(FRICATIVE_BANDS)))
        if kind == "stop":  # release burst on the vowel's first samples
            nb = int(rng.uniform(0.006, 0.015) * sr)
            s0 = int(t0 * sr)
            burst = np.exp(-np.arange(min(nb, n - s0)) / (0.004 * sr))
            noise_env[s0:s0 + nb] += stress[i] * rng.uniform(0.4, 0.9) * burst
        # the vowel: onset within a few ms, a slow fall, a release into the gap
        attack, fall = rng.uniform(0.002, 0.010), rng.uniform(0.55, 0.85)
        release = rng.uniform(0.02, 0.035)
        v = (t >= t0) & (t < t1 + release)
        tt = t[v] - t0
        env = np.clip(tt / attack, 0, 1) * (1 - (1 - fall) * np.clip(tt / max(t1 - t0, 1e-3), 0, 1))
        env *= np.clip((t1 + release - t[v]) / release, 0, 1)
        voiced_env[v] = np.maximum(voiced_env[v], stress[i] * env)
        keys_t += [t0 + 0.02, max(t0 + 0.021, t1 - 0.01)]; keys_f += [va, vb]
    if not keys_t:
        return np.zeros(n)
    order = np.argsort(keys_t)
    kt, kf = np.asarray(keys_t)[order], np.asarray(keys_f)[order]
    tracks = np.stack([np.interp(tc, kt, kf[:, k]) for k in range(3)], 1)
    # pitch: one falling contour over the utterance, a rise or fall on each syllable, a little jitter
    span = (starts[0], ends[-1]) if starts else (0.0, 1.0)
    contour = 1.12 - 0.24 * np.clip((t - span[0]) / max(span[1] - span[0], 1e-3), 0, 1)
    for t0, t1, inton in zip(starts, ends, intonation):
        mid, width = 0.5 * (t0 + t1), 0.5 * (t1 - t0) + 0.02
        contour *= 1 + 2.0 * (inton - 1.0) * np.exp(-0.5 * ((t - mid) / width) ** 2)
    jitter = np.interp(t, np.arange(0, t[-1] + 0.05, 0.05), 1 + 0.015 * rng.standard_normal(int(t[-1] / 0.05) + 2))
    f0 = voice.f0 * contour * jitter
    freqs = np.fft.rfftfreq(512, 1.0 / sr)
    bw = np.array(FORMANT_BANDWIDTH) * scale * rng.uniform(0.7, 1.5)
    tilt = 1.6 - 0.5 * voice.brightness
    voiced = _shaped(_pulse_train(f0, sr) + voice.breathiness * 0.3 * rng.standard_normal(n),
                     _formant_gains(freqs, tracks, bw, tilt), sr)
    bands = np.stack([(freqs > lo) & (freqs < hi) for lo, hi in FRICATIVE_BANDS]).astype(float)
    noise = _shaped(rng.standard_normal(n), bands[fric_band] + 0.05, sr)
    return 0.13 * (voiced_env * voiced + noise_env * noise)
