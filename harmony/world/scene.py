"""Scenes: every sampled parameter of one clip, deterministic from (seed, split).

A ``Scene`` is plain data (JSON-serialisable with ``to_json`` / ``from_json``);
``render`` (render.py) turns it into media. Event times are whole video
frames (``time_s = frame / fps``), so the ground truth is exact in both
modalities: the sound starts on the sample of that frame's time and the
picture changes on that frame.

Seeds: ``0 <= seed < HELDOUT_START`` are training seeds (``TRAIN_SEEDS``);
seeds from ``HELDOUT_START`` on are reserved for evaluation
(``heldout_seeds(split, n)``, ``is_heldout(seed)``).
"""
from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field

import numpy as np

from . import prompts
from .vocab import (AMBIENCES, BACKGROUND_COLOURS, BACKGROUND_PATTERNS, COLOURS, EVENT_OF_KIND,
                    OBJECT_KINDS, SKIN_TONES, SYLLABLES)

FPS = 16
SAMPLE_RATE = 16000
SIZE = 64
DEFAULT_SECONDS = 3.0
MIN_SECONDS, MAX_SECONDS = 1.0, 6.0
SPLITS = ("speech", "ambient", "complex")

# Seed ranges, disjoint (tests/test_metrics.py checks): training, tuning (guidance sweeps,
# codec decoder fine-tune checks) and the held-out evaluation seeds every reported number uses.
HELDOUT_START = 1_000_000_000
TRAIN_SEEDS = range(0, HELDOUT_START)
_SPLIT_BLOCK = 10_000_000      # seeds per split inside one range
_HELDOUT_SPLIT_OFFSET = {"speech": 0, "ambient": 10_000_000, "complex": 20_000_000}
EVAL_SEEDS = range(HELDOUT_START, HELDOUT_START + 3 * _SPLIT_BLOCK)
TUNING_START = HELDOUT_START + 500_000_000
TUNING_SEEDS = range(TUNING_START, TUNING_START + 3 * _SPLIT_BLOCK)

EDGE_FRAMES = 4        # no event in the first / last 4 frames (0.25 s)
MIN_GAP_OWN = 5        # frames between two events of one object
MIN_GAP_ALL = 4        # frames between any two events of a scene
SLOT_X = (12.0, 32.0, 52.0)  # centres of the left / middle / right slots


@dataclass
class Voice:
    f0: float             # mean pitch (Hz)
    formant_scale: float  # vocal-tract scale (timbre): formant frequencies are multiplied by it
    brightness: float     # spectral tilt: higher = brighter timbre
    breathiness: float    # aspiration noise level
    style: str = "syllables"  # which synthesiser speaks: "syllables" (audio.syllable) or "connected" (scene.connected)

    @property
    def pitch_word(self) -> str:
        return "low" if self.f0 < 135 else ("high" if self.f0 > 195 else "medium")


@dataclass
class Face:
    x: float
    y: float
    radius: float
    size: str                  # "small" | "large"
    position: str              # "left" | "middle" | "right"
    skin: int                  # index into SKIN_TONES
    hair: str                  # colour name
    voice: Voice
    syllables: list[str]
    onsets: list[int]          # syllable onset frames
    durations: list[int]       # syllable lengths in frames (mouth open)
    intonation: list[float]    # per-syllable pitch factor
    ref_syllables: list[str]   # what the reference voice clip says


@dataclass
class SceneObject:
    id: str
    kind: str                  # "ball" | "block" | "lamp"
    colour: str
    size: str                  # "small" | "large"
    position: str              # "left" | "middle" | "right"
    radius: float              # ball / lamp radius, block half-side (pixels)
    x: float
    y: float                   # ball: floor line; block: row; lamp: bulb centre
    event_frames: list[int]
    pitch_hz: float            # base pitch of its sound (tied to its size)
    vx: float = 0.0            # ball: horizontal drift (px/s)
    travel: float = 0.0        # block: distance between the walls it touches
    first_wall: int = 0        # block: 0 = left wall first, 1 = right
    lead_in: float = 0.5       # seconds of motion before the first event (ball / block)
    lead_out: float = 0.5      # seconds of motion after the last event


@dataclass
class Scene:
    seed: int
    split: str
    seconds: float
    background_pattern: str
    background_colour: str
    background_phase: float
    ambience: str
    ambience_level: float
    face: Face | None
    objects: list[SceneObject]
    prompt: str = ""
    audio_caption: str = ""
    fps: int = FPS
    sample_rate: int = SAMPLE_RATE
    size: int = SIZE
    noise_seed: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(round(self.seconds * self.fps))

    @property
    def num_samples(self) -> int:
        return int(round(self.seconds * self.sample_rate))

    @property
    def transcript(self) -> str:
        return " ".join(self.face.syllables) if self.face else ""

    def events(self) -> list[tuple[float, str, str]]:
        """Ground-truth events ``(time_s, kind, object_id)`` sorted by time."""
        out = []
        if self.face:
            out += [(f / self.fps, "syllable", "face") for f in self.face.onsets]
        for o in self.objects:
            out += [(f / self.fps, EVENT_OF_KIND[o.kind], o.id) for f in o.event_frames]
        return sorted(out)

    def counts(self) -> dict[str, int]:
        """Checkable counts: per object id, per kind, syllables and total."""
        c: dict[str, int] = {}
        for o in self.objects:
            c[o.id] = len(o.event_frames)
            c[o.kind] = c.get(o.kind, 0) + len(o.event_frames)
        c["syllables"] = len(self.face.syllables) if self.face else 0
        c["total"] = len(self.events())
        return c

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict) -> "Scene":
        d = dict(d)
        if d.get("face") is not None:
            face = dict(d["face"])
            face["voice"] = Voice(**face["voice"])
            d["face"] = Face(**face)
        d["objects"] = [SceneObject(**o) for o in d["objects"]]
        return cls(**d)

    @classmethod
    def from_json(cls, s: str) -> "Scene":
        return cls.from_dict(json.loads(s))


# ----------------------------------------------------------------------------- seeds

def is_heldout(seed: int) -> bool:
    """True for seeds reserved for evaluation (never used in training)."""
    return int(seed) >= HELDOUT_START


def heldout_seeds(split: str, n: int) -> list[int]:
    """The first ``n`` held-out evaluation seeds of ``split`` (fixed forever)."""
    if split not in _HELDOUT_SPLIT_OFFSET:
        raise ValueError(f"heldout_seeds: split {split!r} unknown; expected one of {SPLITS}")
    if not 0 <= n <= _SPLIT_BLOCK:
        raise ValueError(f"heldout_seeds: n must be in 0..{_SPLIT_BLOCK}, got {n}")
    return [HELDOUT_START + _HELDOUT_SPLIT_OFFSET[split] + i for i in range(n)]


def tuning_seeds(split: str, n: int) -> list[int]:
    """The first ``n`` tuning seeds of ``split``: for guidance sweeps and codec fine-tune checks.
    Never used in training, and disjoint from :func:`heldout_seeds` (the reported evaluation)."""
    if split not in _HELDOUT_SPLIT_OFFSET:
        raise ValueError(f"tuning_seeds: split {split!r} unknown; expected one of {SPLITS}")
    if not 0 <= n <= _SPLIT_BLOCK:
        raise ValueError(f"tuning_seeds: n must be in 0..{_SPLIT_BLOCK}, got {n}")
    return [TUNING_START + _HELDOUT_SPLIT_OFFSET[split] + i for i in range(n)]


# ----------------------------------------------------------------------------- sampling

def _place_events(rng, n, num_frames, taken, min_gap_own=MIN_GAP_OWN, min_gap_all=MIN_GAP_ALL):
    """Up to ``n`` sorted frames, ``min_gap_own`` apart and ``min_gap_all`` from ``taken``."""
    lo, hi = EDGE_FRAMES, num_frames - EDGE_FRAMES
    chosen: list[int] = []
    for _ in range(60 * max(n, 1)):
        if len(chosen) == n:
            break
        f = int(rng.integers(lo, hi))
        if any(abs(f - t) < min_gap_all for t in taken) or any(abs(f - c) < min_gap_own for c in chosen):
            continue
        chosen.append(f)
    return sorted(chosen)


def _sample_voice(rng) -> Voice:
    f0 = float(np.exp(rng.uniform(np.log(85.0), np.log(260.0))))
    # bigger vocal tract (lower formants) goes with lower pitch, loosely
    formant_scale = float(np.clip(0.8 + 0.35 * (np.log(f0 / 85.0) / np.log(260 / 85.0)) + rng.normal(0, 0.06), 0.78, 1.22))
    return Voice(f0=f0, formant_scale=formant_scale, brightness=float(rng.uniform(0.6, 1.6)),
                 breathiness=float(rng.uniform(0.0, 0.12)))


SPEECH_OPEN_FRAMES = (3, 5)     # a face's syllable: mouth open this many frames (inclusive range)
SPEECH_CLOSED_FRAMES = (2, 5)   # and shut this many before the next
RUNNING_OPEN_FRAMES = (2, 3)    # running speech (`running`): shorter syllables...
RUNNING_CLOSED_FRAMES = (1, 2)  # ...and shorter closures between them
CONNECTED_OPEN_FRAMES = (2, 8)    # connected speech (`connected`): the vowels (long ones too)...
CONNECTED_CLOSED_FRAMES = (1, 3)  # ...and the consonants between them


def _lay_syllables(rng, num_frames: int, start: int, open_frames, closed_frames, limit: int | None = None):
    """``(onsets, durations)`` of syllables laid one after another from frame ``start``: each open for a
    draw from ``open_frames``, then shut for a draw from ``closed_frames``, until ``limit`` of them or the
    clip's end (the last ``EDGE_FRAMES`` kept free)."""
    onsets, durations = [], []
    f = start
    while limit is None or len(onsets) < limit:
        dur = int(rng.integers(open_frames[0], open_frames[1] + 1))
        if f + dur + 1 > num_frames - 2 or f > num_frames - EDGE_FRAMES:
            break
        onsets.append(f)
        durations.append(dur)
        f += dur + int(rng.integers(closed_frames[0], closed_frames[1] + 1))
    return onsets, durations


def _sample_face(rng, slot, num_frames, hair, big_allowed=True, syllables_per_s=2.6) -> Face:
    size = "large" if (big_allowed and rng.random() < 0.5) else "small"
    radius = float(rng.uniform(14.0, 18.0) if size == "large" else rng.uniform(10.0, 12.5))
    x = float(np.clip(SLOT_X[slot] + rng.uniform(-4, 4), 0.8 * radius + 1, 63 - 0.8 * radius - 1))
    y = float(rng.uniform(radius + 2, 63 - radius - 2))
    max_syll = max(2, int(syllables_per_s * num_frames / FPS))
    target = int(rng.integers(2, max_syll + 1))
    onsets, durations = _lay_syllables(rng, num_frames, int(rng.integers(EDGE_FRAMES, EDGE_FRAMES + 8)),
                                       SPEECH_OPEN_FRAMES, SPEECH_CLOSED_FRAMES, target)
    syl = [SYLLABLES[i] for i in rng.integers(0, len(SYLLABLES), size=len(onsets))]
    ref = [SYLLABLES[i] for i in rng.integers(0, len(SYLLABLES), size=4)]
    return Face(x=x, y=y, radius=radius, size=size, position=("left", "middle", "right")[slot],
                skin=int(rng.integers(0, len(SKIN_TONES))), hair=hair, voice=_sample_voice(rng),
                syllables=syl, onsets=onsets, durations=durations,
                intonation=[float(v) for v in rng.uniform(0.92, 1.08, size=len(onsets))],
                ref_syllables=ref)


def _sample_object(rng, idx, kind, colour, slot, num_frames, taken) -> SceneObject | None:
    size = "large" if rng.random() < 0.5 else "small"
    max_events = max(1, min(5, int(1.3 * num_frames / FPS)))
    n = int(rng.integers(1, max_events + 1))
    frames = _place_events(rng, n, num_frames, taken)
    if not frames:
        return None
    cx = SLOT_X[slot] + rng.uniform(-5, 5)
    common = dict(id=f"obj{idx}", kind=kind, colour=colour, size=size,
                  position=("left", "middle", "right")[slot], event_frames=frames)
    if kind == "ball":
        r = float(rng.uniform(6.0, 8.5) if size == "large" else rng.uniform(3.0, 4.5))
        return SceneObject(**common, radius=r, x=float(np.clip(cx, r + 1, 62 - r)),
                           y=float(rng.uniform(34, 61)), pitch_hz=900.0 / r,
                           vx=float(rng.uniform(-5, 5)), lead_in=float(rng.uniform(0.3, 0.7)),
                           lead_out=float(rng.uniform(0.3, 0.7)))
    if kind == "block":
        s = float(rng.uniform(4.5, 6.5) if size == "large" else rng.uniform(2.5, 3.5))
        travel = float(rng.uniform(8, 16))
        return SceneObject(**common, radius=s, x=float(np.clip(cx, travel / 2 + s + 3, 61 - travel / 2 - s)),
                           y=float(rng.uniform(s + 6, 58 - s)), pitch_hz=2600.0 / s,
                           travel=travel, first_wall=int(rng.integers(0, 2)),
                           lead_in=float(rng.uniform(0.2, 0.6)), lead_out=float(rng.uniform(0.2, 0.6)))
    r = float(rng.uniform(5.0, 7.0) if size == "large" else rng.uniform(2.8, 4.0))
    return SceneObject(**common, radius=r, x=float(np.clip(cx, r + 2, 61 - r)),
                       y=float(rng.uniform(r + 3, 52 - r)), pitch_hz=5200.0 / r)


def quiet(scene: Scene) -> Scene:
    """``scene`` with nothing happening: the same look and ambience, but every object keeps still
    (a dark lamp, a ball resting on the floor, a block standing) and the face keeps its mouth
    closed and says nothing (its reference voice stays). Texts rewritten to say so.

    ``sample_scene`` never draws such a clip (every object sounds at least once, every face
    speaks), so without them a model learns that a lamp always chimes, and V2A adds sounds to
    a still video (the ``v2a_static`` control). ``sample_batch(..., p_quiet=)`` mixes them in."""
    q = copy.deepcopy(scene)
    for o in q.objects:
        o.event_frames = []
    if q.face is not None:
        q.face.syllables, q.face.onsets, q.face.durations, q.face.intonation = [], [], [], []
    q.prompt, q.audio_caption = prompts.write_texts(q, np.random.default_rng([scene.seed, 99]))
    return q


def _respoken(scene: Scene, salt: int, start_spread: int, open_frames, closed_frames, new_voice=None) -> Scene:
    """``scene`` with its face's syllables laid again from ``[seed, salt]`` (the first within ``start_spread``
    frames of ``EDGE_FRAMES``, then ``open_frames`` open and ``closed_frames`` shut), new syllables and
    intonation, the voice ``new_voice(rng)`` where given (drawn after them), texts rewritten. No face: as is."""
    q = copy.deepcopy(scene)
    if q.face is None:
        return q
    rng = np.random.default_rng([scene.seed, salt])
    start = int(rng.integers(EDGE_FRAMES, EDGE_FRAMES + start_spread))
    onsets, durations = _lay_syllables(rng, scene.num_frames, start, open_frames, closed_frames)
    q.face.onsets, q.face.durations = onsets, durations
    q.face.syllables = [SYLLABLES[i] for i in rng.integers(0, len(SYLLABLES), size=len(onsets))]
    q.face.intonation = [float(v) for v in rng.uniform(0.9, 1.1, size=len(onsets))]
    if new_voice is not None:
        q.face.voice = new_voice(rng)
    q.prompt, q.audio_caption = prompts.write_texts(q, np.random.default_rng([scene.seed, 99]))
    return q


def running(scene: Scene) -> Scene:
    """``scene`` with its face speaking *running* speech: syllables back to back, each open
    ``RUNNING_OPEN_FRAMES`` and closed ``RUNNING_CLOSED_FRAMES`` before the next (3.2-5.3 a second at
    16 fps), so that the sound hardly pauses. ``sample_scene``'s faces say at most 2.6 syllables a
    second with the mouth shut ``SPEECH_CLOSED_FRAMES`` between them; a model trained on those alone does not
    follow a real sentence (notebook Y12). Same look, voice and ambience; texts rewritten. A scene
    without a face is returned as it is. ``sample_batch(..., p_running=)`` mixes them in."""
    return _respoken(scene, 7777, 4, RUNNING_OPEN_FRAMES, RUNNING_CLOSED_FRAMES)


def _connected_voice(rng) -> Voice:
    """A voice of the second synthesiser: pitch 70-300 Hz, its vocal tract growing with it (0.72-1.3)."""
    f0 = float(np.exp(rng.uniform(np.log(70.0), np.log(300.0))))
    tract = 0.78 + 0.4 * np.log(f0 / 70.0) / np.log(300 / 70.0) + rng.normal(0, 0.08)
    return Voice(f0=f0, formant_scale=float(np.clip(tract, 0.72, 1.3)), brightness=float(rng.uniform(0.4, 1.8)),
                 breathiness=float(rng.uniform(0.0, 0.2)), style="connected")


def connected(scene: Scene) -> Scene:
    """``scene`` with its face speaking *connected* speech in a new voice from the second synthesiser
    (``audio.connected_speech``, ``Voice.style == "connected"``): syllables open 2-8 frames, 1-3 frames
    between them filled by the next syllable's consonant instead of silence, a wider range of voices
    (pitch 70-300 Hz, vocal tract 0.72-1.3). The world's own voice says isolated syllables, and a model
    trained on it alone does not follow another synthesiser's sentence (notebook Y12). Same look and
    ambience; texts rewritten. A scene without a face is returned as it is. ``sample_batch(...,
    p_connected=)`` mixes them in."""
    return _respoken(scene, 8888, 6, CONNECTED_OPEN_FRAMES, CONNECTED_CLOSED_FRAMES, _connected_voice)


def is_connected_seed(seed: int, p_connected: float) -> bool:
    """Whether training seed ``seed`` renders its ``connected`` variant at share ``p_connected`` (a fixed
    draw per seed; a quiet clip stays quiet, and connected comes before running)."""
    return _drawn(seed, p_connected, 4444)


def is_running_seed(seed: int, p_running: float) -> bool:
    """Whether training seed ``seed`` renders its ``running`` variant at share ``p_running`` (a fixed
    draw per seed, independent of the quiet one; a quiet clip stays quiet)."""
    return _drawn(seed, p_running, 4343)


def _drawn(seed: int, p: float, salt: int) -> bool:
    """A fixed draw per (seed, salt) at share ``p``: a training variant's choice does not depend on how a
    pool is split into chunks."""
    return p > 0 and float(np.random.default_rng([int(seed), salt]).random()) < p


def is_quiet_seed(seed: int, p_quiet: float) -> bool:
    """Whether training seed ``seed`` renders its ``quiet`` variant at share ``p_quiet``
    (a fixed draw per seed, so a pool is the same however it is split into chunks)."""
    return _drawn(seed, p_quiet, 4242)


def sample_scene(seed: int, split: str | None = None, seconds: float = DEFAULT_SECONDS) -> Scene:
    """The scene of ``seed`` in ``split`` (``None``: the seed picks the split).

    ``speech``: one talking face; ``ambient``: 1-3 sounding objects;
    ``complex``: a talking face plus 1-2 sounding objects. Deterministic.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"sample_scene: seed must be a non-negative int, got {seed!r}")
    if split is not None and split not in SPLITS:
        raise ValueError(f"sample_scene: split {split!r} unknown; expected None or one of {SPLITS}")
    if not MIN_SECONDS <= float(seconds) <= MAX_SECONDS:
        raise ValueError(f"sample_scene: seconds={seconds} outside the supported {MIN_SECONDS}-{MAX_SECONDS} s")
    seed = int(seed)
    if split is None:
        split = SPLITS[int(np.random.default_rng([seed, 7]).choice(3, p=[0.3, 0.35, 0.35]))]
    rng = np.random.default_rng([seed, SPLITS.index(split), 1234])
    num_frames = int(round(float(seconds) * FPS))

    slots = list(rng.permutation(3))
    colours = list(rng.permutation(list(COLOURS)))
    face, objects, taken = None, [], []
    if split in ("speech", "complex"):
        face_slot = 1 if (split == "speech" and rng.random() < 0.5) else int(slots.pop(0))
        if face_slot in slots:
            slots.remove(face_slot)
        face = _sample_face(rng, face_slot, num_frames, hair=str(colours.pop()), big_allowed=split == "speech",
                            syllables_per_s=2.6 if split == "speech" else 1.6)
        taken = list(face.onsets)
    if split == "ambient":
        n_obj = int(rng.integers(1, 4))
    elif split == "complex":
        n_obj = int(rng.integers(1, 3))
    else:
        n_obj = 0
    for i in range(n_obj):
        kind = str(OBJECT_KINDS[int(rng.integers(0, len(OBJECT_KINDS)))])
        obj = _sample_object(rng, i, kind, str(colours.pop()), int(slots[i % len(slots)]), num_frames, taken)
        if obj is not None:
            objects.append(obj)
            taken += obj.event_frames
    scene = Scene(
        seed=seed, split=split, seconds=float(seconds),
        background_pattern=str(BACKGROUND_PATTERNS[int(rng.integers(0, len(BACKGROUND_PATTERNS)))]),
        background_colour=str(list(BACKGROUND_COLOURS)[int(rng.integers(0, len(BACKGROUND_COLOURS)))]),
        background_phase=float(rng.uniform(0, 1)),
        ambience=str(AMBIENCES[int(rng.integers(0, len(AMBIENCES)))]),
        ambience_level=float(rng.uniform(0.01, 0.035)),
        face=face, objects=objects, noise_seed=int(rng.integers(0, 2**31)))
    scene.prompt, scene.audio_caption = prompts.write_texts(scene, rng)
    return scene
