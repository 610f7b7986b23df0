"""Messages a client sends over the native socket (``/v1/sessions/{id}/ws``), and their parser.

Text frames are JSON objects discriminated on ``type``; binary frames are raw PCM16 mono at
the session's input rate (the same as ``input_audio.append`` without the base64). The parser
turns every kind of bad input into a :class:`ProtocolError` with a stable code, so the
socket can answer with an ``error`` event and keep the session alive.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from schemas._errors import ErrorCode, InputTooLargeError, InvalidAudioError, ProtocolError
from schemas._retrieval import SearchToolConfig
from schemas._tools import MAX_TOOL_OUTPUT_CHARS
from schemas._types import Base64Bytes

#: Default upper bound of one client frame (text or binary), in bytes.
MAX_MESSAGE_BYTES = 1 << 20
#: Default upper bound of typed input, in characters.
MAX_TEXT_CHARS = 4000
#: Default upper bound of nesting in one JSON document (a session.update needs 4).
MAX_JSON_DEPTH = 32

#: brackets kept (``{}`` read as ``[]``: depth does not care which), every other byte dropped
_BRACKETS = bytes.maketrans(b"{}", b"[]"), bytes(set(range(256)) - set(b"[]{}"))


class ClientMessage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str | None = Field(default=None, max_length=128, description="client's own id")


class SessionUpdate(ClientMessage):
    """Change settings; a partial object, validated whole against the current settings."""

    type: Literal["session.update"] = "session.update"
    settings: dict[str, Any]


class InputAudioAppend(ClientMessage):
    type: Literal["input_audio.append"] = "input_audio.append"
    audio: Base64Bytes = Field(repr=False, description="base64 audio in the session's "
                              "input_format (PCM16 mono by default) at its input rate")


class InputAudioCommit(ClientMessage):
    """End the current utterance now (push-to-talk), without waiting for VAD."""

    type: Literal["input_audio.commit"] = "input_audio.commit"


class InputTextMessage(ClientMessage):
    type: Literal["input.text"] = "input.text"
    text: str = Field(min_length=1)
    search_tool_config: SearchToolConfig | None = Field(
        default=None, description="search a collection for this turn (replaces the session's)"
    )
    respond: bool | None = Field(
        default=None,
        description="reply to it at once; false: log the turn and wait for response.create; "
        "unset: the session's auto_response",
    )


class ResponseCancel(ClientMessage):
    type: Literal["response.cancel"] = "response.cancel"


class ResponseTruncate(ClientMessage):
    """The position played of a reply's audio: the user heard it up to ``audio_end_ms``.

    Send it when playback stops before the end (the user interrupted, the app stopped
    the sound): the reply still running is cancelled, and the history the LLM sees keeps
    only the text heard (``response.truncated``). OpenAI's ``conversation.item.truncate``.
    """

    type: Literal["response.truncate"] = "response.truncate"
    turn_id: str | None = Field(
        default=None, max_length=128, description="the reply's turn; unset: the newest reply"
    )
    audio_end_ms: int = Field(ge=0, description="the audio played, in ms from the reply's start")


class InputAudioClear(ClientMessage):
    """Drop the audio not yet cut into an utterance (and the detector's state)."""

    type: Literal["input_audio.clear"] = "input_audio.clear"


class ResponseCreate(ClientMessage):
    """Reply to the newest user turn that has no reply yet (for sessions with
    ``auto_response`` off, or text sent with ``respond: false``)."""

    type: Literal["response.create"] = "response.create"


class ToolOutput(ClientMessage):
    """The output of a call the client ran: a ``function`` tool's call, which
    ``tool.call.started`` (``runs_on: client``) told. The reply goes on once the client
    asks (``respond``, or ``response.create``); OpenAI's ``function_call_output`` item."""

    type: Literal["tool.output"] = "tool.output"
    call_id: str = Field(min_length=1, max_length=128)
    output: str = Field(max_length=MAX_TOOL_OUTPUT_CHARS)
    respond: bool = Field(
        default=False,
        description="go on with the reply now (as response.create does), unless another "
        "call of the turn still waits for its output",
    )


class SessionResume(ClientMessage):
    """Replay every event after ``last_event_id``, then continue live."""

    type: Literal["session.resume"] = "session.resume"
    last_event_id: str = Field(pattern=r"^\d+-\d+$")


ClientMessageUnion: TypeAlias = Annotated[
    SessionUpdate
    | InputAudioAppend
    | InputAudioCommit
    | InputTextMessage
    | ResponseCancel
    | SessionResume
    | InputAudioClear
    | ResponseCreate
    | ResponseTruncate
    | ToolOutput,
    Field(discriminator="type"),
]

CLIENT_MESSAGE_ADAPTER: TypeAdapter[ClientMessageUnion] = TypeAdapter(ClientMessageUnion)
CLIENT_MESSAGE_TYPES: tuple[str, ...] = (
    "session.update",
    "input_audio.append",
    "input_audio.commit",
    "input.text",
    "response.cancel",
    "session.resume",
    "input_audio.clear",
    "response.create",
    "response.truncate",
    "tool.output",
)


def check_json_depth(raw: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse JSON nested deeper than ``max_depth`` *before* it is parsed
    (:class:`ProtocolError` ``json_too_deep``): Python's parser recurses per level, and a
    2 KB frame nested 1000 deep raised ``RecursionError`` instead of an error event.

    A cheap scan at C speed (``bytes`` methods, no per-byte Python): strings are dropped
    (escapes first, then every other run between quotes), then every byte but the
    brackets; each pass then removes the innermost empty pairs, so JSON at most
    ``max_depth`` deep is gone after ``max_depth`` passes (a flat megabyte of ``[]``
    after one). A frame with no more openers than the limit is not scanned at all.
    Malformed JSON is left to the parser. Cost: well under a millisecond for ordinary
    frames; ~0.1 s for the worst megabyte (a third of a million empty strings).
    """
    data = raw.encode() if isinstance(raw, str) else raw
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return
    unescaped = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside_strings = b"".join(unescaped.split(b'"')[::2])
    if _deeper_than(outside_strings.translate(*_BRACKETS), max_depth):
        raise ProtocolError(
            f"JSON nested deeper than {max_depth} levels", code=ErrorCode.JSON_TOO_DEEP,
            limit=max_depth,
        )


def _deeper_than(brackets: bytes, limit: int) -> bool:
    for done in range(limit):
        if len(brackets) + done <= limit:  # what is left cannot be deeper than its length
            return False
        inner = brackets.replace(b"[]", b"")
        if len(inner) == len(brackets):
            return False  # unbalanced: not JSON, the parser says so
        brackets = inner
    return b"[]" in brackets


def parse_client_message(
    raw: str | bytes,
    *,
    max_bytes: int = MAX_MESSAGE_BYTES,
    max_text_chars: int = MAX_TEXT_CHARS,
    max_depth: int = MAX_JSON_DEPTH,
) -> ClientMessageUnion:
    """Parse one JSON text frame; raise :class:`ProtocolError` with a code on bad input.

    The size check comes first so an oversized frame is never decoded, then the nesting
    (:func:`check_json_depth`) so a deep one is never parsed.
    """
    obj = load_json_frame(raw, max_bytes=max_bytes, max_depth=max_depth)
    kind = obj.get("type")
    if kind not in CLIENT_MESSAGE_TYPES:
        raise ProtocolError(
            f"unknown message type {kind!r}; expected one of {', '.join(CLIENT_MESSAGE_TYPES)}",
            code=ErrorCode.UNKNOWN_MESSAGE_TYPE,
            type=str(kind),
        )
    try:
        message = CLIENT_MESSAGE_ADAPTER.validate_python(obj)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'][1:]) or kind}: {err['msg']}"
            for err in exc.errors()
        )
        if kind == "input_audio.append":
            raise InvalidAudioError(f"invalid {kind}: {problems}") from None
        raise ProtocolError(f"invalid {kind}: {problems}", code=ErrorCode.INVALID_MESSAGE) from None
    if isinstance(message, InputTextMessage) and len(message.text) > max_text_chars:
        raise InputTooLargeError(
            f"text of {len(message.text)} characters is over the limit of {max_text_chars}",
            code=ErrorCode.TEXT_TOO_LONG,
            limit=max_text_chars,
        )
    return message  # audio is checked where the session decodes it (its input_format)


def load_json_frame(
    raw: str | bytes, *, max_bytes: int = MAX_MESSAGE_BYTES, max_depth: int = MAX_JSON_DEPTH
) -> dict[str, Any]:
    """One text frame as a JSON object, under the frame limits (any socket protocol):
    ``message_too_large`` before decoding, ``json_too_deep`` before parsing, then
    ``invalid_json`` or ``invalid_message`` (not an object)."""
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > max_bytes:
        raise InputTooLargeError(
            f"message of {size} bytes is over the limit of {max_bytes}",
            limit=max_bytes,
            size=size,
        )
    check_json_depth(raw, max_depth)
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(
            f"message is not valid JSON: {exc}", code=ErrorCode.INVALID_JSON
        ) from None
    except RecursionError:  # a deep run the scan could not see (malformed around it)
        raise ProtocolError(
            "JSON nested too deep", code=ErrorCode.JSON_TOO_DEEP, limit=max_depth
        ) from None
    if not isinstance(obj, dict):
        raise ProtocolError("message must be a JSON object", code=ErrorCode.INVALID_MESSAGE)
    return obj


def check_pcm16(audio: bytes, *, allow_empty: bool = False) -> bytes:
    """PCM16 is whole 2-byte samples: an odd byte count means a client framing bug."""
    if not audio and not allow_empty:
        raise InvalidAudioError("no audio: the PCM16 buffer is empty", code=ErrorCode.EMPTY_INPUT)
    if len(audio) % 2:
        raise InvalidAudioError(
            f"PCM16 audio must have an even number of bytes, got {len(audio)}",
            bytes=len(audio),
        )
    return audio
