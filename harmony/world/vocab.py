"""The world's small vocabulary: colours, object kinds, backgrounds, syllables, words.

Every prompt, audio caption and transcript the world writes is made of the
words listed here, so a tiny word-level tokenizer (``tokenize``) covers them
all; ``vocabulary()`` returns the full sorted word list.
"""
from __future__ import annotations

import re

# Object / hair colours: bright, saturated, distinct hues (RGB in 0..1).
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.92, 0.16, 0.14),
    "orange": (0.98, 0.55, 0.08),
    "yellow": (0.95, 0.90, 0.12),
    "green": (0.18, 0.82, 0.22),
    "cyan": (0.12, 0.85, 0.90),
    "blue": (0.18, 0.32, 0.98),
    "purple": (0.62, 0.22, 0.90),
    "pink": (0.98, 0.45, 0.75),
}

# Background colours: dark and muted so objects stand out.
BACKGROUND_COLOURS: dict[str, tuple[float, float, float]] = {
    "gray": (0.33, 0.33, 0.35),
    "brown": (0.33, 0.23, 0.16),
    "navy": (0.08, 0.10, 0.30),
    "olive": (0.28, 0.30, 0.12),
    "black": (0.05, 0.05, 0.06),
    "teal": (0.06, 0.26, 0.26),
}
BACKGROUND_PATTERNS = ("plain", "striped", "checkered", "gradient")

# Face skin tones (low saturation, so they never read as an object colour).
SKIN_TONES = ((0.88, 0.74, 0.62), (0.76, 0.58, 0.46), (0.56, 0.41, 0.31), (0.93, 0.82, 0.74))

OBJECT_KINDS = ("ball", "block", "lamp")
# What each kind does on an event, and the sound it makes.
EVENT_OF_KIND = {"ball": "bounce", "block": "hit", "lamp": "flash", "face": "syllable"}
SOUND_OF_KIND = {"ball": "thud", "block": "knock", "lamp": "chime"}
SIZES = ("small", "large")
POSITIONS = ("left", "middle", "right")
AMBIENCES = ("quiet", "hum", "wind", "rain")
VOICE_PITCHES = ("low", "medium", "high")

CONSONANTS = ("b", "d", "g", "k", "l", "m", "n", "p", "s", "t")
VOWELS = ("a", "e", "i", "o", "u")
SYLLABLES = tuple(c + v for c in CONSONANTS for v in VOWELS)

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen")
TIMES_WORDS = {1: "once", 2: "twice"}

# Words used by the prompt / caption templates (prompts.py) besides the lists above.
TEMPLATE_WORDS = (
    "a an the and with on in of at over under front background wall floor times "
    "bounces hits ground slides into walls bumps flashes blinks lights up face person "
    "hair speaks says talks voice syllables thuds thud knocks knock chimes chime "
    "steady soft hum wind rain quiet room silence low high medium pitched "
    "is it there are sounds sound plus also while then meanwhile nearby scene "
    "shows someone to left right middle no events"
).split()

_TOKEN_RE = re.compile(r"[a-z]+|[0-9]+|[.,:;!?]")


def tokenize(text: str) -> list[str]:
    """Lower-case word-level tokens of ``text`` (punctuation kept as tokens)."""
    return _TOKEN_RE.findall(text.lower())


def number_word(n: int) -> str:
    """``3 -> "three"`` (0..16)."""
    if not 0 <= n < len(NUMBER_WORDS):
        raise ValueError(f"number_word: {n} is outside 0..{len(NUMBER_WORDS) - 1}")
    return NUMBER_WORDS[n]


def times_word(n: int) -> str:
    """``1 -> "once"``, ``2 -> "twice"``, ``3 -> "three times"``."""
    return TIMES_WORDS.get(n, f"{number_word(n)} times")


def vocabulary() -> list[str]:
    """Every word / punctuation token the world can write, sorted."""
    words = set(TEMPLATE_WORDS) | set(NUMBER_WORDS) | set(TIMES_WORDS.values())
    words |= set(COLOURS) | set(BACKGROUND_COLOURS) | set(BACKGROUND_PATTERNS)
    words |= set(OBJECT_KINDS) | {k + "s" for k in OBJECT_KINDS}
    words |= set(SOUND_OF_KIND.values()) | {s + "s" for s in SOUND_OF_KIND.values()}
    words |= set(SIZES) | set(POSITIONS) | set(AMBIENCES) | set(VOICE_PITCHES) | set(SYLLABLES)
    words |= set(".,:;!?")
    return sorted(words)
