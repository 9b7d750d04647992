"""Sync / fidelity metrics on real world clips: ceiling must beat floor."""
import numpy as np
import pytest

from harmony import metrics as M
from harmony.evaluate import (TARGETS, evaluate, format_table, format_targets, paired_interval, shift_audio,
                              target_rows)
from harmony.world import (EVAL_SEEDS, SPLITS, TRAIN_SEEDS, TUNING_SEEDS, heldout_seeds, render, sample_scene,
                           tuning_seeds)


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
    def generate(job, clips, seeds):  # a "model" that returns silence: must score like a floor
        return [(c.frames, np.zeros_like(c.wave)) for c in clips]
    rows = evaluate(generate, n_per_split=2, jobs=("T2AV",), splits=("ambient",))
    by = {r["name"]: r for r in rows}
    assert set(by) == {"real", "audio shifted 0.5s", "audio shuffled", "T2AV"}
    assert by["real"]["f1_audio"] > by["audio shifted 0.5s"]["f1_audio"]
    assert by["real"]["f1_audio"] > by["T2AV"]["f1_audio"]
    for r in rows:  # each clip's confidence, in clip order, kept for paired comparisons
        assert len(r["per_clip"]["confidence"]) == 2 and np.mean(r["per_clip"]["confidence"]) == pytest.approx(
            r["confidence"])
    assert by["real"]["per_clip"]["confidence"] != by["audio shuffled"]["per_clip"]["confidence"]
    text = format_table(rows)
    assert "real" in text and "T2AV" in text and "|offset|" in text
    with pytest.raises(ValueError, match="unknown jobs"):
        evaluate(generate, 1, jobs=("X2Y",))


def test_seed_ranges_are_disjoint():
    ranges = {"train": TRAIN_SEEDS, "tuning": TUNING_SEEDS, "eval": EVAL_SEEDS}
    names = list(ranges)
    for i, a in enumerate(names):  # range objects: disjoint iff one ends before the other starts
        for b in names[i + 1:]:
            ra, rb = ranges[a], ranges[b]
            assert ra.stop <= rb.start or rb.stop <= ra.start, (a, b)
    for split in SPLITS:
        ev, tu = heldout_seeds(split, 1000), tuning_seeds(split, 1000)
        assert all(s in EVAL_SEEDS for s in ev) and all(s in TUNING_SEEDS for s in tu)
        assert not set(ev) & set(tu)
    assert len({s for sp in SPLITS for s in tuning_seeds(sp, 500)}) == 1500  # splits do not share seeds
    with pytest.raises(ValueError, match="n must be"):
        heldout_seeds("speech", 10**9)


def test_tuning_script_uses_tuning_seeds_not_heldout():
    import pathlib
    root = pathlib.Path(__file__).resolve().parents[1]
    tune = (root / "scripts" / "tune_guidance.py").read_text()
    dec = (root / "scripts" / "finetune_video_decoder.py").read_text()
    assert "seeds_fn=tuning_seeds" in tune and "heldout_seeds" not in tune.split('"""', 2)[2]
    assert "tuning_seeds(split" in dec and "heldout_seeds(" not in dec


def test_loud_onsets_absolute_threshold():
    sr, rng = 16000, np.random.default_rng(0)
    bed = 0.02 * rng.standard_normal(3 * sr).astype(np.float32)        # steady noise: no onsets
    assert len(M.loud_onsets(bed, sr, 16)) == 0
    assert len(M.detect_audio_events(bed, sr, 16)) > 0                 # the relative detector always finds some
    wave = bed.copy()
    for f in (8, 20, 32):                                                # tone bursts on frames 8, 20, 32
        t0 = int(f / 16 * sr)
        wave[t0:t0 + 1600] += 0.5 * np.sin(2 * np.pi * 880 * np.arange(1600) / sr)
    assert np.allclose(M.loud_onsets(wave, sr, 16), [0.5, 1.25, 2.0], atol=1 / 16 + 1e-6)


def test_envelope_correlation_same_vs_different_timing():
    sr = 16000

    def bursts(frames):
        w = np.zeros(3 * sr, np.float32) + 1e-3
        for f in frames:
            t0 = int(f / 16 * sr)
            w[t0:t0 + 2000] += np.sin(2 * np.pi * 500 * np.arange(2000) / sr)
        return w
    a, b = bursts([8, 20, 32]), bursts([13, 25, 38])
    assert M.envelope_correlation(a, 0.3 * a, sr, 16) > 0.999              # level-free: dB envelope, Pearson
    assert M.envelope_correlation(a, b, sr, 16) < 0.0


def test_envelope_sync_on_a_hand_made_mouth():
    """metrics.envelope_sync: a 2x2-pixel "mouth" whose brightness is the voice's own z-scored log level
    correlates exactly 1 at its lag (the top 1 % of 256 pixels is two of its four), so the offset is that
    lag and the confidence well above the same picture's against another voice; a still picture scores 0.
    Fluent syllables (5 a second, 16 fps): the envelope is periodic too, so other lags score as well."""
    sr, fps, F = 16000, 16, 32
    hop = sr // fps
    rng = np.random.default_rng(0)

    def voice(frames_on):
        w = np.zeros(F * hop)
        for f, d in frames_on:
            n = d * hop
            w[f * hop:f * hop + n] += rng.uniform(0.05, 0.3) * np.sin(2 * np.pi * 180 * np.arange(n) / sr)
        return w

    syllables = [(f, int(rng.integers(1, 3))) for f in range(1, F - 2, 3)] + [(F - 1, 1)]
    w = voice(syllables)
    env = np.log(np.sqrt((w.reshape(F, hop) ** 2).mean(1)) + M.ENVELOPE_SILENCE)
    env = (env - env.mean()) / env.std()

    def picture(shift):  # the mouth shows the level of frame f - shift (shift > 0: the picture lags)
        frames = np.full((F, 16, 16, 3), 0.5) + 0.01 * rng.standard_normal((F, 16, 16, 3))
        frames[:, 6:8, 6:8, :] = 0.5 + 0.1 * np.roll(env, shift)[:, None, None, None]
        return frames

    offset, conf = M.envelope_sync(picture(0), fps, w, sr)
    assert offset == 0.0 and conf > 0.3
    offset, _ = M.envelope_sync(picture(2), fps, w, sr)
    assert offset == -2 / fps  # the sound leads the picture by two frames: negative, as av_offset's sign
    other = voice([(f + 1, 1) for f in range(0, F - 2, 4)])
    assert M.envelope_sync(picture(0), fps, other, sr)[1] < conf - 0.3
    assert M.envelope_sync(np.full((F, 16, 16, 3), 0.5), fps, w, sr)[1] == 0.0


def test_psnr_and_first_frame_similarity_closed_form():
    img = np.full((64, 64, 3), 0.5, np.float32)
    assert M.psnr(img, img + 0.1) == pytest.approx(20.0, abs=1e-4)      # mse 0.01 -> 20 dB
    assert M.psnr(img, img) == M.PSNR_CAP_DB
    frames = np.stack([img, img + 0.1, img - 0.01, img + 0.1])         # 20, 40, 20 dB
    sim = M.first_frame_similarity(frames, img)
    assert sim["ff_psnr_db"] == M.PSNR_CAP_DB
    assert sim["persist_psnr_db"] == pytest.approx(80 / 3, abs=1e-3)
    assert sim["cut_psnr_db"] == pytest.approx(20.0, abs=1e-3)
    with pytest.raises(ValueError, match="differ in size"):
        M.first_frame_similarity(frames, img[:32])


def test_evaluate_scores_the_given_modality_as_returned():
    """A2V / V2A rows score what the generator returns for BOTH modalities (the decoded
    latent, i.e. the driving media through the codec), not the raw driving media."""
    seen = {}

    def generate(job, clips, seeds):
        out = []
        for c in clips:  # "codec" that drops the audio of A2V and freezes the video of V2A
            f = np.repeat(c.frames[:1], len(c.frames), 0) if job == "V2A" else c.frames
            w = np.zeros_like(c.wave) if job == "A2V" else c.wave
            out.append((f, w))
        seen[job] = list(seeds)
        return out
    rows = evaluate(generate, n_per_split=2, jobs=("A2V", "V2A", "T2AV"), splits=("ambient",))
    by = {r["name"]: r for r in rows}
    assert by["T2AV"]["f1_audio"] > 0.8                                  # real media: events found
    assert by["A2V"]["n_audio_events"] == 0 or by["A2V"]["f1_audio"] < 0.5   # silent audio was scored
    assert by["V2A"]["f1_video"] < 0.5                                   # frozen video was scored
    assert seen["A2V"] == heldout_seeds("ambient", 2)                   # one call per job: the whole split
    with pytest.raises(ValueError, match="no frames"):
        evaluate(lambda job, clips, seeds: [(None, c.wave) for c in clips], 1, jobs=("V2A",), splits=("ambient",))


def _row(split, kind, name, **kw):
    base = {"split": split, "kind": kind, "name": name, "n": 4, "abs_offset_s": 0.0, "confidence": 1.0,
            "f1_av": 1.0, "count_error_audio": 0.0, "count_error_video": 0.0, "ff_psnr_db": 30.0,
            "n_audio_events": 3.0, "n_visual_events": 3.0, "n_gt_events": 3.0}
    base.update(kw)
    return base


def test_targets_verdicts_on_hand_made_rows():
    ceil = _row("ambient", "ceiling", "real+codec", abs_offset_s=0.05, confidence=0.6, f1_av=0.8, ff_psnr_db=25.0)
    rows = [ceil,
            # passes: 0.55/0.6 = 0.917, 0.73/0.8 = 0.9125, offset 0.05 + 1/16 >= 0.11, better than cfg
            _row("ambient", "model", "T2AV synccfg", confidence=0.55, f1_av=0.73, abs_offset_s=0.11,
                 count_error_audio=1.0, count_error_video=1.0),
            _row("ambient", "model", "T2AV cfg", confidence=0.3, f1_av=0.5, abs_offset_s=0.2,
                 count_error_audio=1.0, count_error_video=2.0),
            # misses: conf ratio 0.85, offset 0.05 + 0.0625 < 0.13, F1 below cfg, count err above cfg
            _row("ambient", "model", "V2A synccfg", confidence=0.51, f1_av=0.75, abs_offset_s=0.13,
                 count_error_audio=2.0, count_error_video=9.0),
            _row("ambient", "model", "V2A cfg", confidence=0.4, f1_av=0.78, abs_offset_s=0.2, count_error_audio=1.0),
            # I2AV frame 0: 22 < 0.9 x 25 = 22.5 dB
            _row("ambient", "model", "I2AV synccfg", confidence=0.6, f1_av=0.8, abs_offset_s=0.0, ff_psnr_db=22.0)]
    t = {(r["job"], r["mode"]): r for r in target_rows(rows, fps=16)}
    assert t[("T2AV", "synccfg")]["verdict"] == "PASS", t[("T2AV", "synccfg")]["misses"]
    assert t[("V2A", "synccfg")]["misses"] == ["conf", "|offset|", "F1<cfg", "counts>cfg"]
    assert t[("I2AV", "synccfg")]["misses"] == ["frame0"]
    assert "conf<cfg" not in t[("T2AV", "cfg")]["misses"] and "count_err_cfg" not in t[("T2AV", "cfg")]
    assert TARGETS["ratio"] == 0.9
    text = format_targets(rows, fps=16)
    assert "MISS: conf, |offset|, F1<cfg, counts>cfg" in text and "PASS" in text


def test_paired_interval_on_hand_made_differences():
    """The gap's mean is the mean per-clip difference; a constant gap has a zero-width interval; a gap
    that one clip alone carries spans 0 (a resample without that clip has none); the interval lies
    within the smallest and largest per-clip difference."""
    assert paired_interval([0.7, 0.5, 0.9], [0.5, 0.3, 0.7]) == pytest.approx((0.2, 0.2, 0.2))
    mean, lo, hi = paired_interval([0.5, 0.5, 0.5, 0.5, 1.3], [0.5, 0.5, 0.5, 0.5, 0.5])
    assert mean == pytest.approx(0.16) and lo == pytest.approx(0.0) and 0.16 < hi <= 0.8
    mean, lo, hi = paired_interval([0.1, 0.9, 0.4, 0.6], [0.5, 0.5, 0.5, 0.5])
    assert -0.4 <= lo < 0 < hi <= 0.4 and mean == pytest.approx(0.0)
    assert paired_interval([0.1, 0.9, 0.4, 0.6], [0.5] * 4) == (mean, lo, hi)  # seeded: the same table twice
    with pytest.raises(ValueError, match="equal-length"):
        paired_interval([0.1, 0.2], [0.1])


def test_targets_give_synccfg_a_paired_gap_to_cfg():
    """SyncCFG's rows carry their per-clip gap to plain CFG on the same clips; the table prints it."""
    ceil = _row("ambient", "ceiling", "real+codec", confidence=0.6)
    sync = _row("ambient", "model", "T2AV synccfg", confidence=0.6, per_clip={"confidence": [0.9, 0.3, 0.6, 0.6]})
    cfg = _row("ambient", "model", "T2AV cfg", confidence=0.5, per_clip={"confidence": [0.5, 0.5, 0.5, 0.5]})
    t = {(r["job"], r["mode"]): r for r in target_rows([ceil, sync, cfg], fps=16)}
    mean, lo, hi = t[("T2AV", "synccfg")]["conf_gap"]
    assert mean == pytest.approx(0.1) and lo < 0 < hi
    assert "conf_gap" not in t[("T2AV", "cfg")]
    assert "{:+.2f} [{:+.2f}, {:+.2f}]".format(mean, lo, hi) in format_targets([ceil, sync, cfg], fps=16)


def test_colour_pixels_and_colour_f1_read_a_drawn_square():
    from harmony.world import COLOURS

    frames = np.full((2, 32, 32, 3), 0.5, np.float32)  # grey: no world colour
    assert not M.colour_pixels(frames).any() and M.colour_f1(frames, {"red"}) == 0.0
    frames[:, 8:16, 8:16] = np.asarray(COLOURS["red"], np.float32) / max(COLOURS["red"])
    mask = M.colour_pixels(frames)
    assert mask[:, 8:16, 8:16].all() and mask.sum() == 2 * 64
    assert M.colour_f1(frames, {"red"}) == 1.0 and M.colour_f1(frames, {"red", "blue"}) == pytest.approx(2 / 3)


def test_cell_event_strength_locates_a_hand_made_flash():
    """A 64x64 grey clip whose top-left 8x8 cell flashes on frame 5: only the cells within two cells of it
    see an event (the blur spreads the edge one pixel into the next cell, the 3x3 pooling one cell more),
    each strongest on the flash frame; the per-frame sum is visual_event_strength."""
    frames = np.full((10, 64, 64, 3), 0.5, np.float32)
    frames[5:, :8, :8] = 1.0  # a step: one onset, no reversal
    cells = M.cell_event_strength(frames)
    assert cells.shape == (10, 64)
    near = np.zeros((8, 8), bool)
    near[:3, :3] = True
    assert np.all(cells[:, ~near.reshape(-1)] == 0)
    assert np.all(cells[:, near.reshape(-1)].argmax(0) == 5)
    np.testing.assert_allclose(M.visual_event_strength(frames, 16.0), cells.sum(1), rtol=1e-6)
