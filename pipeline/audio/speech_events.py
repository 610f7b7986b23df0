"""What the endpointer says about a stream: the speech boundaries it reports.

Plain frozen records, one per kind of moment (:mod:`pipeline.audio.endpointing` decides
when each is due; :mod:`pipeline.audio.segmenting` yields them from async streams). Times
are stream times in milliseconds since the first sample pushed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipeline.audio.pcm import loudest_dbfs

__all__ = [
    "EndpointEvent",
    "SpeechEnd",
    "SpeechOnset",
    "SpeechOnsetDropped",
    "SpeechPause",
    "SpeechResume",
    "SpeechStart",
]


#: padding heard after a pause counts as silence below this loudness (a quiet room's
#: noise is -60 dBFS or less; a soft consonant, as the end of "France" in Piper's voice,
#: -42 to -35)
SILENT_DBFS = -45.0
#: the padding's loudness is its loudest 16 ms (at the detector's 16 kHz)
_LOUDNESS_WINDOW = 256


@dataclass(frozen=True, slots=True)
class SpeechStart:
    """Speech was confirmed; ``audio_ms`` is where it began (not when it was confirmed)."""

    audio_ms: int


@dataclass(frozen=True, slots=True)
class SpeechOnset:
    """A frame at ``audio_ms`` may start speech: confirmed by a :class:`SpeechStart` at the
    same ``audio_ms`` once it lasted ``min_speech_ms``, or dropped (``onsets`` only)."""

    audio_ms: int


@dataclass(frozen=True, slots=True)
class SpeechOnsetDropped:
    """The run that began at ``audio_ms`` ended before ``min_speech_ms``: no speech."""

    audio_ms: int


@dataclass(frozen=True, slots=True)
class SpeechEnd:
    """An utterance ended.

    ``audio_ms`` is where speech stopped; ``audio`` is PCM16 mono from ``start_ms`` (the
    onset minus padding) to the offset plus padding; ``duration_s`` is its length.
    ``reason`` is ``silence`` normally, ``max_length`` for a forced cut and ``flush`` when
    the stream ended mid-speech.
    """

    audio_ms: int
    audio: bytes
    duration_s: float
    start_ms: int
    reason: Literal["silence", "max_length", "flush"] = "silence"
    #: the silence heard after ``audio_ms`` when the end was decided (0 for a forced cut
    #: mid-speech): ``audio_ms + silence_ms`` is where in the stream the turn ended
    silence_ms: int = 0

    def __repr__(self) -> str:  # keep the audio out of logs
        return (
            f"SpeechEnd(audio_ms={self.audio_ms}, duration_s={self.duration_s:.3f}, "
            f"start_ms={self.start_ms}, reason={self.reason!r}, silence_ms={self.silence_ms})"
        )


@dataclass(frozen=True, slots=True)
class SpeechPause:
    """Speech stopped at ``audio_ms`` and silence has lasted ``pause_ms``: the utterance is
    probably over. ``start_ms`` is what its :class:`SpeechEnd` will carry if no speech
    follows before ``min_silence_ms``, and ``audio`` the beginning of that end's audio: all
    of it, or all but the part of the post-padding still to come (``end_bytes`` long in
    all: :meth:`covered_by`)."""

    audio_ms: int
    audio: bytes
    duration_s: float
    start_ms: int
    #: the length of the audio its SpeechEnd will carry if the silence goes on
    end_bytes: int

    def covered_by(self, end: SpeechEnd) -> bool:
        """``end`` is the utterance this pause saw: the same onset and offset, and audio that
        begins with this pause's, longer by at most the post-padding still to come, and
        that padding silent (as :attr:`padded_audio` has it). Audio cut later, by a
        commit or a forced cut, and padding the detector judged silent may both hold soft
        speech the pause never heard: below the detector's threshold, yet words."""
        return (
            (end.audio_ms, end.start_ms) == (self.audio_ms, self.start_ms)
            and len(end.audio) <= self.end_bytes
            and end.audio.startswith(self.audio)
            and loudest_dbfs(end.audio[len(self.audio):], _LOUDNESS_WINDOW) < SILENT_DBFS
        )

    @property
    def padded_audio(self) -> bytes:
        """The audio, with the post-padding still to come as digital silence: the length
        its :class:`SpeechEnd` will have if the silence goes on. What a model is given at
        the pause, so that it hears the utterance as it will be at its end: Whisper tiny.en
        heard "the capital of friends" in a pause's 1.93 s and "France" in the same speech
        with 0.19 s more of silence (on one CPU, not on another)."""
        return self.audio.ljust(self.end_bytes, b"\0")

    def __repr__(self) -> str:
        return f"SpeechPause(audio_ms={self.audio_ms}, duration_s={self.duration_s:.3f})"


@dataclass(frozen=True, slots=True)
class SpeechResume:
    """Speech came back at ``audio_ms`` after a :class:`SpeechPause`: the utterance goes on."""

    audio_ms: int


EndpointEvent = (
    SpeechStart | SpeechEnd | SpeechPause | SpeechResume | SpeechOnset | SpeechOnsetDropped
)
