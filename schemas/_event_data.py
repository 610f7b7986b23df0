"""The payloads of the events (``data``): what each kind of event says.

Split from :mod:`schemas._events` (the envelopes and the union): a payload is a frozen
model that forbids unknown fields, so a stored log keeps meaning what it said.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas._errors import ErrorCode
from schemas._retrieval import Citation, RetrievalStrategy
from schemas._session import (
    AudioFormat,
    CancelReason,
    RedactKind,
    ResponseMode,
    ResponseStatus,
    SessionSettings,
)
from schemas._tools import MAX_TOOL_ARGUMENTS_CHARS, MAX_TOOL_OUTPUT_CHARS
from schemas._types import Base64Bytes

_DATA_CONFIG = ConfigDict(frozen=True, extra="forbid")


class EventData(BaseModel):
    """Base of every event payload."""

    model_config = _DATA_CONFIG


class AudioData(EventData):
    """A payload that carries audio. ``audio`` is stored as a binary stream field."""

    format: AudioFormat = AudioFormat.PCM16
    sample_rate: int = Field(gt=0)
    audio: Base64Bytes = Field(repr=False)


# ---- payloads -------------------------------------------------------------------------


class _SettingsData(EventData):
    settings: SessionSettings
    redact_required: tuple[RedactKind, ...] = Field(
        default=(), description="redaction the session's API key requires "
        "(VOXLINE_API__KEY_REDACT): always in settings.redact, whatever session.update says")


class SessionCreatedData(_SettingsData):
    tenant: str | None = Field(
        default=None, description="the API key it was made with, as a digest (retention per "
        "key); null without API keys")


class SessionUpdatedData(_SettingsData):
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
    prepared_parts: dict[str, int] | None = Field(
        default=None,
        description="a preemptive reply: where its preparation's time went, in ms, each part "
        "from the end of the one before: stt (the pause's transcript, from the preparation's "
        "start), llm_first_token, first_piece, tts_first_chunk; only the parts it reached "
        "before it was sent",
    )
    waited_ms: int | None = Field(
        default=None, ge=0,
        description="a voice turn that found every place for a reply taken "
        "(VOXLINE_ADMISSION__MAX_TURNS): how long it waited for one, in ms, before it was "
        "transcribed or its prepared reply was taken up; absent when it did not wait",
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


# -- tools --


class ToolCallData(EventData):
    """Names the call an event is about: its id is the call's idempotency key."""

    call_id: str = Field(min_length=1, max_length=128)


class ToolCallStartedData(ToolCallData):
    """The model called a tool. A server tool runs only once this is in the log; a client
    tool's call is the client's to run (its output comes back as ``tool.call.output``)."""

    name: str
    arguments: str = Field(max_length=MAX_TOOL_ARGUMENTS_CHARS, description="JSON text")
    runs_on: Literal["client", "server"]
    index: int = Field(default=0, ge=0, description="the call's place among the turn's calls")


class ToolCallOutputData(ToolCallData):
    """What the call returned, as the model reads it (a server tool's cut to the
    operator's ``max_output_chars``)."""

    output: str = Field(max_length=MAX_TOOL_OUTPUT_CHARS)
    truncated: bool = Field(default=False, description="the output was cut to the limit")
    duration_ms: int | None = Field(default=None, ge=0, description="server calls: its run")


class ToolCallFailedData(ToolCallData):
    """The call ended without an output; the model is told ``message`` as its output."""

    code: ErrorCode
    message: str
    duration_ms: int | None = Field(default=None, ge=0)


class ToolCallCancelledData(ToolCallData):
    """The response the call belonged to was cancelled before the call ended."""

    reason: CancelReason = "client"
