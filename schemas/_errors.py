"""One exception hierarchy for Voxline, with stable codes that reach the client.

Every error a client can see carries a machine-readable :class:`ErrorCode`. The code is
the contract: messages may be reworded, codes never change meaning.

The tree, by cause::

    VoxlineError                      base; code, message, transient bit, HTTP status
    ├── ProtocolError                 the client sent something we cannot accept (4xx)
    │   ├── InvalidAudioError         audio that is not audio, a wrong rate, a corrupt file
    │   └── InputTooLargeError        a frame, message, text or upload over its limit
    ├── SessionError                  unknown session, closed session
    │   └── AuthError                 a missing (401) or wrong (403) session token
    ├── EventLogError                 the Redis event log
    │   ├── ResyncRequiredError       asked for events older than the trim horizon
    │   └── AppendConflictError       the ids of an append collided with other writes
    ├── EngineError                   a model stage (stt, llm, tts, vad) failed
    │   └── ModelMissingError         a model or package is not installed (configuration)
    └── ConfigurationError            settings that cannot work

``transient`` says whether retrying the same request may succeed (Pipecat's idea of an
error category); it is part of every error payload so clients can decide without parsing
messages.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorCode(StrEnum):
    """Stable machine-readable error codes (extend, never rename)."""

    # client input
    INVALID_JSON = "invalid_json"
    UNKNOWN_MESSAGE_TYPE = "unknown_message_type"
    INVALID_MESSAGE = "invalid_message"
    MESSAGE_TOO_LARGE = "message_too_large"
    INVALID_AUDIO = "invalid_audio"
    UNSUPPORTED_SAMPLE_RATE = "unsupported_sample_rate"
    UNSUPPORTED_FORMAT = "unsupported_format"
    EMPTY_INPUT = "empty_input"
    TEXT_TOO_LONG = "text_too_long"
    INVALID_SETTINGS = "invalid_settings"
    AUDIO_TOO_LONG = "audio_too_long"
    JSON_TOO_DEEP = "json_too_deep"
    INVALID_EVENT_ID = "invalid_event_id"
    UNKNOWN_VOICE = "unknown_voice"
    UNSUPPORTED_LANGUAGE = "unsupported_language"
    CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"  # OpenAI's code, for the same thing
    UNSUPPORTED_CONTENT = "unsupported_content"
    # sessions
    SESSION_NOT_FOUND = "session_not_found"
    SESSION_CLOSED = "session_closed"
    SESSION_ERASED = "session_erased"
    NOT_FOUND = "not_found"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    # event log
    RESYNC_REQUIRED = "resync_required"
    APPEND_CONFLICT = "append_conflict"
    EVENT_LOG_UNAVAILABLE = "event_log_unavailable"
    # engines
    STT_FAILED = "stt_failed"
    LLM_FAILED = "llm_failed"
    TTS_FAILED = "tts_failed"
    VAD_FAILED = "vad_failed"
    TURN_DETECTION_FAILED = "turn_detection_failed"
    MODEL_MISSING = "model_missing"
    ENGINE_OVERLOADED = "engine_overloaded"
    # capacity
    OVERLOADED = "overloaded"
    RATE_LIMITED = "rate_limited"
    SERVER_DRAINING = "server_draining"
    # browsers
    ORIGIN_NOT_ALLOWED = "origin_not_allowed"
    HOST_NOT_ALLOWED = "host_not_allowed"
    # retrieval (collections and the search of a turn)
    COLLECTION_NOT_FOUND = "collection_not_found"
    DOCUMENT_NOT_FOUND = "document_not_found"
    DOCUMENT_TOO_LARGE = "document_too_large"
    COLLECTION_FULL = "collection_full"
    TOO_MANY_COLLECTIONS = "too_many_collections"
    RETRIEVAL_FAILED = "retrieval_failed"
    RETRIEVAL_TIMEOUT = "retrieval_timeout"
    RERANKER_UNAVAILABLE = "reranker_unavailable"
    DOCUMENT_UNREADABLE = "document_unreadable"
    COLLECTION_QUOTA_EXCEEDED = "collection_quota_exceeded"
    LOG_WRITE_FAILED = "log_write_failed"
    # tools (a call's failure reaches the model as its output; the turn goes on)
    TOOL_FAILED = "tool_failed"
    TOOL_TIMEOUT = "tool_timeout"
    TOOL_NOT_ALLOWED = "tool_not_allowed"
    TOOL_ARGUMENTS_INVALID = "tool_arguments_invalid"
    TOOL_INTERRUPTED = "tool_interrupted"
    TOOL_CALL_LIMIT = "tool_call_limit"
    TOOL_CALL_NOT_FOUND = "tool_call_not_found"
    # everything else
    CONFIGURATION_ERROR = "configuration_error"
    INTERNAL_ERROR = "internal_error"


class ErrorPayload(BaseModel):
    """What a client receives for any error: in an ``error`` event or an HTTP body."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: ErrorCode
    message: str
    transient: bool = False
    stage: str | None = Field(default=None, description="pipeline stage: stt, llm, tts, vad, log")
    recoverable: bool = Field(
        default=True, description="true when the session (or turn) goes on after this error"
    )
    details: dict[str, Any] = Field(default_factory=dict)


class VoxlineError(Exception):
    """Base of every error Voxline raises on purpose."""

    code: ErrorCode = ErrorCode.INTERNAL_ERROR
    http_status: int = 500
    transient: bool = False
    stage: str | None = None

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
        transient: bool | None = None,
        stage: str | None = None,
        recoverable: bool = True,
        http_status: int | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        if http_status is not None:
            self.http_status = http_status
        if code is not None:
            self.code = code
        if transient is not None:
            self.transient = transient
        if stage is not None:
            self.stage = stage
        self.recoverable = recoverable
        self.details = details

    def to_payload(self) -> ErrorPayload:
        return ErrorPayload(
            code=self.code,
            message=self.message,
            transient=self.transient,
            stage=self.stage,
            recoverable=self.recoverable,
            details=self.details,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code.value!r}, message={self.message!r})"


class ProtocolError(VoxlineError):
    code = ErrorCode.INVALID_MESSAGE
    http_status = 400


class InvalidAudioError(ProtocolError):
    code = ErrorCode.INVALID_AUDIO
    http_status = 415


class InputTooLargeError(ProtocolError):
    code = ErrorCode.MESSAGE_TOO_LARGE
    http_status = 413


class SessionError(VoxlineError):
    code = ErrorCode.SESSION_NOT_FOUND
    http_status = 404

    @classmethod
    def erased(cls, session_id: str) -> SessionError:
        """The one answer about an erased session, on every path: 404 ``session_erased``."""
        return cls(f"session {session_id!r} was erased", code=ErrorCode.SESSION_ERASED,
                   recoverable=False)


class AuthError(SessionError):
    """No token (401 ``unauthorized``) or a token that is not this session's (403)."""

    code = ErrorCode.UNAUTHORIZED
    http_status = 401

    @classmethod
    def forbidden(cls, message: str) -> AuthError:
        return cls(message, code=ErrorCode.FORBIDDEN, http_status=403)


class EventLogError(VoxlineError):
    code = ErrorCode.EVENT_LOG_UNAVAILABLE
    http_status = 503
    transient = True
    stage = "log"


class ResyncRequiredError(EventLogError):
    """The reader asked for events that retention already trimmed away.

    Never a silent skip: the client must fetch state afresh (``session.resync_required``).
    """

    code = ErrorCode.RESYNC_REQUIRED
    http_status = 410
    transient = False


class AppendConflictError(EventLogError):
    code = ErrorCode.APPEND_CONFLICT
    http_status = 409
    transient = True


class EngineError(VoxlineError):
    code = ErrorCode.INTERNAL_ERROR
    http_status = 502


class ModelMissingError(EngineError):
    """A model or the package that provides it is not installed; the message names both."""

    code = ErrorCode.MODEL_MISSING
    http_status = 503


class OverloadedError(VoxlineError):
    """Past capacity: the work was refused, not queued. Retry after ``retry_after_ms``.

    HTTP answers 503 with a ``Retry-After`` header (seconds, rounded up); a socket gets an
    ``error`` event with ``details.retry_after_ms`` and the session goes on.
    """

    code = ErrorCode.OVERLOADED
    http_status = 503
    transient = True

    def __init__(self, message: str, *, retry_after_ms: int = 1000, **details: Any) -> None:
        super().__init__(message, retry_after_ms=retry_after_ms, **details)
        self.retry_after_ms = retry_after_ms


class ConfigurationError(VoxlineError):
    code = ErrorCode.CONFIGURATION_ERROR
    http_status = 500
