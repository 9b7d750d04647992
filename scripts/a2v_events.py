"""Where A2V on speech fails: the visual event times of each generated clip beside the syllable onsets.

For the two speech clips of the ``a2v_speech`` control (harmony.controls), prints the events found in the
real clip through the codecs, then for each sampling seed the events found in the generated video and their
precision / recall / F1 against the syllable onsets (+-1 frame, as the control scores them).

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
from harmony.metrics import detect_visual_events, event_prf  # noqa: E402
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
    for i, c in enumerate(clips):
        real = detect_visual_events(np.asarray(rt(c.frames, c.wave)[0]), fps)
        print(f"clip {i + 1}: syllables {np.round(c.event_times, 2).tolist()}; real+codec events {np.round(real, 2).tolist()}")
    for (frames, _), i, seed in zip(out, idx, a.seeds * 2):
        c = clips[i]
        ev = detect_visual_events(frames, fps)
        prf = event_prf(ev, c.event_times, tol)
        print(f"clip {i + 1} seed {seed}: events {np.round(ev, 2).tolist()}  "
              f"precision {prf['precision']:.2f} recall {prf['recall']:.2f} F1 {prf['f1']:.2f}")


if __name__ == "__main__":
    main()
