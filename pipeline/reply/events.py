"""The events of one response, built in one place.

:class:`Emitter` builds every event of a response with its envelope and counts the text
and sentences sent, which ``response.cancelled`` reports (chunks are counted by the
response's :class:`~pipeline.reply.output.AudioOutput`, which numbers them). What it
builds them from are the items the turn's workers hand the event loop of
``ReplyOrchestrator.run`` (:mod:`pipeline.reply.items`).
"""

from __future__ import annotations

from typing import Any

from pipeline.reply.cancel import CancelReason
from pipeline.reply.items import Piece
from pipeline.reply.tools import StartedCall, ToolOutcome
from schemas import (
    AudioChunkData,
    AudioDoneData,
    ErrorCode,
    ErrorEvent,
    ErrorPayload,
    Event,
    ResponseAudioChunk,
    ResponseAudioDone,
    ResponseCancelled,
    ResponseCancelledData,
    ResponseDone,
    ResponseDoneData,
    ResponseMode,
    ResponseSentence,
    ResponseStarted,
    ResponseStartedData,
    ResponseStatus,
    ResponseTextDelta,
    SentenceData,
    TextDeltaData,
    ToolCallCancelled,
    ToolCallCancelledData,
    ToolCallFailed,
    ToolCallFailedData,
    ToolCallOutput,
    ToolCallOutputData,
    ToolCallStarted,
    ToolCallStartedData,
    VoxlineError,
)


def error_payload(
    exc: BaseException, *, stage: str, code: ErrorCode, recoverable: bool, **details: Any
) -> ErrorPayload:
    """The client's view of an engine failure. A :class:`VoxlineError` keeps its own code
    (when more specific than ``internal_error``), message and transient bit; anything else
    becomes ``code`` with a plain message (what the exception said stays in the server's
    log: the caller logs it)."""
    if isinstance(exc, VoxlineError):
        if exc.code is not ErrorCode.INTERNAL_ERROR:
            code = exc.code
        return ErrorPayload(code=code, message=exc.message, transient=exc.transient,
                            stage=stage, recoverable=recoverable,
                            details={**exc.details, **details})
    return ErrorPayload(code=code, message=f"the {stage} stage failed",
                        stage=stage, recoverable=recoverable, details=details)


def ended_event(session_id: str, turn_id: str, call_id: str, outcome: ToolOutcome) -> Event:
    """A server call's end as its event: ``tool.call.output``, or ``tool.call.failed``."""
    if outcome.code is not None:
        failed = ToolCallFailedData(call_id=call_id, code=outcome.code,
                                    message=outcome.output, duration_ms=outcome.duration_ms)
        return ToolCallFailed(session_id=session_id, turn_id=turn_id, data=failed)
    data = ToolCallOutputData(call_id=call_id, output=outcome.output,
                              truncated=outcome.truncated, duration_ms=outcome.duration_ms)
    return ToolCallOutput(session_id=session_id, turn_id=turn_id, data=data)


class Emitter:
    """Builds the events of one response and counts what was sent."""

    def __init__(self, session_id: str, turn_id: str) -> None:
        self.session_id = session_id
        self.turn_id = turn_id
        self.text: list[str] = []
        self.sentences = 0

    def started(self, mode: ResponseMode, input_event_id: str | None) -> Event:
        data = ResponseStartedData(mode=mode, input_event_id=input_event_id)
        return ResponseStarted(session_id=self.session_id, turn_id=self.turn_id, data=data)

    def delta(self, text: str) -> Event:
        self.text.append(text)
        return ResponseTextDelta(session_id=self.session_id, turn_id=self.turn_id,
                                 data=TextDeltaData(delta=text))

    def sentence(self, piece: Piece) -> Event:
        self.sentences += 1
        return ResponseSentence(session_id=self.session_id, turn_id=self.turn_id,
                                data=SentenceData(index=piece.index, text=piece.text))

    def chunk(self, data: AudioChunkData) -> Event:
        """An audio chunk as :class:`~pipeline.reply.output.AudioOutput` numbered it."""
        return ResponseAudioChunk(session_id=self.session_id, turn_id=self.turn_id, data=data)

    def error(self, payload: ErrorPayload) -> Event:
        return ErrorEvent(session_id=self.session_id, turn_id=self.turn_id, data=payload)

    def audio_done(self, chunk_count: int) -> Event:
        data = AudioDoneData(sentence_count=self.sentences, chunk_count=chunk_count)
        return ResponseAudioDone(session_id=self.session_id, turn_id=self.turn_id, data=data)

    def done(self, status: ResponseStatus) -> Event:
        data = ResponseDoneData(text="".join(self.text), status=status)
        return ResponseDone(session_id=self.session_id, turn_id=self.turn_id, data=data)

    def cancelled(self, reason: CancelReason, chunks_sent: int) -> Event:
        data = ResponseCancelledData(reason=reason, text_sent="".join(self.text),
                                     sentences_sent=self.sentences, chunks_sent=chunks_sent)
        return ResponseCancelled(session_id=self.session_id, turn_id=self.turn_id, data=data)

    def tool_started(self, started: StartedCall) -> Event:
        call = started.call
        data = ToolCallStartedData(call_id=call.id, name=call.name, arguments=call.arguments,
                                   runs_on=started.runs_on, index=started.index)
        return ToolCallStarted(session_id=self.session_id, turn_id=self.turn_id, data=data)

    def tool_ended(self, call_id: str, outcome: ToolOutcome) -> Event:
        return ended_event(self.session_id, self.turn_id, call_id, outcome)

    def tool_cancelled(self, call_id: str, reason: CancelReason) -> Event:
        data = ToolCallCancelledData(call_id=call_id, reason=reason)
        return ToolCallCancelled(session_id=self.session_id, turn_id=self.turn_id, data=data)
