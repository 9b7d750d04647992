"""Plain-text prompts and audio captions of a scene.

Texts pin down what a detector can check: colours, object kinds, sizes,
positions, how many times each object sounds, the number of syllables and
the voice pitch. Phrasing varies (several templates per part, shuffled
order) so a model cannot get by on a handful of fixed sentences.
"""
from __future__ import annotations

from .vocab import SOUND_OF_KIND, number_word, times_word

_OBJECT_TEMPLATES = {
    "ball": ("a {size} {colour} ball bounces {times}{where}",
             "a {size} {colour} ball hits the ground {times}{where}",
             "{where_lead}a {size} {colour} ball bounces {times}"),
    "block": ("a {size} {colour} block slides and hits the walls {times}{where}",
              "a {size} {colour} block bumps into the walls {times}{where}",
              "{where_lead}a {size} {colour} block hits the wall {times}"),
    "lamp": ("a {size} {colour} lamp flashes {times}{where}",
             "a {size} {colour} lamp blinks {times}{where}",
             "{where_lead}a {size} {colour} lamp lights up {times}"),
}
_FACE_TEMPLATES = (
    "a {size} face with {hair} hair{where} speaks {n} syllables in a {pitch} voice",
    "a person with {hair} hair{where} says {n} syllables in a {pitch} pitched voice",
    "{where_lead}a {size} face with {hair} hair talks: {n} syllables, {pitch} voice",
)
_BACKGROUND_TEMPLATES = (
    "{pattern} {colour} background",
    "in front of a {pattern} {colour} wall",
    "on a {pattern} {colour} background",
)
_AMBIENCE_TEXT = {
    "quiet": ("in a quiet room", "over silence"),
    "hum": ("over a steady hum", "with a soft hum"),
    "wind": ("over steady wind", "with soft wind"),
    "rain": ("over soft rain", "with steady rain"),
}
_WHERE = {"left": " on the left", "middle": " in the middle", "right": " on the right"}
_WHERE_LEAD = {"left": "on the left, ", "middle": "in the middle, ", "right": "on the right, "}


def _pick(rng, options):
    return options[int(rng.integers(0, len(options)))]


def _where(rng, position):
    """Position phrase (sometimes left out: then the position is not checkable)."""
    if rng.random() < 0.2:
        return "", ""
    return _WHERE[position], _WHERE_LEAD[position]


def _object_phrase(rng, o) -> str:
    where, lead = _where(rng, o.position)
    template = _pick(rng, _OBJECT_TEMPLATES[o.kind])
    if "{where_lead}" in template and not lead:
        template = _OBJECT_TEMPLATES[o.kind][0]
    return template.format(size=o.size, colour=o.colour, times=times_word(len(o.event_frames)),
                           where=where, where_lead=lead)


def _face_phrase(rng, face) -> str:
    where, lead = _where(rng, face.position)
    template = _pick(rng, _FACE_TEMPLATES)
    if "{where_lead}" in template and not lead:
        template = _FACE_TEMPLATES[0]
    return template.format(size=face.size, hair=face.hair, where=where, where_lead=lead,
                           n=number_word(len(face.syllables)), pitch=face.voice.pitch_word)


def _sound_phrase(rng, o) -> str:
    n = len(o.event_frames)
    word = SOUND_OF_KIND[o.kind] + ("s" if n > 1 else "")
    pitch = "low" if o.size == "large" else "high"
    return f"{number_word(n)} {pitch} {word}"


def write_texts(scene, rng) -> tuple[str, str]:
    """(prompt, audio_caption) for ``scene``, phrasing drawn from ``rng``."""
    parts = []
    if scene.face is not None:
        parts.append(_face_phrase(rng, scene.face))
    parts += [_object_phrase(rng, o) for o in scene.objects]
    if len(parts) > 1 and rng.random() < 0.5:
        parts = [parts[i] for i in rng.permutation(len(parts))]
    background = _pick(rng, _BACKGROUND_TEMPLATES).format(pattern=scene.background_pattern,
                                                          colour=scene.background_colour)
    prompt = ". ".join(parts + [background]) + "."

    sounds = []
    if scene.face is not None:
        sounds.append(f"a {scene.face.voice.pitch_word} voice says {number_word(len(scene.face.syllables))} syllables")
    sounds += [_sound_phrase(rng, o) for o in scene.objects]
    if len(sounds) > 1 and rng.random() < 0.5:
        sounds = [sounds[i] for i in rng.permutation(len(sounds))]
    caption = " and ".join(sounds) if sounds else "no events"
    caption += " " + _pick(rng, _AMBIENCE_TEXT[scene.ambience]) + "."
    return prompt, caption
