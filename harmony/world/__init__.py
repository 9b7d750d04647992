"""The synthetic audio-visual world: deterministic from a seed, unlimited samples.

Format: video 64x64 RGB at 16 fps, audio mono 16 kHz, clips 1-6 s (default
3 s = 48 frames = 48000 samples). Splits mirror Harmony-Bench:

- ``speech``: a face whose mouth opens on each syllable of a transcript,
  voiced with a timbre shared with a 1.5 s reference voice clip (lip-sync and
  voice-cloning analogue);
- ``ambient``: 1-3 objects (bouncing balls, sliding blocks hitting walls,
  flashing lamps) whose events make their own sounds (pitch tied to size,
  timbre to kind) over a steady background sound;
- ``complex``: a talking face plus 1-2 sounding objects.

API::

    scene = sample_scene(seed, split=None | "speech" | "ambient" | "complex", seconds=3.0)
    clip = render(scene)     # Clip: frames [F,64,64,3], wave [T], prompt, audio_caption,
                             # transcript, ref_voice, events [(time_s, kind, id)], counts
    batch = sample_batch(seeds, seconds)          # stacked numpy arrays for training
    heldout_seeds(split, n); is_heldout(seed); TRAIN_SEEDS
    tuning_seeds(split, n); TUNING_SEEDS; EVAL_SEEDS   # disjoint ranges

Event times are whole frames (exact in both modalities). Seeds at or above
``HELDOUT_START`` are reserved for evaluation. ``tokenize`` / ``vocabulary``
give the word-level vocabulary every text is written in.
"""
from .render import Batch, Clip, render, sample_batch
from .scene import (DEFAULT_SECONDS, EVAL_SEEDS, FPS, HELDOUT_START, MAX_SECONDS, MIN_SECONDS, SAMPLE_RATE,
                    SIZE, SPLITS, TRAIN_SEEDS, TUNING_SEEDS, Face, Scene, SceneObject, Voice, heldout_seeds,
                    connected, is_heldout, quiet, running, sample_scene, tuning_seeds)
from .vocab import COLOURS, OBJECT_KINDS, SYLLABLES, tokenize, vocabulary

__all__ = [
    "Batch", "Clip", "render", "sample_batch", "DEFAULT_SECONDS", "FPS", "HELDOUT_START",
    "MAX_SECONDS", "MIN_SECONDS", "SAMPLE_RATE", "SIZE", "SPLITS", "TRAIN_SEEDS", "Face", "Scene",
    "SceneObject", "Voice", "connected", "heldout_seeds", "is_heldout", "quiet", "running", "sample_scene", "COLOURS",
    "EVAL_SEEDS", "TUNING_SEEDS", "tuning_seeds",
    "OBJECT_KINDS", "SYLLABLES", "tokenize", "vocabulary",
]
