"""The event vocabulary: every fact about a session, as one discriminated union on ``type``.

Events are what the log stores and what clients receive. The envelope is the same for all
of them (``id``, ``session_id``, ``turn_id``, ``type``, ``ts``, ``data``); only ``data``
differs. ``id`` is the Redis stream id and stays ``None`` until the event is appended.
Audio travels as raw bytes inside ``data.audio``: binary in Redis, base64 in JSON.

Event types are extended, never renamed: clients and stored logs depend on the names.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from schemas._errors import ErrorCode, ErrorPayload
from schemas._retrieval import Citation, RetrievalStrategy
from schemas._session import (
    AudioFormat,
    CancelReason,
    ResponseMode,
    ResponseStatus,
    SessionSettings,
)
from schemas._types import Base64Bytes

_DATA_CONFIG = ConfigDict(frozen=True, extra="forbid")


def now_ms() -> int:
    """The server clock in milliseconds, the unit of every ``ts``."""
    return time.time_ns() // 1_000_000


class EventData(BaseModel):
    """Base of every event payload."""

    model_config = _DATA_CONFIG


class AudioData(EventData):
    """A payload that carries audio. ``audio`` is stored as a binary stream field."""

    format: AudioFormat = AudioFormat.PCM16
    sample_rate: int = Field(gt=0)
    audio: Base64Bytes = Field(repr=False)


# ---- payloads -------------------------------------------------------------------------


class SessionCreatedData(EventData):
    settings: SessionSettings


class SessionUpdatedData(EventData):
    settings: SessionSettings
    changed: tuple[str, ...] = ()


class SessionClosedData(EventData):
    reason: str = "client"


class SpeechBoundaryData(EventData):
    audio_ms: int = Field(ge=0, description="position in the session's input audio")


class SpeechStoppedData(SpeechBoundaryData):
    """Where speech stopped, and how the end of the turn was decided there."""

    silence_ms: int | None = Field(
        default=None, ge=0,
        description="silence heard after audio_ms when the turn was ended (audio_ms + "
        "silence_ms is where in the input it ended); 0: cut mid-speech (a commit, the "
        "length limit)",
    )
    end_of_turn: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="the end-of-turn model's probability that the turn was complete, at "
        "the last pause (smart turn detection); null: not judged",
    )


class InputAudioData(AudioData):
    """One utterance as VAD cut it (or as the client committed it)."""

    duration_ms: int = Field(ge=0)
    start_ms: int | None = Field(
        default=None, ge=0,
        description="where the audio starts in the session's input (its onset minus "
        "padding); with the silence between, the log holds the input as VAD heard it "
        "(null in logs older than it)",
    )


class InputTextData(EventData):
    text: str


class TranscriptData(EventData):
    text: str
    language: str | None = None


class TranscriptRefinedData(TranscriptData):
    source_event_id: str


class ResponseStartedData(EventData):
    mode: ResponseMode = "streaming"
    input_event_id: str | None = None
    prepared_ms: int | None = Field(
        default=None, ge=0,
        description="a preemptive reply (prepared during a pause, sent when the turn "
        "ended): how long before it was sent its preparation began, in ms; its head start",
    )


class TextDeltaData(EventData):
    delta: str


class SentenceData(EventData):
    index: int = Field(ge=0)
    text: str


class AudioChunkData(AudioData):
    sentence_index: int = Field(ge=0)
    chunk_index: int = Field(ge=0, description="index within the response, over all sentences")
    end_ms: int | None = Field(
        default=None, ge=0,
        description="where this chunk ends in the response's audio, in ms from its start "
        "(what a client reports with response.truncate; null in logs older than it)",
    )


class AudioDoneData(EventData):
    sentence_count: int = Field(ge=0)
    chunk_count: int = Field(ge=0)


class ResponseDoneData(EventData):
    text: str
    status: ResponseStatus = "completed"


class ResponseCancelledData(EventData):
    reason: CancelReason = "client"
    text_sent: str = ""
    sentences_sent: int = 0
    chunks_sent: int = 0


class ResponseHeldData(EventData):
    """Speech over a reply (``interruptions: confirmed``): where in the input it started
    (paused) or stopped (resumed), and what it said when it was judged a backchannel."""

    audio_ms: int = Field(ge=0, description="position in the session's input audio")
    transcript: str = Field(default="", description="resumed: what the listener said")


class ResponseTruncatedData(EventData):
    """What the user heard of a reply: its audio up to ``audio_end_ms``, as the client
    reported (``response.truncate``). The history the LLM sees holds ``text_heard``."""

    audio_end_ms: int = Field(ge=0, description="the audio played, in ms from its start")
    audio_ms: int = Field(ge=0, description="the reply's audio sent, in ms")
    text_heard: str = Field(
        description="the sentences played in full, and the words of the one playing in "
        "proportion to its audio played",
    )


class ResyncRequiredData(EventData):
    """The reader asked for events older than the trim horizon: fetch the session anew."""

    horizon: str | None = Field(default=None, description="newest trimmed event id")
    message: str = ""


class NarrationReadyData(EventData):
    chunk_count: int = Field(ge=0)


# -- retrieval --


class CitationsData(EventData):
    """The passages the reply was grounded in, best first (empty: none found)."""

    citations: tuple[Citation, ...] = ()
    strategy: RetrievalStrategy = "bm25"
    retrieval_ms: float = Field(default=0.0, ge=0, description="time the search took")


class WarningData(EventData):
    """Something went wrong on the side and the turn went on (a failed or slow search, a
    log write that failed): the client may tell the user; nothing needs to be retried."""

    code: ErrorCode
    message: str
    stage: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class SpeculationDiscardedData(EventData):
    """A reply prepared during a pause was dropped unsent (preemptive turns): wasted work."""

    reason: Literal[
        "speech_resumed", "transcript_changed", "superseded", "failed", "closed"
    ]
    audio_ms: int = Field(ge=0, description="where the paused speech stopped")
    transcript: str = Field(default="", description="what the pause's transcript said")
    events_dropped: int = Field(default=0, ge=0, description="reply events prepared, unsent")


# ---- envelopes ------------------------------------------------------------------------


class EventBase(BaseModel):
    """The envelope shared by every event."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str | None = Field(default=None, description="Redis stream id, set when appended")
    session_id: str = Field(min_length=1, max_length=128)
    turn_id: str | None = Field(default=None, max_length=128)
    ts: int = Field(default_factory=now_ms, description="server clock, ms since epoch")


class SessionCreated(EventBase):
    type: Literal["session.created"] = "session.created"
    data: SessionCreatedData


class SessionUpdated(EventBase):
    type: Literal["session.updated"] = "session.updated"
    data: SessionUpdatedData


class SessionClosed(EventBase):
    type: Literal["session.closed"] = "session.closed"
    data: SessionClosedData = Field(default_factory=SessionClosedData)


class SpeechStarted(EventBase):
    type: Literal["input.speech_started"] = "input.speech_started"
    data: SpeechBoundaryData


class SpeechStopped(EventBase):
    type: Literal["input.speech_stopped"] = "input.speech_stopped"
    data: SpeechStoppedData


class InputAudio(EventBase):
    type: Literal["input.audio"] = "input.audio"
    data: InputAudioData


class InputText(EventBase):
    type: Literal["input.text"] = "input.text"
    data: InputTextData


class TranscriptPartial(EventBase):
    type: Literal["transcript.partial"] = "transcript.partial"
    data: TranscriptData


class TranscriptFinal(EventBase):
    type: Literal["transcript.final"] = "transcript.final"
    data: TranscriptData


class TranscriptRefined(EventBase):
    type: Literal["transcript.refined"] = "transcript.refined"
    data: TranscriptRefinedData


class ResponseStarted(EventBase):
    type: Literal["response.started"] = "response.started"
    data: ResponseStartedData = Field(default_factory=ResponseStartedData)


class ResponseTextDelta(EventBase):
    type: Literal["response.text.delta"] = "response.text.delta"
    data: TextDeltaData


class ResponseSentence(EventBase):
    type: Literal["response.sentence"] = "response.sentence"
    data: SentenceData


class ResponseAudioChunk(EventBase):
    type: Literal["response.audio.chunk"] = "response.audio.chunk"
    data: AudioChunkData

    def without_audio(self) -> ResponseAudioChunk:
        """The chunk with empty ``audio``: its place and time, not its sound (what a
        WebRTC call's events channel says while its track plays the sound)."""
        return self.model_copy(update={"data": self.data.model_copy(update={"audio": b""})})


class ResponseAudioDone(EventBase):
    type: Literal["response.audio.done"] = "response.audio.done"
    data: AudioDoneData


class ResponseDone(EventBase):
    type: Literal["response.done"] = "response.done"
    data: ResponseDoneData


class ResponseCancelled(EventBase):
    type: Literal["response.cancelled"] = "response.cancelled"
    data: ResponseCancelledData = Field(default_factory=ResponseCancelledData)


class ResponsePaused(EventBase):
    """The listener spoke over the reply: stop playing it, keep what comes; the reply is
    either resumed (``response.resumed``) or cancelled (``response.cancelled``, or the
    next turn's ``input.audio`` for a reply no longer being written)."""

    type: Literal["response.paused"] = "response.paused"
    data: ResponseHeldData


class ResponseResumed(EventBase):
    """The speech over the reply was a backchannel, a cough or a noise: play on from where
    playback paused (every chunk is in the log; none was lost or repeated)."""

    type: Literal["response.resumed"] = "response.resumed"
    data: ResponseHeldData


class ResponseTruncated(EventBase):
    """The reply was played only up to a point: later turns remember only that much."""

    type: Literal["response.truncated"] = "response.truncated"
    data: ResponseTruncatedData


class NarrationReady(EventBase):
    type: Literal["narration.ready"] = "narration.ready"
    data: NarrationReadyData


class SessionResyncRequired(EventBase):
    """Sent to one reader, never logged: what it missed was trimmed (see ``data``)."""

    type: Literal["session.resync_required"] = "session.resync_required"
    data: ResyncRequiredData = Field(default_factory=ResyncRequiredData)


class SpeculationDiscarded(EventBase):
    """No turn: the speculative turn never existed for the client."""

    type: Literal["speculation.discarded"] = "speculation.discarded"
    data: SpeculationDiscardedData


class ErrorEvent(EventBase):
    type: Literal["error"] = "error"
    data: ErrorPayload


class ResponseCitations(EventBase):
    """What the reply cites; sent after its text and before ``response.done``."""

    type: Literal["response.citations"] = "response.citations"
    data: CitationsData = Field(default_factory=CitationsData)


class WarningEvent(EventBase):
    type: Literal["warning"] = "warning"
    data: WarningData


Event: TypeAlias = Annotated[
    SessionCreated
    | SessionUpdated
    | SessionClosed
    | SpeechStarted
    | SpeechStopped
    | InputAudio
    | InputText
    | TranscriptPartial
    | TranscriptFinal
    | TranscriptRefined
    | ResponseStarted
    | ResponseTextDelta
    | ResponseSentence
    | ResponseAudioChunk
    | ResponseAudioDone
    | ResponseDone
    | ResponseCancelled
    | ResponseTruncated
    | ResponsePaused
    | ResponseResumed
    | NarrationReady
    | SessionResyncRequired
    | ErrorEvent
    | ResponseCitations
    | WarningEvent
    | SpeculationDiscarded,
    Field(discriminator="type"),
]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

EVENT_CLASSES: dict[str, type[EventBase]] = {
    cls.model_fields["type"].default: cls for cls in EventBase.__subclasses__()
}

EVENT_TYPES: tuple[str, ...] = tuple(EVENT_CLASSES)


def parse_event(obj: dict[str, Any]) -> Event:
    """Validate a plain dict (from JSON or the log) into its event class."""
    return EVENT_ADAPTER.validate_python(obj)
