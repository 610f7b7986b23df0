"""Speech and sounds over a reply, labelled: what should stop it and what should not.

The barge-in half of the turn-taking benchmark. Each item is what a listener's microphone
picks up while Voxline speaks, with its truth:

* ``backchannel``: an acknowledgement ("mm-hm", "yeah", "right"; "ja", "genau"): the reply
  should go on;
* ``noise``: a cough-like burst or a few knocks, no words: the reply should go on;
* ``interruption``: "wait", "stop", a new question: the reply should stop, at once.

Speech comes from the same packaged voices as :mod:`loadtests._turn_corpus` (Piper's
``joe``, espeak-ng's US English and German) at drawn speeds; noises are made from a seeded
generator. Every item is the sound alone (trimmed), over the same faint noise floor; the
benchmark places it inside the reply. The same seed gives the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from loadtests._turn_corpus import RATE, SPEEDS, Floats, split_at_pauses, synthesize

__all__ = ["OVERLAPS", "OverlapItem", "build_overlaps"]

OverlapKind = Literal["backchannel", "noise", "interruption"]

#: (kind, language, text); noises are named, not spoken
OVERLAPS: tuple[tuple[OverlapKind, str, str], ...] = (
    ("backchannel", "en", "Mm-hmm."),
    ("backchannel", "en", "Uh-huh."),
    ("backchannel", "en", "Yeah."),
    ("backchannel", "en", "Right."),
    ("backchannel", "en", "Okay."),
    ("backchannel", "en", "I see."),
    ("backchannel", "de", "Ja."),
    ("backchannel", "de", "Genau."),
    ("noise", "", "cough"),
    ("noise", "", "cough"),
    ("noise", "", "knocks"),
    ("interruption", "en", "Wait."),
    ("interruption", "en", "Stop."),
    ("interruption", "en", "Hold on, what about Rome?"),
    ("interruption", "en", "Actually, tell me about Berlin instead."),
    ("interruption", "de", "Warte mal."),
    ("interruption", "de", "Stopp, erzähl mir von Berlin."),
)
#: voices per language (engine, voice)
_VOICES = {"en": (("piper", "joe"), ("espeak", "en-us")), "de": (("espeak", "de"),)}
NOISE_FLOOR_DBFS = -60.0


@dataclass(frozen=True)
class OverlapItem:
    """One sound over a reply: PCM16 mono at 16 kHz, the sound from its first sample."""

    id: str
    kind: OverlapKind
    language: str
    voice: str
    text: str
    pcm16: bytes

    @property
    def duration_ms(self) -> int:
        return len(self.pcm16) // 2 * 1000 // RATE

    @property
    def should_stop(self) -> bool:
        return self.kind == "interruption"


def build_overlaps(seed: int = 0, *, languages: tuple[str, ...] = ("en", "de"),
                   limit: int | None = None) -> list[OverlapItem]:
    """Every overlap of :data:`OVERLAPS` in ``languages`` (noises in any), by every voice
    of its language, with speeds and noises drawn from ``seed``; at most ``limit`` (every
    k-th, so each kind stays in)."""
    rng = np.random.default_rng(seed)
    items: list[OverlapItem] = []
    for kind, language, text in OVERLAPS:
        if kind == "noise":
            audio = _noise(text, np.random.default_rng(int(rng.integers(2**31))))
            items.append(_item(len(items), kind, language, "noise", text, audio, rng))
            continue
        if language not in languages:
            continue
        for engine, voice in _VOICES[language]:
            speed = SPEEDS[engine][int(rng.integers(len(SPEEDS[engine])))]
            [speech] = split_at_pauses(synthesize(engine, voice, text, speed), 0)
            items.append(_item(len(items), kind, language, voice, text, speech, rng))
    if limit is not None and limit < len(items):
        step = len(items) / limit
        items = [items[int(i * step)] for i in range(limit)]
    return items


def _item(index: int, kind: OverlapKind, language: str, voice: str, text: str,
          audio: Floats, rng: np.random.Generator) -> OverlapItem:
    floor = np.random.default_rng(int(rng.integers(2**31))).normal(
        0.0, 10 ** (NOISE_FLOOR_DBFS / 20), audio.size)
    mixed = np.clip(audio + floor.astype(np.float32), -1.0, 1.0)
    pcm = np.rint(mixed * 32767).astype("<i2").tobytes()
    return OverlapItem(f"{index:03d}-{kind}-{voice}", kind, language, voice, text, pcm)


def _noise(name: str, rng: np.random.Generator) -> Floats:
    """A cough (a 250-400 ms burst of shaped noise, loud then fading) or three knocks
    (short decaying clicks 180 ms apart)."""
    if name == "cough":
        n = int(RATE * rng.uniform(0.25, 0.4))
        burst = rng.normal(0.0, 1.0, n)
        burst = np.convolve(burst, np.ones(4) / 4, mode="same")  # a little darker
        envelope = np.exp(-np.linspace(0.0, 4.0, n)) * np.minimum(1.0, np.arange(n) / (RATE * 0.01))
        return (0.4 * burst * envelope).astype(np.float32)
    knock = np.exp(-np.linspace(0.0, 30.0, int(RATE * 0.05))) * rng.normal(0, 1, int(RATE * 0.05))
    gap = np.zeros(int(RATE * 0.13))
    return (0.5 * np.concatenate([knock, gap, knock, gap, knock])).astype(np.float32)
