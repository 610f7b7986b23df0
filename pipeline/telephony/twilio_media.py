"""Twilio Media Streams: a phone call's WebSocket messages, read and written.

A call that TwiML connects with ``<Connect><Stream url="wss://...">`` arrives as one
WebSocket of JSON text frames. Twilio sends ``connected``, then ``start`` (the stream's
and the call's ids, the audio format, the ``<Parameter>`` values of the TwiML as
``customParameters``), then ``media`` every 20 ms (base64 G.711 μ-law at 8 kHz), ``mark``
when audio we sent up to one of our marks has played, ``dtmf`` for a key press, and
``stop`` when the call ends. We send ``media`` (the reply, μ-law at 8 kHz: Twilio buffers
and plays it in order), ``mark`` after each reply's audio, and ``clear`` to drop what
Twilio still holds unplayed when the caller talks over it (barge-in).

:func:`parse_message` reads one inbound frame under the socket's limits;
:class:`CallTranslator` turns a session's log events into outbound frames. Nothing here
knows about sockets or sessions: the Gateway's route (``deployments/api/twilio.py``)
moves the frames.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from schemas import (
    AudioFormat,
    ErrorCode,
    ErrorEvent,
    Event,
    InvalidAudioError,
    ProtocolError,
    ResponseAudioChunk,
    ResponseAudioDone,
    ResponseCancelled,
    SpeechStarted,
    load_json_frame,
)

__all__ = [
    "CALL_AUDIO",
    "CallTranslator",
    "Connected",
    "Dtmf",
    "Mark",
    "Media",
    "Start",
    "Stop",
    "TwilioMessage",
    "media_audio",
    "parse_message",
]

logger = logging.getLogger(__name__)

#: what a call's session hears and speaks: G.711 μ-law at 8 kHz both ways, as Twilio does
CALL_AUDIO: dict[str, object] = {
    "input_format": "pcmu", "input_sample_rate": 8000,
    "output_format": "pcmu", "output_sample_rate": 8000,
}
_CALL_RATE = 8000

Frame: TypeAlias = dict[str, Any]
_LENIENT = ConfigDict(extra="ignore", populate_by_name=True)  # Twilio adds fields


class _Message(BaseModel):
    model_config = _LENIENT
    stream_sid: str | None = Field(default=None, alias="streamSid", max_length=64)
    sequence_number: str | None = Field(default=None, alias="sequenceNumber", max_length=20)


class Connected(_Message):
    event: Literal["connected"]
    protocol: str | None = None
    version: str | None = None


class MediaFormat(BaseModel):
    model_config = _LENIENT
    encoding: str = "audio/x-mulaw"
    sample_rate: int = Field(default=_CALL_RATE, alias="sampleRate")
    channels: int = 1


class StartInfo(BaseModel):
    model_config = _LENIENT
    stream_sid: str = Field(alias="streamSid", min_length=1, max_length=64)
    call_sid: str | None = Field(default=None, alias="callSid", max_length=64)
    account_sid: str | None = Field(default=None, alias="accountSid", max_length=64)
    tracks: list[str] = Field(default_factory=lambda: ["inbound"], max_length=4)
    media_format: MediaFormat = Field(default_factory=MediaFormat, alias="mediaFormat")
    custom_parameters: dict[str, str] = Field(
        default_factory=dict, alias="customParameters", max_length=32)


class Start(_Message):
    event: Literal["start"]
    start: StartInfo


class MediaPayload(BaseModel):
    model_config = _LENIENT
    track: str = "inbound"
    payload: str


class Media(_Message):
    event: Literal["media"]
    media: MediaPayload


class MarkName(BaseModel):
    model_config = _LENIENT
    name: str = Field(max_length=256)


class Mark(_Message):
    event: Literal["mark"]
    mark: MarkName


class Digit(BaseModel):
    model_config = _LENIENT
    digit: str = Field(max_length=4)


class Dtmf(_Message):
    event: Literal["dtmf"]
    dtmf: Digit


class Stop(_Message):
    event: Literal["stop"]


TwilioMessage: TypeAlias = Annotated[
    Connected | Start | Media | Mark | Dtmf | Stop, Field(discriminator="event")
]
_ADAPTER: TypeAdapter[TwilioMessage] = TypeAdapter(TwilioMessage)
_EVENTS = ("connected", "start", "media", "mark", "dtmf", "stop")


def parse_message(raw: str | bytes, *, max_bytes: int, max_depth: int) -> TwilioMessage:
    """One inbound frame, or a :class:`ProtocolError` (``unknown_message_type``,
    ``invalid_message``, and the frame limits' codes)."""
    obj = load_json_frame(raw, max_bytes=max_bytes, max_depth=max_depth)
    kind = obj.get("event")
    if kind not in _EVENTS:
        raise ProtocolError(f"unknown Media Streams event {kind!r}; Twilio sends "
                            f"{', '.join(_EVENTS)}", code=ErrorCode.UNKNOWN_MESSAGE_TYPE,
                            type=str(kind))
    try:
        return _ADAPTER.validate_python(obj)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"][1:])
        raise ProtocolError(f"invalid {kind}: {where}: {err['msg']}",
                            code=ErrorCode.INVALID_MESSAGE) from None


def media_audio(message: Media) -> bytes:
    """The caller's audio in a ``media`` frame (raw μ-law bytes)."""
    try:
        return base64.b64decode(message.media.payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidAudioError("media payload is not valid base64") from None


class CallTranslator:
    """A session's log events as the frames Twilio takes, for one call's stream.

    * ``response.audio.chunk`` (μ-law at 8 kHz, the call's format) → ``media``, then a
      ``mark`` named ``<turn>@<end_ms>``: Twilio echoes it when the caller has heard the
      reply up to there (:meth:`played`). Audio in another format (the session's settings
      changed by another client) is not sent;
    * ``response.audio.done`` → ``mark`` named after the turn: the whole reply heard;
    * ``response.cancelled`` by barge-in → ``clear``: what Twilio holds unplayed is dropped;
    * ``input.speech_started`` while a reply may still be playing at Twilio (its last mark
      not echoed) → ``clear`` when interruptions are ``immediate``: the reply was written
      already, so nothing on the server is cancelled, but the caller must not hear it on;
      with ``confirmed`` interruptions the reply plays on until the server cancels it.

    Each ``clear`` calls ``on_clear(turn_id, heard_ms)``: the reply and how far the caller
    heard it (its last echoed mark), for the session to log as truncated.
    """

    def __init__(
        self, stream_sid: str, interruptions: Callable[[], str],
        on_clear: Callable[[str, int], None] = lambda turn_id, heard_ms: None,
    ) -> None:
        self.stream_sid = stream_sid
        self._interruptions = interruptions
        self._on_clear = on_clear
        #: audio sent since the last mark Twilio echoed (or since the last clear)
        self.playing = False
        self._last_mark: str | None = None
        #: the reply whose audio went out last, and how far the caller heard it
        self._turn: str | None = None
        self.heard_ms = 0
        self.clears = 0

    def frames(self, event: Event) -> list[Frame]:
        if isinstance(event, ResponseAudioChunk):
            data = event.data
            if data.format is not AudioFormat.PCMU or data.sample_rate != _CALL_RATE:
                return []
            if event.turn_id != self._turn:
                self._turn, self.heard_ms = event.turn_id, 0
            self.playing = True
            frames = [{"event": "media", "streamSid": self.stream_sid,
                       "media": {"payload": base64.b64encode(data.audio).decode()}}]
            if event.turn_id is not None and data.end_ms is not None:
                frames.append(self._mark(f"{event.turn_id}@{data.end_ms}"))
            return frames
        if isinstance(event, ResponseAudioDone) and self.playing:
            self._last_mark = event.turn_id or "reply"
            return [self._mark(self._last_mark)]
        if isinstance(event, ResponseCancelled) and event.data.reason == "barge_in":
            return self._clear()
        if (isinstance(event, SpeechStarted) and self.playing
                and self._interruptions() == "immediate"):
            return self._clear()
        if isinstance(event, ErrorEvent):  # a caller cannot read it: the operator can
            logger.warning("call stream %s: %s", self.stream_sid, event.data.message)
        return []

    def played(self, name: str) -> None:
        """Twilio echoed mark ``name``: audio up to it has played (or was cleared)."""
        turn_id, _, end_ms = name.rpartition("@")
        if turn_id and turn_id == self._turn and end_ms.isdigit() and self.playing:
            self.heard_ms = max(self.heard_ms, int(end_ms))
        if name == self._last_mark:
            self.playing = False

    def _mark(self, name: str) -> Frame:
        return {"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}}

    def _clear(self) -> list[Frame]:
        if not self.playing:  # nothing of the reply left at Twilio
            return []
        self.playing = False
        self.clears += 1
        if self._turn is not None:
            self._on_clear(self._turn, self.heard_ms)
        return [{"event": "clear", "streamSid": self.stream_sid}]
