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

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, computed_field, model_validator

from schemas._errors import ErrorPayload
from schemas._event_data import (
    AudioChunkData,
    AudioDoneData,
    CitationsData,
    InputAudioData,
    InputTextData,
    NarrationReadyData,
    ResponseCancelledData,
    ResponseDoneData,
    ResponseHeldData,
    ResponseStartedData,
    ResponseTruncatedData,
    ResyncRequiredData,
    SentenceData,
    SessionClosedData,
    SessionCreatedData,
    SessionUpdatedData,
    SpeculationDiscardedData,
    SpeechBoundaryData,
    SpeechStoppedData,
    TextDeltaData,
    ToolCallCancelledData,
    ToolCallFailedData,
    ToolCallOutputData,
    ToolCallStartedData,
    TranscriptData,
    TranscriptRefinedData,
    WarningData,
)
from schemas._trace_ids import root_span_id, trace_id

#: envelope fields derived from others: written out, never read in
_DERIVED = ("trace_id", "span_id")


def now_ms() -> int:
    """The server clock in milliseconds, the unit of every ``ts``."""
    return time.time_ns() // 1_000_000


# ---- envelopes ------------------------------------------------------------------------


class EventBase(BaseModel):
    """The envelope shared by every event."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str | None = Field(default=None, description="Redis stream id, set when appended")
    session_id: str = Field(min_length=1, max_length=128)
    turn_id: str | None = Field(default=None, max_length=128)
    ts: int = Field(default_factory=now_ms, description="server clock, ms since epoch")

    @model_validator(mode="before")
    @classmethod
    def _ids_are_derived(cls, data: Any) -> Any:
        """An event read back (from the wire, a file) may carry its trace ids: they are
        derived from its session and turn, so they are dropped, never trusted."""
        if isinstance(data, dict) and ("trace_id" in data or "span_id" in data):
            data = {k: v for k, v in data.items() if k not in _DERIVED}
        return data

    @computed_field(  # type: ignore[prop-decorator]
        description="the turn's trace (W3C, 32 hex digits): the one "
                    "`voxline trace`, the live OTLP trace and the latency exemplars give "
                    "this turn, derived from session_id and turn_id; null outside a turn")
    @property
    def trace_id(self) -> str | None:
        return None if self.turn_id is None else trace_id(self.session_id, self.turn_id)

    @computed_field(  # type: ignore[prop-decorator]
        description="the turn's root span (16 hex digits): with trace_id, "
                    "a client's own spans (playback, say) join the turn's trace as its "
                    "children (traceparent 00-<trace_id>-<span_id>-01)")
    @property
    def span_id(self) -> str | None:
        trace = self.trace_id
        return None if trace is None else root_span_id(trace)


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


class ToolCallStarted(EventBase):
    type: Literal["tool.call.started"] = "tool.call.started"
    data: ToolCallStartedData


class ToolCallOutput(EventBase):
    type: Literal["tool.call.output"] = "tool.call.output"
    data: ToolCallOutputData


class ToolCallFailed(EventBase):
    type: Literal["tool.call.failed"] = "tool.call.failed"
    data: ToolCallFailedData


class ToolCallCancelled(EventBase):
    type: Literal["tool.call.cancelled"] = "tool.call.cancelled"
    data: ToolCallCancelledData


#: what ends a call: its output, its failure or its cancellation
ToolCallEnd: TypeAlias = ToolCallOutput | ToolCallFailed | ToolCallCancelled


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
    | SpeculationDiscarded
    | ToolCallStarted
    | ToolCallOutput
    | ToolCallFailed
    | ToolCallCancelled,
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
