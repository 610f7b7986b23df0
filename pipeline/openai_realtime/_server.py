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
from collections.abc import Callable
from typing import Any

from pipeline.openai_realtime._frames import (
    Frame,
    error_frame,
    local_id,
    message_item,
    session_object,
)
from pipeline.openai_realtime._tools import CallItems
from schemas import Event, EventBase

#: rough tokens per character, for the usage a response reports (no tokenizer here)
_CHARS_PER_TOKEN = 4

#: GA event names → the beta API's
BETA_NAMES: dict[str, str] = {
    "response.output_text.delta": "response.text.delta",
    "response.output_text.done": "response.text.done",
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
}

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
        #: the newest turn's responses so far: a turn goes on after its client's tool
        #: outputs in a new response (``resp_<turn>_<n>``, item ``item_<turn>_out_<n>``)
        self._nth: tuple[str, int] = ("", 0)
        self._calls = CallItems(beta=beta)

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
        item_in = f"item_{turn}_in"
        if kind == "response.started":
            self._nth = (turn, self._nth[1] + 1 if self._nth[0] == turn else 0)
            self._calls.new_response()
        response_id, item_out = self._ids(turn)
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
                     "output_index": 0, "item": message_item(item_out, "in_progress", [])},
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
            case "tool.call.started":
                return self._calls.started(data, response_id)
            case "tool.call.output" | "tool.call.failed" | "tool.call.cancelled":
                frames = self._calls.ended(kind, data, self._last_item)
                if frames and frames[0]["type"].startswith("conversation."):
                    self._last_item = frames[0]["item"]["id"]
                return frames
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
        response_id, item_out = self._ids(turn)
        part = self._part(spoken, text)
        content = ({"type": "output_audio", "transcript": text} if spoken
                   else {"type": "output_text", "text": text})
        item = message_item(item_out, "completed" if status == "completed" else "incomplete",
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
        response = self._response(response_id, status, [item, *self._calls.items], spoken)
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

    def _ids(self, turn: str) -> tuple[str, str]:
        """The id of the turn's running response and of its message item."""
        nth = self._nth[1] if self._nth[0] == turn else 0
        suffix = f"_{nth}" if nth else ""
        return f"resp_{turn}{suffix}", f"item_{turn}_out{suffix}"

    def _where(self, turn: str) -> Frame:
        response_id, item_out = self._ids(turn)
        return {"response_id": response_id, "item_id": item_out,
                "output_index": 0, "content_index": 0}

    @staticmethod
    def _part(spoken: bool, text: str) -> Frame:
        return {"type": "audio", "transcript": text} if spoken else {"type": "text",
                                                                      "text": text}

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
