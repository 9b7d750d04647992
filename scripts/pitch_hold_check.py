"""Does the audio decoder's pitch hold touch speech? (lab notebook P1)

``AudioCodec.steady_pitch`` keeps a chime's pitch when the comb reads a sub-harmonic inside a
sounding event. This counts, on held-out speech clips, the voiced latents whose pitch it holds
back, and compares the decoded clip's median voice pitch (``harmony.metrics.voice_pitch``) with
the raw clip's, with and without the hold.

    python scripts/pitch_hold_check.py --n 10
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10, help="held-out speech clips (3 s)")
    args = ap.parse_args(argv)
    from harmony.codecs import load_codecs
    from harmony.metrics import voice_pitch
    from harmony.world import heldout_seeds, render, sample_scene

    _, codec = load_codecs()
    sr = codec.sample_rate
    clips = [render(sample_scene(s, "speech", 3.0)) for s in heldout_seeds("speech", args.n)]
    voiced = held = 0
    for c in clips:
        f = codec.features(torch.from_numpy(c.wave).float()[None])
        lf, voicing, env = f[..., codec.n_sub], f[..., codec.n_sub + 1], f[..., : codec.n_sub]
        on = voicing >= codec.voiced_threshold
        voiced += int(on.sum())
        held += int(((codec.steady_pitch(lf, voicing, env) != lf) & on).sum())
    print(f"voiced latents whose pitch the decoder holds: {held} of {voiced} ({len(clips)} clips)")
    for hold in (float("inf"), codec.pitch_hold):
        codec.pitch_hold, errs = hold, []
        for c in clips:
            w = torch.from_numpy(c.wave).float()[None]
            dec = codec.decode(codec.encode(w), length=w.shape[-1])[0].numpy()
            raw_hz, dec_hz = voice_pitch(c.wave, sr), voice_pitch(dec, sr)
            if np.isfinite(raw_hz) and np.isfinite(dec_hz):
                errs.append(12 * abs(np.log2(dec_hz / raw_hz)))
        name = "without the hold" if hold == float("inf") else f"with the hold ({hold} octave)"
        print(f"{name}: decoded vs raw median voice pitch, {len(errs)} clips with both measurable: "
              f"mean {np.mean(errs):.2f}, max {np.max(errs):.2f} semitones")


if __name__ == "__main__":
    main()
