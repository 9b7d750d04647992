"""Sync / fidelity metrics on real world clips: ceiling must beat floor."""
import numpy as np
import pytest

from harmony import metrics as M
from harmony.evaluate import evaluate, format_table, shift_audio
from harmony.world import render, sample_scene


def test_event_f1():
    assert M.event_f1([1.0, 2.0], [1.05, 2.0], 0.0625) == 1.0
    r = M.event_prf([1.0, 3.0], [1.0, 2.0], 0.0625)
    assert r["precision"] == 0.5 and r["recall"] == 0.5 and M.event_f1([1.0, 3.0], [1.0, 2.0], 0.0625) == 0.5
    assert M.event_f1([], [], 0.1) == 1.0 and M.event_f1([1.0], [], 0.1) == 0.0
    assert M.event_prf([1.0, 1.01], [1.0], 0.1)["precision"] == 0.5  # one-to-one matching


def test_onset_strength_peaks_on_the_event_frame():
    wave = np.zeros(16000, np.float32)
    wave[5000:5400] = np.sin(np.arange(400) * 0.3)  # onset at 0.3125 s = frame 5
    s = M.audio_onset_strength(wave, 16000, 16)
    assert s.shape == (16,) and int(np.argmax(s)) == 5


@pytest.mark.parametrize("split", ["speech", "ambient", "complex"])
def test_ceiling_beats_shifted_and_shuffled_audio(split):
    real_off, shift_off, real_f1, shift_f1, shuf_f1 = [], [], [], [], []
    clips = [render(sample_scene(seed, split)) for seed in range(100, 106)]
    for i, c in enumerate(clips):
        off, conf = M.av_offset(c.frames, c.fps, c.wave, c.sample_rate)
        shifted = shift_audio(c.wave, 0.5, c.sample_rate)
        off_s, _ = M.av_offset(c.frames, c.fps, shifted, c.sample_rate)
        real_off.append(abs(off))
        shift_off.append(abs(off_s))
        gt = c.event_times
        tol = 1 / 16 + 1e-6
        real_f1.append(M.event_f1(M.detect_audio_events(c.wave, 16000, 16, 48), gt, tol))
        shift_f1.append(M.event_f1(M.detect_audio_events(shifted, 16000, 16, 48), gt, tol))
        other = clips[(i + 1) % len(clips)].wave
        shuf_f1.append(M.event_f1(M.detect_audio_events(other, 16000, 16, 48), gt, tol))
    assert np.mean(real_off) < 0.1 < np.mean(shift_off)
    assert np.mean(real_f1) > 0.8 and np.mean(real_f1) > np.mean(shift_f1) + 0.3
    assert np.mean(real_f1) > np.mean(shuf_f1) + 0.3


def test_visual_events_found_on_real_clips():
    f1 = [M.event_f1(M.detect_visual_events(c.frames, 16), c.event_times, 1 / 16 + 1e-6)
          for c in (render(sample_scene(s, sp)) for s in range(200, 204) for sp in ("speech", "ambient"))]
    assert np.mean(f1) > 0.75


def test_voice_pitch_matches_reference_voice():
    errs, other = [], []
    for seed in range(4):
        c = render(sample_scene(seed, "speech"))
        errs.append(M.voice_pitch_error(c.wave, c.ref_voice, 16000))
        d = render(sample_scene(seed + 50, "speech"))
        other.append(M.voice_pitch_error(c.wave, d.ref_voice, 16000))
    assert np.nanmean(errs) < 1.0 and np.nanmean(other) > np.nanmean(errs) + 1.0
    tone = np.sin(2 * np.pi * 150 * np.arange(16000) / 16000)
    assert abs(M.voice_pitch(tone, 16000) - 150) < 3


def test_caption_detectors_on_real_clip():
    for seed in range(30):
        scene = sample_scene(seed, "ambient")
        if len(scene.objects) >= 2:
            break
    clip = render(scene)
    assert {o.colour for o in scene.objects} <= M.detect_colours(clip.frames)
    m = M.clip_metrics(clip, scene)
    for key in ("offset_s", "confidence", "f1_av", "f1_audio", "f1_video", "colour_f1", "kind_acc"):
        assert key in m
    assert m["colour_f1"] > 0.6


def test_evaluate_table_ranks_ceiling_over_floor():
    def generate(job, clip, seed):  # a "model" that returns silence: must score like a floor
        return clip.frames, np.zeros_like(clip.wave)
    rows = evaluate(generate, n_per_split=2, jobs=("T2AV",), splits=("ambient",))
    by = {r["name"]: r for r in rows}
    assert set(by) == {"real", "audio shifted 0.5s", "audio shuffled", "T2AV"}
    assert by["real"]["f1_audio"] > by["audio shifted 0.5s"]["f1_audio"]
    assert by["real"]["f1_audio"] > by["T2AV"]["f1_audio"]
    text = format_table(rows)
    assert "real" in text and "T2AV" in text and "|offset|" in text
    with pytest.raises(ValueError, match="unknown jobs"):
        evaluate(generate, 1, jobs=("X2Y",))
