"""The events of one response, built in one place, and the items workers hand to them.

:class:`Emitter` builds every event of a response with its envelope and counts the text
and sentences sent, which ``response.cancelled`` reports (chunks are counted by the
response's :class:`~pipeline.turn.output.AudioOutput`, which numbers them). The small
item classes are what the turn's workers put into its outbox for the event loop of
``TurnOrchestrator.run``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from pipeline.turn.cancel import CancelReason
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


# ---- what the workers put into the outbox ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Piece:
    """Piece ``index`` of the reply, as the sentence buffer cut it."""

    index: int
    text: str


@dataclass(frozen=True, slots=True)
class Failure:
    """An error to send; ``abort`` ends the turn at once (a bug in a stage) instead of
    letting the audio already under way finish."""

    payload: ErrorPayload
    abort: bool


class Marker:
    """A sentinel with a readable repr."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


TEXT_END: Final = Marker("TEXT_END")
CANCELLED: Final = Marker("CANCELLED")


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
        """An audio chunk as :class:`~pipeline.turn.output.AudioOutput` numbered it."""
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
