"""The synthetic audio-visual world: determinism, seeds, texts and ground truth."""
import json

import numpy as np
import pytest

from harmony.world import (HELDOUT_START, SPLITS, TRAIN_SEEDS, Scene, heldout_seeds, is_heldout, quiet, render,
                           sample_batch, sample_scene, tokenize, vocabulary)
from harmony.metrics import loud_onsets
from harmony.world.video import mouth_opening


def test_render_is_deterministic_and_in_format():
    for split in SPLITS:
        a, b = render(sample_scene(11, split)), render(sample_scene(11, split))
        assert a.frames.shape == (48, 64, 64, 3) and a.frames.dtype == np.float32
        assert a.wave.shape == (48000,) and a.wave.dtype == np.float32
        assert a.fps == 16 and a.sample_rate == 16000
        assert 0.0 <= a.frames.min() and a.frames.max() <= 1.0 and np.abs(a.wave).max() <= 1.0
        np.testing.assert_array_equal(a.frames, b.frames)
        np.testing.assert_array_equal(a.wave, b.wave)
        assert a.prompt == b.prompt and a.events == b.events
    c = render(sample_scene(12, "ambient"))
    assert not np.array_equal(c.frames, render(sample_scene(11, "ambient")).frames)


def test_clip_lengths_and_bad_input():
    for seconds in (1.0, 6.0):
        c = render(sample_scene(3, "complex", seconds))
        assert c.frames.shape[0] == int(seconds * 16) and c.wave.shape[0] == int(seconds * 16000)
    with pytest.raises(ValueError, match="seconds"):
        sample_scene(0, "speech", 10.0)
    with pytest.raises(ValueError, match="split"):
        sample_scene(0, "music")
    with pytest.raises(ValueError, match="seed"):
        sample_scene(-1)


def test_heldout_seeds_disjoint_from_training():
    held = [s for split in SPLITS for s in heldout_seeds(split, 200)]
    assert len(set(held)) == len(held)
    assert all(is_heldout(s) and s not in TRAIN_SEEDS for s in held)
    assert not any(is_heldout(s) for s in (0, 1, HELDOUT_START - 1))
    with pytest.raises(ValueError, match="held-out"):
        sample_batch([1, heldout_seeds("speech", 1)[0]])


def test_scene_json_round_trip_and_texts_in_vocabulary():
    vocab = set(vocabulary())
    prompts = set()
    for seed in range(150):
        scene = sample_scene(seed)
        assert Scene.from_json(json.dumps(json.loads(scene.to_json()))) == scene
        text = " ".join([scene.prompt, scene.audio_caption, scene.transcript])
        assert set(tokenize(text)) <= vocab, text
        prompts.add(scene.prompt)
    assert len(prompts) == 150  # no two scenes share a prompt


def test_texts_pin_down_counts_and_colours():
    from harmony.world.vocab import number_word, times_word
    for seed in range(40):
        scene = sample_scene(seed, "complex")
        for o in scene.objects:
            assert f"{o.colour} {o.kind}" in scene.prompt
            assert times_word(len(o.event_frames)) in scene.prompt
        assert f"{number_word(len(scene.face.syllables))} syllables" in scene.prompt
        assert len(scene.transcript.split()) == len(scene.face.syllables)


def test_event_times_match_rendered_signals():
    """Each event's sound starts on its frame's sample; the picture changes on its frame."""
    for seed in range(6):
        scene = sample_scene(seed, "ambient")
        clip = render(scene)
        for t, kind, oid in clip.events:
            s = int(round(t * 16000))
            before = np.abs(clip.wave[s - 160:s - 8]).max()
            after = np.abs(clip.wave[s:s + 160]).max()
            assert after > before + 0.1 and after > 1.5 * before, (seed, t, kind)
            k = int(round(t * 16))
            obj = next(o for o in scene.objects if o.id == oid)
            ys, xs = np.mgrid[0:64, 0:64]
            near = (np.abs(xs - obj.x) < obj.radius + obj.travel / 2 + 4)[None, ..., None]
            change = np.abs(clip.frames[k] - clip.frames[k - 1]) * near[0]
            assert change.max() > 0.05, (seed, t, kind)
    scene = sample_scene(4, "speech")
    m = mouth_opening(scene.face, scene.num_frames)
    for f in scene.face.onsets:  # the mouth opens exactly on each syllable onset
        assert m[f] == 1.0 and m[f - 1] < 0.2


def test_lamp_flash_brightens_on_its_frame():
    for seed in range(40):
        scene = sample_scene(seed, "ambient")
        lamps = [o for o in scene.objects if o.kind == "lamp"]
        if lamps:
            break
    clip = render(scene)
    lamp = lamps[0]
    y, x = int(round(lamp.y)), int(round(lamp.x))
    for f in lamp.event_frames:
        assert clip.frames[f, y, x].sum() > clip.frames[f - 1, y, x].sum() + 0.2


def test_ref_voice_and_batch():
    clip = render(sample_scene(2, "speech"))
    assert clip.ref_voice.shape == (24000,) and clip.transcript
    assert render(sample_scene(2, "ambient")).ref_voice is None
    batch = sample_batch([1, 2, 3], seconds=2.0)
    assert batch.frames.shape == (3, 32, 64, 64, 3) and batch.waves.shape == (3, 32000)
    assert batch.ref_voices.shape == (3, 24000) and batch.has_ref.dtype == bool


def test_running_speech_lays_syllables_back_to_back():
    """world.running: the face says 3.2-5.3 syllables a second (the world's own faces: <= 2.6), its
    mouth open 2-3 frames and shut 1-2 between them; the voice follows the mouth (each syllable's
    sound fills its open frames: the frames' loudness follows the open mouth); look, voice and objects
    unchanged; no face: unchanged."""
    from harmony.world import running

    for seed in range(6):
        scene = sample_scene(seed, "speech", 3.0)
        fast = running(scene)
        on, dur = np.asarray(fast.face.onsets), np.asarray(fast.face.durations)
        gaps = on[1:] - (on[:-1] + dur[:-1])
        assert set(dur) <= {2, 3} and set(gaps) <= {1, 2}
        rate = len(on) / scene.seconds
        assert rate >= 2.8 > len(scene.face.onsets) / scene.seconds, (rate, len(scene.face.onsets))
        assert len(fast.face.syllables) == len(on) == len(fast.face.intonation)
        assert fast.transcript == " ".join(fast.face.syllables) != scene.transcript
        assert fast.face.voice == scene.face.voice and fast.objects == scene.objects
        clip = render(fast)
        hop = clip.sample_rate // clip.fps
        loud = [np.sqrt(np.mean(clip.wave[i * hop:(i + 1) * hop] ** 2)) for i in range(len(clip.frames))]
        mouth = np.zeros(len(clip.frames))
        for o, d in zip(on, dur):
            mouth[o:o + d] = 1
        assert np.corrcoef(loud, mouth)[0, 1] > 0.9
        assert set(tokenize(clip.prompt + " " + clip.audio_caption)) <= set(vocabulary())
    ambient = sample_scene(0, "ambient", 3.0)
    assert ambient.face is None and running(ambient) == ambient


def test_connected_speech_is_another_voice_with_consonants_between_vowels():
    """world.connected: the second synthesiser. The face's vowels open 2-8 frames with 1-3 frames between
    them; a new voice (style "connected") whose loudness follows the open mouth; the reference voice is the
    same synthesiser; the look and objects are unchanged; the JSON round trip keeps the style; no face:
    unchanged."""
    from harmony.world import connected

    voiced_gaps, gaps_seen = 0, 0
    for seed in range(6):
        scene = sample_scene(seed, "speech", 3.0)
        conn = connected(scene)
        on, dur = np.asarray(conn.face.onsets), np.asarray(conn.face.durations)
        gaps = on[1:] - (on[:-1] + dur[:-1])
        assert set(dur) <= set(range(2, 9)) and set(gaps) <= {1, 2, 3} and len(on) >= 4
        assert conn.face.voice.style == "connected" and scene.face.voice.style == "syllables"
        assert conn.face.voice != scene.face.voice and conn.objects == scene.objects
        assert Scene.from_json(conn.to_json()) == conn
        clip, plain = render(conn), render(scene)
        sr, fps = clip.sample_rate, clip.fps
        hop = sr // fps
        loud = [np.sqrt(np.mean(clip.wave[i * hop:(i + 1) * hop] ** 2)) for i in range(len(clip.frames))]
        mouth = np.zeros(len(clip.frames))
        for o, d in zip(on, dur):
            mouth[o:o + d] = 1
        assert np.corrcoef(loud, mouth)[0, 1] > 0.6
        # the face is drawn where it was; only the mouth differs
        first = min(on[0], scene.face.onsets[0])
        assert np.abs(clip.frames[:first] - plain.frames[:first]).max() < 1e-6
        assert clip.ref_voice is not None and np.sqrt(np.mean(clip.ref_voice ** 2)) > 0.02
    ambient = sample_scene(0, "ambient", 3.0)
    assert connected(ambient) == ambient


def test_connected_voice_is_rendered_by_the_second_synthesiser(monkeypatch):
    """render: a face whose voice has style "connected" is spoken by audio.connected_speech (its
    syllables at its onsets, then the reference voice's), a face of the world's own voice never is."""
    from harmony.world import audio, connected

    calls = []

    def record(voice, syllables, onsets, durations, intonation, n, sr, fps, rng):
        calls.append((list(syllables), list(onsets)))
        return np.zeros(n)

    monkeypatch.setattr(audio, "connected_speech", record)
    scene = sample_scene(3, "speech", 3.0)
    render(scene)
    assert calls == []
    conn = connected(scene)
    render(conn)
    assert calls[0] == (conn.face.syllables, conn.face.onsets)
    assert calls[1][0] == conn.face.ref_syllables and len(calls) == 2


def test_connected_speech_fills_each_gap_with_its_consonant():
    """audio.connected_speech on hand-laid syllables (vowels 3 frames, gaps 2): the gap before a nasal (m)
    or a lateral (l) is voiced and before s it hisses, at 15-60 % of the vowels' loudness, except for the odd
    pause; before a stop (t) it is silent (its closure). Nothing sounds before the first syllable, and each
    vowel starts on its mouth's frame."""
    from harmony.world import Voice
    from harmony.world.audio import connected_speech

    sr, fps = 16000, 16
    syl = ["ba", "ma", "la", "sa", "ta", "ma"]
    onsets = [4, 9, 14, 19, 24, 29]
    spf = sr // fps
    level = {"m": [], "l": [], "s": [], "t": []}
    for seed in range(12):
        voice = Voice(f0=90 + 15 * seed, formant_scale=0.8 + 0.03 * seed, brightness=1.0, breathiness=0.05,
                      style="connected")
        w = connected_speech(voice, syl, onsets, [3] * 6, [1.0] * 6, 36 * spf, sr, fps,
                             np.random.default_rng(seed))
        vowel = np.sqrt(np.mean(w[4 * spf:7 * spf] ** 2))
        assert np.abs(w[:4 * spf]).max() == 0  # nothing before the first syllable
        ms = sr // 1000
        for o in onsets:  # each vowel starts on its frame: louder 12-24 ms after it than 12 ms before
            before, after = (np.sqrt(np.mean(w[o * spf + a * ms:o * spf + b * ms] ** 2))
                             for a, b in ((-12, 0), (12, 24)))
            assert after > 1.6 * before, (seed, o, before, after)
        for s_, o in zip(syl[1:], onsets[1:]):
            gap = w[(o - 2) * spf + 40 * sr // 1000:o * spf]  # past the vowel's release
            level[s_[0]].append(np.sqrt(np.mean(gap ** 2)) / vowel)
    for c in "mls":
        share = np.mean([0.15 < x < 0.6 for x in level[c]])
        assert share >= 0.75, (c, level[c])
    assert max(level["t"]) < 0.02, level["t"]


def test_quiet_scene_keeps_still_and_silent():
    """world.quiet: the same scene with nothing happening; every object kind and the face covered."""
    kinds = set()
    for seed in range(40):
        for split in SPLITS:
            scene = sample_scene(seed, split, 2.0)
            kinds |= {o.kind for o in scene.objects} | ({"face"} if scene.face else set())
            clip, still = render(scene), render(quiet(scene))
            assert np.abs(np.diff(clip.frames, axis=0)).max() > 0.1       # the real scene moves...
            assert np.abs(np.diff(still.frames, axis=0)).max() == 0.0     # ...its quiet variant does not
            n = still.frames.shape[0]
            assert len(loud_onsets(clip.wave, clip.sample_rate, clip.fps, num_frames=n)) > 0
            assert len(loud_onsets(still.wave, still.sample_rate, still.fps, num_frames=n)) == 0
            assert still.events == [] and still.counts["total"] == 0 and still.transcript == ""
            np.testing.assert_array_equal(still.frames[0] > 0, still.frames[-1] > 0)
            assert "zero" in still.prompt and set(tokenize(still.prompt + " " + still.audio_caption)) <= set(vocabulary())
            if scene.face is not None:  # the reference voice stays: the speaker is still known
                np.testing.assert_array_equal(still.ref_voice, clip.ref_voice)
        if kinds >= {"ball", "block", "lamp", "face"}:
            break
    assert kinds >= {"ball", "block", "lamp", "face"}


def test_sample_batch_mixes_quiet_scenes_by_seed():
    seeds = list(range(300, 340))
    plain, mixed = sample_batch(seeds, 2.0), sample_batch(seeds, 2.0, p_quiet=0.25)
    quiet_rows = [i for i, p in enumerate(mixed.prompts) if p != plain.prompts[i]]
    assert 4 <= len(quiet_rows) <= 18  # a quarter of 40, drawn per seed
    for i in range(len(seeds)):
        if i in quiet_rows:
            assert mixed.clips[i].events == [] and plain.clips[i].events != []
        else:  # the other seeds render exactly as before
            np.testing.assert_array_equal(mixed.frames[i], plain.frames[i])
    half = sample_batch(seeds[:20], 2.0, p_quiet=0.25)  # the draw is per seed, not per batch position
    assert half.prompts == mixed.prompts[:20]
    assert all(c.events == [] for c in sample_batch(seeds[:5], 1.0, p_quiet=1.0).clips)
    with pytest.raises(ValueError, match="p_quiet"):
        sample_batch(seeds[:2], 1.0, p_quiet=1.5)
