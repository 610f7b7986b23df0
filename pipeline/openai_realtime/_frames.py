"""The Realtime API's frames that are not a translation of one log event: errors, the
session object, a retrieved item, and the event ids a socket resumes from.

Ids derive from the log: ``<log id>.<n>`` is a resume point (:func:`parse_resume_id`,
:func:`log_id_before`); a frame that is not in the log has a ``local_`` id.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

from pipeline.log import TurnState
from pipeline.openai_realtime._formats import to_openai
from schemas import ErrorCode, ErrorPayload, ProtocolError, SessionSettings

Frame = dict[str, Any]

#: codes that are the client's doing (OpenAI's ``invalid_request_error``)
_CLIENT_CODES = frozenset({
    ErrorCode.INVALID_JSON, ErrorCode.UNKNOWN_MESSAGE_TYPE, ErrorCode.INVALID_MESSAGE,
    ErrorCode.MESSAGE_TOO_LARGE, ErrorCode.INVALID_AUDIO, ErrorCode.UNSUPPORTED_SAMPLE_RATE,
    ErrorCode.UNSUPPORTED_FORMAT, ErrorCode.EMPTY_INPUT, ErrorCode.TEXT_TOO_LONG,
    ErrorCode.INVALID_SETTINGS, ErrorCode.AUDIO_TOO_LONG, ErrorCode.JSON_TOO_DEEP,
    ErrorCode.INVALID_EVENT_ID, ErrorCode.UNKNOWN_VOICE, ErrorCode.UNSUPPORTED_LANGUAGE,
    ErrorCode.SESSION_NOT_FOUND, ErrorCode.SESSION_CLOSED, ErrorCode.NOT_FOUND,
    ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN, ErrorCode.CONTEXT_LENGTH_EXCEEDED,
    ErrorCode.UNSUPPORTED_CONTENT,
})  # fmt: skip

_RESUME_ID = re.compile(r"^(\d+-\d+)(?:\.(\d{1,6}))?$")


def parse_resume_id(value: str) -> tuple[str, int | None] | None:
    """``<log id>.<n>`` → (log id, n); a plain log id → (log id, None): everything of
    that log event was seen. Anything else → ``None``."""
    match = _RESUME_ID.match(value)
    if match is None:
        return None
    return match[1], None if match[2] is None else int(match[2])


def log_id_before(log_id: str) -> str:
    """The stream id just before ``log_id``: reading after it starts *at* ``log_id``."""
    ms, seq = (int(part) for part in log_id.split("-"))
    if seq:
        return f"{ms}-{seq - 1}"
    return f"{ms - 1}-{2**64 - 1}" if ms else "0-0"


def error_frame(payload: ErrorPayload, event_id: str) -> Frame:
    """Voxline's error in OpenAI's shape (the code is Voxline's, unchanged), with
    ``retry_after_ms`` when the error has a retry hint (``overloaded``)."""
    details = payload.details
    error: Frame = {
        "type": "invalid_request_error" if payload.code in _CLIENT_CODES else "server_error",
        "code": payload.code.value,
        "message": payload.message,
        "param": details.get("param"),
        "event_id": details.get("event_id"),
    }
    if isinstance(details.get("retry_after_ms"), int):
        error["retry_after_ms"] = details["retry_after_ms"]
    return {"type": "error", "event_id": event_id, "error": error}


_ITEM = re.compile(r"^item_(.{1,128})_(in|out)$")
_ITEM_STATUS = {"completed": "completed", "cancelled": "incomplete", "failed": "incomplete"}


def retrieved_item(item_id: str, turns: Mapping[str, TurnState]) -> Frame:
    """``conversation.item.retrieved``: the item as the session holds it now (a reply cut
    short holds what was heard of it, as the model's history does). Items are the turns
    the live session still holds (its history window); any other is ``not_found``."""
    match = _ITEM.match(item_id)
    turn = turns.get(match[1]) if match else None
    if match is None or turn is None or (match[2] == "out" and turn.status == "open"):
        raise ProtocolError(f"no item {item_id!r} in this conversation (items are named "
                            "item_<turn>_in and item_<turn>_out, for the turns of the "
                            "history)", code=ErrorCode.NOT_FOUND, param="item_id")
    if match[2] == "in":
        part = ({"type": "input_audio", "transcript": turn.user_text}
                if turn.source == "audio" else {"type": "input_text", "text": turn.user_text})
        item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "user",
                "status": "completed", "content": [part]}
    else:
        text = turn.assistant_text
        part = ({"type": "output_audio", "transcript": text} if turn.audio_chunks
                else {"type": "output_text", "text": text})
        item = message_item(item_id, _ITEM_STATUS.get(turn.status, "in_progress"), [part])
    return {"type": "conversation.item.retrieved", "item": item}


def local_id() -> str:
    """An id for a frame that is not in the log (not a resume point)."""
    return f"local_{uuid.uuid4().hex[:16]}"


def session_object(
    session_id: str, settings: SessionSettings, *, model: str, extension: Frame | None = None
) -> Frame:
    """The session as OpenAI's ``realtime.session`` (``extension``: Voxline's ``voxline``
    member: session id, token, how to resume)."""
    turn_detection = {
        "type": "semantic_vad" if settings.turn_detection == "smart" else "server_vad",
        "silence_duration_ms": settings.end_of_speech_ms,
        "create_response": True, "interrupt_response": True,
    } if settings.auto_response else None
    session: Frame = {
        "type": "realtime",
        "object": "realtime.session",
        "id": session_id,
        "model": model,
        "output_modalities": ["audio"] if settings.realtime_tts else ["text"],
        "instructions": settings.system_prompt,
        "max_output_tokens": settings.sampling.max_tokens,
        "tools": [tool.model_dump(mode="json") for tool in settings.tools],
        "tool_choice": (settings.tool_choice.mode if settings.tool_choice.name is None
                        else {"type": "function", "name": settings.tool_choice.name}),
        "audio": {
            "input": {
                "format": to_openai(settings.input_format.value, settings.input_sample_rate),
                "transcription": {"model": "voxline-stt", "language": settings.language},
                "turn_detection": turn_detection,
            },
            "output": {
                "format": to_openai(settings.output_format.value, settings.output_sample_rate),
                "voice": settings.voice or "default",
                "speed": settings.speech_speed,
            },
        },
    }
    if extension is not None:
        session["voxline"] = extension
    return session


def message_item(item_id: str, status: str, content: list[Frame]) -> Frame:
    """An assistant message item."""
    return {"id": item_id, "object": "realtime.item", "type": "message",
            "role": "assistant", "status": status, "content": content}
