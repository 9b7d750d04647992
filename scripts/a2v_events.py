"""Where A2V on speech fails: the visual event times of each generated clip beside the syllable onsets.

For the two speech clips of the ``a2v_speech`` control (harmony.controls), prints the events found in the
real clip through the codecs, then for each sampling seed the events found in the generated video and their
precision / recall / F1 against the syllable onsets (+-1 frame, as the control scores them), and how many of
the unmatched events fall on a syllable's end (+-1 frame): the world's mouth opens at once on the onset,
relaxes through the syllable and then drops from about 0.4 to 0.12 open in one frame
(harmony.world.video.mouth_opening), a smaller step than the opening that the detector may also see.
Last, where the generated events' strength comes from: the cells that move in the real clip (the face) or
the cells that stand still there (the background; harmony.metrics.cell_event_strength).

    python scripts/a2v_events.py harmony/assets/harmony_tiny.safetensors [--seeds 10 11 12 13] [--steps 20]
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harmony import controls as C  # noqa: E402
from harmony.batch_generate import generate_batch  # noqa: E402
from harmony.metrics import (cell_event_strength, detect_visual_events, event_prf, match_events,  # noqa: E402
                             visual_event_strength)
from harmony.pipeline import HarmonyPipeline  # noqa: E402
from harmony.world import render  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="model file (.safetensors)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[10, 11, 12, 13], help="sampling seeds")
    ap.add_argument("--steps", type=int, default=20, help="sampling steps")
    a = ap.parse_args(argv)
    if not os.path.isfile(a.model):
        ap.error(f"model file {a.model!r} not found")
    pipe = HarmonyPipeline.from_pretrained(a.model, log=lambda m: None)
    fps, tol = pipe.fps, 1.0 / pipe.fps + 1e-6
    clips = [render(C.speech_scene(1)), render(C.speech_scene(2))]
    idx = [i for i in range(len(clips)) for _ in a.seeds]
    order = [clips[i] for i in idx]
    out = generate_batch(pipe, "A2V", [(c.prompt, c.audio_caption, c.transcript) for c in order], a.seeds * 2,
                         driving_audio=[(c.wave[None], c.sample_rate) for c in order],
                         ref_voices=[(c.ref_voice[None], c.sample_rate) for c in order], seconds=C.SECONDS,
                         steps=a.steps)
    rt = C.codec_roundtrip_fn(pipe)
    real_frames = [np.asarray(rt(c.frames, c.wave)[0]) for c in clips]
    for i, c in enumerate(clips):
        real = detect_visual_events(real_frames[i], fps)
        print(f"clip {i + 1}: syllables {np.round(c.event_times, 2).tolist()}, their ends "
              f"{np.round(syllable_ends(c, fps), 2).tolist()}; real+codec events {np.round(real, 2).tolist()}")
    generated = [(f, clips[i]) for (f, _), i in zip(out, idx)]
    for name, pairs in (("real+codec", list(zip(real_frames, clips))), ("generated", generated)):
        on, end = np.mean([onset_and_end_strength(f, c, fps) for f, c in pairs], axis=0)
        print(f"{name}: visual event strength above the clip's median, at the onsets {on:.1f}, "
              f"at the syllables' ends {end:.1f}")
    totals = [0, 0]
    for (frames, _), i, seed in zip(out, idx, a.seeds * 2):
        c = clips[i]
        ev = detect_visual_events(frames, fps)
        prf = event_prf(ev, c.event_times, tol)
        extra = [e for e, g in match_events(ev, c.event_times, tol) if g is None]
        at_end = sum(g is not None for _, g in match_events(extra, syllable_ends(c, fps), tol))
        print(f"clip {i + 1} seed {seed}: events {np.round(ev, 2).tolist()}  "
              f"precision {prf['precision']:.2f} recall {prf['recall']:.2f} F1 {prf['f1']:.2f}; "
              f"unmatched {len(extra)}, of them at a syllable end {at_end}")
        totals[0] += len(extra)
        totals[1] += at_end
    print(f"all clips: {totals[0]} unmatched events, {totals[1]} of them at a syllable end (+-1 frame)")
    moving = [moving_cells(f) for f in real_frames]
    print(f"cells that move in the real clip (of {moving[0].size}): {[int(m.sum()) for m in moving]}")
    shares = {True: [0.0, 0.0], False: [0.0, 0.0]}  # matched / unmatched: [moving cells, still cells]
    for (frames, _), i in zip(out, idx):
        cells = cell_event_strength(frames)
        for t, g in match_events(detect_visual_events(frames, fps), clips[i].event_times, tol):
            k = min(int(round(t * fps)), len(cells) - 1)
            shares[g is not None][0] += float(cells[k, moving[i]].sum())
            shares[g is not None][1] += float(cells[k, ~moving[i]].sum())
    for matched, (on_face, still) in shares.items():
        print(f"{'matched' if matched else 'unmatched'} events' strength: {on_face:.0f} from moving cells, "
              f"{still:.0f} from still ones ({still / max(on_face + still, 1e-9):.0%})")


def moving_cells(frames, share: float = 0.1) -> np.ndarray:
    """The cells whose peak event strength in ``frames`` reaches ``share`` of the strongest cell's. With
    ``floor`` 1, harmony.metrics.cell_event_strength gives a cell of raw peak m the peak m / (m + M), M the
    strongest cell's, so m / M = p / (1 - p)."""
    p = cell_event_strength(frames, floor=1.0).max(0)
    return p / (1.0 - p) >= share


def syllable_ends(clip, fps: float) -> np.ndarray:
    """Times (s) of the frame where each syllable's mouth drops to nearly closed (onset + duration)."""
    face = clip.scene.face
    return np.asarray([(f + d) / fps for f, d in zip(face.onsets, face.durations)], np.float64)


def onset_and_end_strength(frames, clip, fps: float) -> tuple[float, float]:
    """Mean visual event strength (harmony.metrics.visual_event_strength, above the clip's median; the
    largest within +-1 frame) at the syllable onsets and at the syllables' ends."""
    s = visual_event_strength(frames, fps)
    s = s - np.median(s)
    face = clip.scene.face

    def near(k):
        return float(s[max(0, k - 1):k + 2].max())

    ends = [f + d for f, d in zip(face.onsets, face.durations) if f + d < len(s)]
    return float(np.mean([near(f) for f in face.onsets])), float(np.mean([near(k) for k in ends]))


if __name__ == "__main__":
    main()
