"""How much of the audio latent the world's events decide: the ceiling of V2A partner use.

For held-out clips of a split, each scene is rendered three ways: as is, with another
ambience-noise seed (what nothing can predict), and with its objects' events removed (what only
the event times decide). Per audio-latent channel (normalised, as the DiT sees it):

* ``var``: the channel's variance over clips and time;
* ``renoise``: half the mean squared difference between two noise seeds (irreducible);
* ``events``: the mean squared difference with / without the events.

A small ``renoise`` beside a large ``events`` means the codec latents carry the events and a
model that knows their times could predict the audio far better than one that does not.

    python scripts/event_share.py --split ambient --seconds 2 -n 24
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harmony import world  # noqa: E402
from harmony.codecs import load_codecs  # noqa: E402
from harmony.world.audio import render_wave  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", default="ambient", choices=world.SPLITS)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("-n", type=int, default=24, help="held-out clips")
    ap.add_argument("--out", default=None, help="write the result as JSON here")
    a = ap.parse_args()
    _, audio_codec = load_codecs()
    waves = {"as_is": [], "renoise": [], "no_events": []}
    for seed in world.heldout_seeds(a.split, a.n):
        scene = world.sample_scene(seed, a.split, a.seconds)
        waves["as_is"].append(render_wave(scene))
        waves["renoise"].append(render_wave(dataclasses.replace(scene, noise_seed=scene.noise_seed + 12345)))
        quiet = [dataclasses.replace(o, event_frames=[]) for o in scene.objects]
        face = None if scene.face is None else dataclasses.replace(scene.face, onsets=[], durations=[],
                                                                   syllables=[], intonation=[])
        waves["no_events"].append(render_wave(dataclasses.replace(scene, objects=quiet, face=face)))
    with torch.no_grad():
        lat = {k: audio_codec.encode(torch.from_numpy(np.stack(v))) for k, v in waves.items()}
    x = lat["as_is"]
    var = ((x - x.mean((0, 1))) ** 2).mean((0, 1))
    renoise = ((x - lat["renoise"]) ** 2).mean((0, 1)) / 2
    events = ((x - lat["no_events"]) ** 2).mean((0, 1))
    rows = {name: {"var": round(float(var[i]), 4), "renoise": round(float(renoise[i]), 4),
                   "events": round(float(events[i]), 4)} for i, name in enumerate(audio_codec.CHANNELS)}
    mean = {"var": float(var.mean()), "renoise": float(renoise.mean()), "events": float(events.mean())}
    for name, r in rows.items():
        print(f"{name:8s} var {r['var']:.3f}  renoise {r['renoise']:.3f}  events {r['events']:.3f}")
    print(f"mean     var {mean['var']:.3f}  renoise {mean['renoise']:.3f}  events {mean['events']:.3f}")
    if a.out:
        with open(a.out, "w") as fh:
            json.dump({"split": a.split, "seconds": a.seconds, "n": a.n, "channels": rows, "mean": mean}, fh, indent=1)


if __name__ == "__main__":
    main()
