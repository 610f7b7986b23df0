"""Endpointing: turn per-frame speech probabilities into utterances.

A voice activity detector says, 32 ms at a time, how likely a frame is speech. What the
turn needs is coarser: *the user started talking* and *the user stopped; here is what
they said*. This module is that state machine, kept free of any model (no onnxruntime
import) so it is tested with made-up probabilities and reused with any detector.

The rules, all in :class:`EndpointConfig`:

* **Start** once speech lasted ``min_speech_ms``: a run opens on a frame with
  probability ``>= threshold`` and survives frames down to ``neg_threshold``; one frame
  below ``neg_threshold`` drops the run. A cough or a click is shorter and never starts
  a turn.
* **Onsets** (optional, ``onsets``): the first frame of a run that may start speech yields
  :class:`SpeechOnset`, and a run dropped before ``min_speech_ms`` yields
  :class:`SpeechOnsetDropped`, so a reply can go quiet at once and play on after a click.
* **Stop** once silence lasted ``min_silence_ms``: silence opens on a frame below
  ``neg_threshold`` and only a frame back at ``>= threshold`` closes it (hysteresis, as in
  Silero's reference code), so a probability that wobbles around one value does not
  flap between speech and silence.
* **Padding**: ``pre_padding_ms`` of audio before the onset and ``post_padding_ms`` after
  the offset stay in the utterance; the detector reacts a frame or two late and Whisper
  clips soft word onsets without it.
* **Pause** (optional, ``pause_ms``): once silence lasted that long, but not yet
  ``min_silence_ms``, a :class:`SpeechPause` carries the utterance so far, cut as its
  :class:`SpeechEnd` will be if the silence goes on: the same onset and offset, and the same
  audio, or its beginning when the pause comes before ``post_padding_ms`` of silence is in
  (what is missing is padding the detector judged silent, so a transcript of it is the
  transcript of the utterance); a frame back at ``>= threshold`` after it yields
  :class:`SpeechResume`. At most one pause per silence. Preemptive turns start the reply
  on a pause and drop it on a resume. The owner may shorten the pause for a while
  (:meth:`Endpointer.pause_after`).
* **A verdict on the pause** (optional, :meth:`Endpointer.end_silence_after`): whoever
  judged the paused utterance (an end-of-turn model) may set the silence that ends *this*
  silence, shorter than ``min_silence_ms`` when the turn sounds complete. The next silence
  is back at ``min_silence_ms`` until judged in its turn, so ``min_silence_ms`` is the
  longest a speaker may pause and still hold the turn.
* **Forced cut** at ``max_utterance_s``: the utterance ends (``reason="max_length"``) and,
  when the speaker is still talking, a new one starts at once, so a monologue cannot grow
  a buffer without bound.

Times are stream times in milliseconds since the first sample pushed. Frames may have any
size (the accounting is per sample), though Silero wants 512 samples at 16 kHz;
:class:`~pipeline.audio.framing.FrameAssembler` cuts a socket's arbitrary chunks into
such frames.
:mod:`pipeline.audio.segmenting` runs all of it over async audio streams; the events it
reports are :mod:`pipeline.audio.speech_events`'.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.audio.speech_events import (
    EndpointEvent,
    SpeechEnd,
    SpeechOnset,
    SpeechOnsetDropped,
    SpeechPause,
    SpeechResume,
    SpeechStart,
)
from schemas import InvalidAudioError

__all__ = ["EndpointConfig", "Endpointer"]


class EndpointConfig(BaseModel):
    """How speech is told from silence; validated so a bad setting fails at start-up."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sample_rate: int = Field(default=16000, gt=0)
    threshold: float = Field(default=0.5, gt=0.0, lt=1.0, description="speech at or above")
    neg_threshold: float | None = Field(
        default=None, ge=0.0, lt=1.0, description="silence below; default threshold - 0.15"
    )
    min_speech_ms: int = Field(default=250, ge=0, description="speech needed to start")
    min_silence_ms: int = Field(default=500, gt=0, description="silence needed to stop")
    pre_padding_ms: int = Field(default=300, ge=0, description="audio kept before the onset")
    post_padding_ms: int = Field(default=200, ge=0, description="audio kept after the offset")
    max_utterance_s: float = Field(default=30.0, gt=0.0, description="forced cut")
    pause_ms: int | None = Field(
        default=None, gt=0,
        description="silence that reports a pause (preemptive turns); unset: none. The "
        "paused audio is the utterance's, less any post-padding not yet heard",
    )
    onsets: bool = Field(
        default=False,
        description="report the first frame that may start speech, and the run dropped "
        "before min_speech_ms (a reply held over possible speech: interruptions confirmed)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> EndpointConfig:
        if self.neg_threshold is not None and self.neg_threshold > self.threshold:
            raise ValueError("neg_threshold must not exceed threshold")
        if self.post_padding_ms > self.min_silence_ms:
            # The padding is taken from the silence already seen when the end is decided.
            raise ValueError("post_padding_ms must not exceed min_silence_ms")
        if self.pause_ms is not None and self.pause_ms >= self.min_silence_ms:
            raise ValueError("pause_ms must be shorter than min_silence_ms")
        return self

    @property
    def silence_threshold(self) -> float:
        if self.neg_threshold is not None:
            return self.neg_threshold
        return max(self.threshold - 0.15, 0.01)

    def samples(self, ms: float) -> int:
        return round(ms * self.sample_rate / 1000)


class Endpointer:
    """The state machine; feed it with :meth:`push`, one frame and its probability at a time.

    Not thread-safe and not async: the socket handler owns one per stream and calls it
    inline (a push is a few microseconds).
    """

    def __init__(self, config: EndpointConfig | None = None) -> None:
        self.config = config or EndpointConfig()
        c = self.config
        self._min_speech = c.samples(c.min_speech_ms)
        self._min_silence = c.samples(c.min_silence_ms)
        self._pre = c.samples(c.pre_padding_ms)
        self._post = c.samples(c.post_padding_ms)
        self._max = max(c.samples(c.max_utterance_s * 1000), 1)
        self._pause = None if c.pause_ms is None else c.samples(c.pause_ms)
        self._neg = c.silence_threshold
        self.reset()

    def reset(self) -> None:
        """Forget everything: a new stream starts at time zero."""
        self._pos = 0  # samples pushed so far
        # Outside speech: recent frames as (first sample, pcm), enough for the padding.
        self._recent: deque[tuple[int, bytes]] = deque()
        self._candidate: int | None = None  # onset of a run not yet long enough
        # Inside speech:
        self._speaking = False
        self._utterance = bytearray()
        self._utterance_start = 0  # sample index of the first byte of _utterance
        self._speech_start = 0
        self._silence_start: int | None = None
        self._paused = False  # a SpeechPause was reported for the current silence
        self._silence_target = self._min_silence  # what ends the current silence

    @property
    def speaking(self) -> bool:
        return self._speaking

    def pause_after(self, pause_ms: int | None) -> None:
        """From the next frame on, report a pause after ``pause_ms`` of silence instead of
        the config's ``pause_ms`` (None: back to it; none at all when it is not shorter
        than ``min_silence_ms``, as in the config). A silence already that long is
        reported at the next frame, still at most once. For whoever needs a pause's answer
        sooner for a while: a session judges speech over a reply it holds at that
        speech's first pause, and the reply stays silent until then."""
        ms = self.config.pause_ms if pause_ms is None else pause_ms
        if ms is not None and not 0 < ms < self.config.min_silence_ms:
            ms = None
        self._pause = None if ms is None else self.config.samples(ms)

    def end_silence_after(self, silence_ms: int) -> list[EndpointEvent]:
        """The silence under way ends the utterance once it lasts ``silence_ms`` (instead of
        ``min_silence_ms``); its :class:`SpeechEnd` comes back at once when that much
        silence is already heard. Only the current silence is changed, and only after a
        :class:`SpeechPause` of it: a call at any other time does nothing."""
        if silence_ms <= 0:
            raise ValueError("silence_ms must be positive")
        if not (self._speaking and self._paused and self._silence_start is not None):
            return []
        self._silence_target = self.config.samples(silence_ms)
        if self._pos - self._silence_start >= self._silence_target:
            return [self._end_of_silence()]
        return []

    def push(self, frame: bytes, probability: float) -> list[EndpointEvent]:
        """Consume one PCM16 frame and its speech probability; return what happened."""
        if len(frame) % 2:
            raise InvalidAudioError("a PCM16 frame must have an even number of bytes")
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability {probability} is outside [0, 1]")
        start = self._pos
        self._pos += len(frame) // 2
        if self._speaking:
            return self._push_speaking(frame, probability, start)
        return self._push_silent(frame, probability, start)

    def flush(self) -> list[EndpointEvent]:
        """End of stream: close an open utterance (``reason="flush"``), then reset."""
        events: list[EndpointEvent] = []
        if self._speaking:
            offset = self._silence_start if self._silence_start is not None else self._pos
            events.append(self._end(offset, self._pos, "flush"))
        elif self._candidate is not None and self.config.onsets:
            events.append(SpeechOnsetDropped(audio_ms=self._ms(self._candidate)))
        self.reset()
        return events

    # -- states -------------------------------------------------------------------------

    def _push_silent(self, frame: bytes, probability: float, start: int) -> list[EndpointEvent]:
        self._recent.append((start, frame))
        events: list[EndpointEvent] = []
        if self._candidate is None:
            if probability >= self.config.threshold:
                self._candidate = start
                if self.config.onsets:
                    events.append(SpeechOnset(audio_ms=self._ms(start)))
        elif probability < self._neg:
            if self.config.onsets:
                events.append(SpeechOnsetDropped(audio_ms=self._ms(self._candidate)))
            self._candidate = None
        if self._candidate is not None and self._pos - self._candidate >= self._min_speech:
            return [*events, self._begin(self._candidate)]
        self._trim_recent()
        return events

    def _push_speaking(self, frame: bytes, probability: float, start: int) -> list[EndpointEvent]:
        self._utterance += frame
        resumed: list[EndpointEvent] = []
        if probability >= self.config.threshold:
            if self._paused:
                self._paused = False
                resumed.append(SpeechResume(audio_ms=self._ms(start)))
            self._silence_start = None
            self._silence_target = self._min_silence
        elif probability < self._neg and self._silence_start is None:
            self._silence_start = start
        silence = None if self._silence_start is None else self._pos - self._silence_start
        if silence is not None and silence >= self._silence_target:
            return [self._end_of_silence()]
        if self._pos - self._utterance_start >= self._max:
            if self._silence_start is not None:  # trailing silence: no new utterance
                return [self._end(self._silence_start, self._pos, "max_length")]
            end = self._end(self._pos, self._pos, "max_length")
            return [*resumed, end, self._begin(self._pos)]
        pause_due = self._pause is not None and silence is not None and silence >= self._pause
        if pause_due and not self._paused:
            self._paused = True
            return [self._paused_at()]
        return resumed

    def _end_of_silence(self) -> SpeechEnd:
        """The utterance ends where its silence began, with the post-padding kept."""
        assert self._silence_start is not None
        return self._end(self._silence_start, self._silence_start + self._post, "silence")

    def _paused_at(self) -> SpeechPause:
        """The utterance so far, cut where :meth:`_end` will cut it after this silence (or
        now, when less than the post-padding has been heard)."""
        assert self._silence_start is not None
        end_cut = self._silence_start + self._post
        audio = bytes(self._utterance[: (min(end_cut, self._pos) - self._utterance_start) * 2])
        return SpeechPause(
            audio_ms=self._ms(self._silence_start),
            audio=audio,
            duration_s=len(audio) / 2 / self.config.sample_rate,
            start_ms=self._ms(self._utterance_start),
            end_bytes=(end_cut - self._utterance_start) * 2,
        )

    # -- transitions --------------------------------------------------------------------

    def _begin(self, onset: int) -> SpeechStart:
        first = max(onset - self._pre, 0)
        pcm = bytearray()
        pcm_start: int | None = None
        for frame_start, frame in self._recent:
            frame_end = frame_start + len(frame) // 2
            if frame_end <= first:
                continue
            skip = max(first - frame_start, 0)
            pcm += frame[skip * 2 :]
            if pcm_start is None:
                pcm_start = frame_start + skip
        self._recent.clear()
        self._candidate = None
        self._speaking = True
        self._utterance = pcm
        self._utterance_start = pcm_start if pcm_start is not None else onset
        self._speech_start = onset
        self._silence_start = None
        return SpeechStart(audio_ms=self._ms(onset))

    def _end(
        self, offset: int, cut: int, reason: Literal["silence", "max_length", "flush"]
    ) -> SpeechEnd:
        cut = min(cut, self._pos)
        keep = (cut - self._utterance_start) * 2
        audio = bytes(self._utterance[:keep])
        # Audio after the cut stays around as padding for a quick next utterance.
        tail = self._utterance[keep:]
        self._recent.clear()
        if tail:
            self._recent.append((cut, bytes(tail)))
        event = SpeechEnd(
            audio_ms=self._ms(offset),
            audio=audio,
            duration_s=len(audio) / 2 / self.config.sample_rate,
            start_ms=self._ms(self._utterance_start),
            reason=reason,
            silence_ms=self._ms(self._pos - offset),
        )
        self._speaking = False
        self._utterance = bytearray()
        self._silence_start = None
        self._silence_target = self._min_silence
        self._paused = False
        self._candidate = None
        self._trim_recent()
        return event

    def _trim_recent(self) -> None:
        """Keep only what a future onset could need as padding."""
        horizon = (self._candidate if self._candidate is not None else self._pos) - self._pre
        while self._recent:
            frame_start, frame = self._recent[0]
            if frame_start + len(frame) // 2 > horizon:
                break
            self._recent.popleft()

    def _ms(self, samples: int) -> int:
        return samples * 1000 // self.config.sample_rate

