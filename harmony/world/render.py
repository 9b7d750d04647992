"""Rendering a scene into a ``Clip`` (media + texts + ground truth), and batches for training."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .audio import render_ref_voice, render_wave
from .scene import (DEFAULT_SECONDS, Scene, connected, is_connected_seed, is_quiet_seed, is_running_seed, quiet,
                    running, sample_scene)
from .video import render_frames


@dataclass
class Clip:
    """One rendered sample of the world.

    frames: float32 [F, 64, 64, 3] in 0..1 at ``fps``; wave: float32 [T] in -1..1
    at ``sample_rate``; ref_voice: float32 [1.5 s] of the same voice saying
    other syllables (None without speech); events: ground truth
    ``(time_s, kind, object_id)``; counts: checkable counts (see Scene.counts).
    """
    frames: np.ndarray
    fps: int
    wave: np.ndarray
    sample_rate: int
    prompt: str
    audio_caption: str
    transcript: str
    ref_voice: np.ndarray | None
    events: list[tuple[float, str, str]]
    counts: dict[str, int]
    scene: Scene

    @property
    def seconds(self) -> float:
        return self.scene.seconds

    @property
    def event_times(self) -> list[float]:
        return [t for t, _, _ in self.events]


def render(scene: Scene) -> Clip:
    """Render ``scene`` (deterministic: same scene, same media)."""
    return Clip(frames=render_frames(scene), fps=scene.fps, wave=render_wave(scene),
                sample_rate=scene.sample_rate, prompt=scene.prompt, audio_caption=scene.audio_caption,
                transcript=scene.transcript, ref_voice=render_ref_voice(scene), events=scene.events(),
                counts=scene.counts(), scene=scene)


@dataclass
class Batch:
    """Stacked training batch. frames [B,F,64,64,3], waves [B,T], ref_voices [B,Tr]
    (zeros where ``has_ref`` is False), plus per-sample texts and clips; ``quiet`` [B]: which
    clips are their scene's ``quiet`` variant."""
    frames: np.ndarray
    waves: np.ndarray
    ref_voices: np.ndarray
    has_ref: np.ndarray
    prompts: list[str]
    audio_captions: list[str]
    transcripts: list[str]
    clips: list[Clip]
    quiet: np.ndarray


def sample_batch(seeds, seconds: float = DEFAULT_SECONDS, split: str | None = None, p_quiet: float = 0.0,
                 p_running: float = 0.0, p_connected: float = 0.0) -> Batch:
    """Render the scenes of ``seeds`` (training seeds only) and stack them; a share ``p_quiet``
    of the seeds (``is_quiet_seed``) renders the scene's ``quiet`` variant instead, a share
    ``p_connected`` of the others (``is_connected_seed``) its ``connected`` speech and ``p_running`` of the
    rest (``is_running_seed``) its ``running`` speech."""
    for name, p in (("p_quiet", p_quiet), ("p_running", p_running), ("p_connected", p_connected)):
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"sample_batch: {name}={p} must be a share between 0 and 1")
    from .scene import is_heldout
    bad = [s for s in seeds if is_heldout(s)]
    if bad:
        raise ValueError(f"sample_batch: seeds {bad[:3]} are held-out evaluation seeds; "
                         "train on seeds below harmony.world.HELDOUT_START")
    scenes = [sample_scene(int(s), split, seconds) for s in seeds]
    is_quiet = np.array([is_quiet_seed(s, p_quiet) for s in seeds], bool)
    clips = [render(quiet(sc) if q else connected(sc) if is_connected_seed(s, p_connected)
                    else running(sc) if is_running_seed(s, p_running) else sc)
             for s, q, sc in zip(seeds, is_quiet, scenes)]
    n_ref = int(round(1.5 * clips[0].sample_rate))
    refs = np.zeros((len(clips), n_ref), np.float32)
    has_ref = np.zeros(len(clips), bool)
    for i, c in enumerate(clips):
        if c.ref_voice is not None:
            refs[i], has_ref[i] = c.ref_voice[:n_ref], True
    return Batch(frames=np.stack([c.frames for c in clips]), waves=np.stack([c.wave for c in clips]),
                 ref_voices=refs, has_ref=has_ref, prompts=[c.prompt for c in clips],
                 audio_captions=[c.audio_caption for c in clips], transcripts=[c.transcript for c in clips],
                 clips=clips, quiet=is_quiet)
