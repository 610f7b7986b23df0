"""Voxline's log events as OpenAI Realtime server events.

:class:`ServerTranslator` turns each event of the session's log into the OpenAI events
that say the same (one log event may become several, or none). Every server event's
``event_id`` is ``<log id>.<n>``: the log event it came from and its place among that
event's translations, so a client that reconnects with ``last_event_id=<log id>.<n>``
resumes exactly after it (:func:`parse_resume_id`, :meth:`ServerTranslator.skip_through`).
Frames that are not in the log (the greeting, acknowledgements) have ids that are not
resume points, except the greeting's: the log id the socket starts after.

Ids derive from the log, so a resumed socket names things as the first one did: the
user item of turn ``T`` is ``item_T_in``, its reply ``resp_T`` with the item
``item_T_out``. The translator's only memory is per turn: whether the reply is spoken
(``response.output_audio_transcript.*``) or text only (``response.output_text.*``),
learned from ``response.started``; a socket resumed in the middle of a reply falls back
to what the session's settings say.

``beta=True`` renames the GA events to their beta names (``response.audio.delta``,
``response.text.delta``, ``response.audio_transcript.delta`` ...) for older clients.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from pipeline.log import TurnState
from pipeline.openai_realtime._formats import to_openai
from schemas import (
    ErrorCode,
    ErrorPayload,
    Event,
    EventBase,
    ProtocolError,
    SessionSettings,
)

Frame = dict[str, Any]

#: GA event names → the beta API's
BETA_NAMES: dict[str, str] = {
    "response.output_text.delta": "response.text.delta",
    "response.output_text.done": "response.text.done",
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
}

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
#: rough tokens per character, for the usage a response reports (no tokenizer here)
_CHARS_PER_TOKEN = 4


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
        item = ServerTranslator._item(item_id, _ITEM_STATUS.get(turn.status, "in_progress"),
                                      [part])
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


def _tokens(text: str) -> int:
    return math.ceil(len(text) / _CHARS_PER_TOKEN)


class ServerTranslator:
    """Log events → OpenAI server events, for one socket (see the module docstring)."""

    def __init__(
        self, *, model: str, beta: bool = False, spoken: Callable[[], bool] = lambda: True
    ) -> None:
        self.model = model
        self.beta = beta
        #: whether a reply whose start this socket did not see is spoken
        self.spoken_default = spoken
        #: a turn's user text when this socket did not see it (for the usage estimate)
        self.user_text: Callable[[str], str] = lambda _: ""
        self._spoken: dict[str, bool] = {}  # per turn, from response.started
        self._user_text: dict[str, str] = {}  # per turn: for the usage estimate
        self._skip: tuple[str, int] | None = None
        #: where speech started over a paused reply (interruptions confirmed): OpenAI's
        #: clients stop playback at speech_started, so it is told only for an interruption
        self._held_start: int | None = None
        #: the conversation's newest item this socket saw: a new user item's
        #: ``previous_item_id`` (clients order their history by it)
        self._last_item: str | None = None
        self._previous: dict[str, str | None] = {}  # per user item: its previous_item_id

    def skip_through(self, log_id: str, index: int) -> None:
        """Resume: drop the translations of ``log_id`` up to ``index`` (seen already)."""
        self._skip = (log_id, index)

    def frames(self, event: Event) -> list[Frame]:
        """The OpenAI events for one log event, each with its ``event_id``."""
        frames = self._translate(event)
        base = event.id
        out = []
        for index, frame in enumerate(frames):
            if self.beta:
                frame["type"] = BETA_NAMES.get(frame["type"], frame["type"])
            frame.pop("event_id", None)
            out.append({"type": frame.pop("type"),
                        "event_id": f"{base}.{index}" if base else local_id(), **frame})
        if self._skip is not None and base is not None:
            log_id, seen = self._skip
            self._skip = None
            if base == log_id:
                out = out[seen + 1:]
        return out

    def forget(self, turn_id: str) -> None:
        self._spoken.pop(turn_id, None)
        self._user_text.pop(turn_id, None)
        self._previous.pop(f"item_{turn_id}_in", None)

    # ---- one log event --------------------------------------------------------------

    def _translate(self, event: EventBase) -> list[Frame]:
        turn = event.turn_id or ""
        data: Any = getattr(event, "data", None)
        kind = getattr(event, "type", "")
        item_in, item_out, response_id = f"item_{turn}_in", f"item_{turn}_out", f"resp_{turn}"
        match kind:
            case "session.created" | "session.updated":
                return [{"type": kind, "session": session_object(
                    event.session_id, data.settings, model=self.model)}]
            case "response.paused":
                self._held_start = data.audio_ms
                return []
            case "response.resumed":
                self._held_start = None
                return []
            case "input.speech_started":
                if self._held_start is not None:
                    return []  # over a paused reply: told if it proves an interruption
                return [self._speech_started(data.audio_ms)]
            case "input.speech_stopped":
                if not turn:  # a backchannel over a paused reply: no turn, nothing to tell
                    return []
                stopped = {"type": "input_audio_buffer.speech_stopped",
                           "audio_end_ms": data.audio_ms, "item_id": item_in}
                return [*self._held_speech_started(), stopped]  # an interruption after all
            case "input.audio":
                return [
                    {"type": "input_audio_buffer.committed", "item_id": item_in,
                     "previous_item_id": self._last_item},
                    *self._user_item(item_in, {"type": "input_audio", "transcript": None},
                                     done=False),
                ]
            case "input.text":
                self._user_text[turn] = data.text
                return self._user_item(item_in, {"type": "input_text", "text": data.text},
                                       done=True)
            case "transcript.partial":
                return [{"type": "conversation.item.input_audio_transcription.delta",
                         "item_id": item_in, "content_index": 0, "delta": data.text}]
            case "transcript.final":
                self._user_text[turn] = data.text
                return [
                    {"type": "conversation.item.input_audio_transcription.delta",
                     "item_id": item_in, "content_index": 0, "delta": data.text},
                    {"type": "conversation.item.input_audio_transcription.completed",
                     "item_id": item_in, "content_index": 0, "transcript": data.text,
                     "usage": {"type": "duration", "seconds": 0}},
                    *self._user_item(item_in, {"type": "input_audio",
                                               "transcript": data.text},
                                     done=True, added=False),
                ]
            case "response.started":
                self._last_item = item_out
                spoken = self._spoken[turn] = data.mode != "text"
                return [
                    {"type": "response.created",
                     "response": self._response(response_id, "in_progress", [], spoken)},
                    {"type": "response.output_item.added", "response_id": response_id,
                     "output_index": 0, "item": self._item(item_out, "in_progress", [])},
                    {"type": "response.content_part.added", **self._where(turn),
                     "part": self._part(spoken, "")},
                ]
            case "response.text.delta":
                kind = ("response.output_audio_transcript.delta" if self._is_spoken(turn)
                        else "response.output_text.delta")
                return [{"type": kind, **self._where(turn), "delta": data.delta}]
            case "response.audio.chunk":
                return [{"type": "response.output_audio.delta", **self._where(turn),
                         "delta": data.model_dump(mode="json")["audio"]}]
            case "response.audio.done":
                return [{"type": "response.output_audio.done", **self._where(turn)}]
            case "response.done":
                return self._finished(turn, data.status, data.text)
            case "response.cancelled":
                reason = "turn_detected" if data.reason == "barge_in" else "client_cancelled"
                finished = self._finished(turn, "cancelled", data.text_sent, reason)
                if data.reason == "barge_in":  # maybe known before the speech's end
                    return [*self._held_speech_started(), *finished]
                return finished
            case "response.truncated":
                return [{"type": "conversation.item.truncated", "item_id": item_out,
                         "content_index": 0, "audio_end_ms": data.audio_end_ms}]
            case "error":
                return [error_frame(data, "")]
            case _:  # session.closed (the socket closes), sentences, narration, refinements
                return []

    def _held_speech_started(self) -> list[Frame]:
        """Speech over a paused reply proved an interruption: its ``speech_started``, told
        now (once), or nothing when no speech is held back."""
        held, self._held_start = self._held_start, None
        return [] if held is None else [self._speech_started(held)]

    @staticmethod
    def _speech_started(audio_ms: int) -> Frame:
        return {"type": "input_audio_buffer.speech_started", "audio_start_ms": audio_ms,
                "item_id": ""}

    def _is_spoken(self, turn: str) -> bool:
        spoken = self._spoken.get(turn)
        return self.spoken_default() if spoken is None else spoken

    def _finished(
        self, turn: str, status: str, text: str, reason: str = "client_cancelled"
    ) -> list[Frame]:
        spoken = self._is_spoken(turn)
        response_id, item_out = f"resp_{turn}", f"item_{turn}_out"
        part = self._part(spoken, text)
        content = ({"type": "output_audio", "transcript": text} if spoken
                   else {"type": "output_text", "text": text})
        item = self._item(item_out, "completed" if status == "completed" else "incomplete",
                          [content])
        frames: list[Frame] = []
        if status != "cancelled":
            done = ("response.output_audio_transcript.done" if spoken
                    else "response.output_text.done")
            frames.append({"type": done, **self._where(turn),
                           **({"transcript": text} if spoken else {"text": text})})
        frames += [
            {"type": "response.content_part.done", **self._where(turn), "part": part},
            {"type": "response.output_item.done", "response_id": response_id,
             "output_index": 0, "item": item},
        ]
        response = self._response(response_id, status, [item], spoken)
        if status == "cancelled":
            response["status_details"] = {"type": "cancelled", "reason": reason}
        elif status == "failed":
            response["status_details"] = {"type": "failed", "error": None}
        user = self._user_text.get(turn) or self.user_text(turn)
        input_tokens, output_tokens = _tokens(user), _tokens(text)
        response["usage"] = {
            "total_tokens": input_tokens + output_tokens,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "input_token_details": {"text_tokens": input_tokens, "audio_tokens": 0,
                                    "cached_tokens": 0},
            "output_token_details": {"text_tokens": output_tokens, "audio_tokens": 0},
        }
        frames.append({"type": "response.done", "response": response})
        self.forget(turn)
        return frames

    @staticmethod
    def _where(turn: str) -> Frame:
        return {"response_id": f"resp_{turn}", "item_id": f"item_{turn}_out",
                "output_index": 0, "content_index": 0}

    @staticmethod
    def _part(spoken: bool, text: str) -> Frame:
        return {"type": "audio", "transcript": text} if spoken else {"type": "text",
                                                                      "text": text}

    @staticmethod
    def _item(item_id: str, status: str, content: list[Frame]) -> Frame:
        return {"id": item_id, "object": "realtime.item", "type": "message",
                "role": "assistant", "status": status, "content": content}

    def _user_item(self, item_id: str, part: Frame, *, done: bool,
                   added: bool = True) -> list[Frame]:
        """A user item as the API names it: GA's ``conversation.item.added`` (when it is in
        the conversation) and ``conversation.item.done`` (when it is whole: typed text at
        once, speech at its transcript); the beta's one ``conversation.item.created``."""
        item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "user",
                "status": "completed" if done else "in_progress", "content": [part]}
        if added:
            self._previous[item_id] = self._last_item
            self._last_item = item_id
        previous = self._previous.get(item_id)
        if self.beta:
            return [{"type": "conversation.item.created", "previous_item_id": previous,
                     "item": {**item, "status": "completed"}}] if added else []
        kinds = ["conversation.item.added"] * added + ["conversation.item.done"] * done
        return [{"type": kind, "previous_item_id": previous, "item": item} for kind in kinds]

    def _response(self, response_id: str, status: str, output: list[Frame],
                  spoken: bool) -> Frame:
        return {"id": response_id, "object": "realtime.response", "status": status,
                "output": output, "output_modalities": ["audio"] if spoken else ["text"],
                "conversation_id": None, "usage": None}
