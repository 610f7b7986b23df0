"""OpenAI Realtime client events: parsed, checked, and turned into Voxline's messages.

A client event becomes zero or more native client messages (``schemas.ClientMessageUnion``),
which the socket hands to the live session exactly as it does for ``/v1/sessions/{id}/ws``,
plus, for the few events that change nothing in the log, an acknowledgement the socket
sends at once (``input_audio_buffer.cleared``). Bad input raises a
:class:`schemas.ProtocolError` (or a subclass) with Voxline's code and, in its details,
``event_id`` (the client's) and ``param`` (the field at fault) for OpenAI's error shape.

The limits are the native socket's: a frame over ``max_message_bytes``, JSON deeper than
``max_json_depth``, text over ``max_text_chars``. Settings are strict: an output modality
other than ``text`` and ``audio`` (in ``session.update`` or ``response.create``) is
``invalid_settings``, never ignored.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from pipeline.engines import engine_voice
from pipeline.openai_realtime._client_events import (
    AudioConfig,
    AudioFormatSpec,
    AudioInputConfig,
    AudioOutputConfig,
    ClientEvent,
    Item,
    ResponseConfig,
    SessionConfig,
    TurnDetection,
)
from pipeline.openai_realtime._formats import from_beta, from_openai
from pipeline.openai_realtime._tools import tool_output, tools_patch
from schemas import (
    ClientMessageUnion,
    ErrorCode,
    InputAudioAppend,
    InputAudioClear,
    InputAudioCommit,
    InputAudioFormat,
    InputTextMessage,
    InputTooLargeError,
    InvalidAudioError,
    ProtocolError,
    ResponseCancel,
    ResponseCreate,
    ResponseTruncate,
    SessionUpdate,
    check_pcm16,
    load_json_frame,
)

#: the id the server gives a turn's reply item (``item_<turn>_out``, see ``_server``)
_REPLY_ITEM = re.compile(r"^item_(.{1,128}?)_out(?:_\d{1,4})?$")

#: output modalities a session or a response may ask for
MODALITIES: tuple[str, ...] = ("text", "audio")

#: client events this server acts on
SUPPORTED_CLIENT_EVENTS: tuple[str, ...] = (
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "response.create",
    "response.cancel",
    "conversation.item.truncate",
    "conversation.item.retrieve",
)


@dataclass(frozen=True)
class ClientActions:
    """What one client event asks: native messages for the session, and an
    acknowledgement to send at once (``None``: the log's events answer)."""

    messages: tuple[ClientMessageUnion, ...] = ()
    ack: dict[str, Any] | None = None
    event_id: str | None = None


@dataclass(frozen=True)
class ClientTranslator:
    """Turns OpenAI client events into native messages, under the socket's limits."""

    voice_map: Mapping[str, str] = field(default_factory=dict)
    max_message_bytes: int = 1 << 20
    max_text_chars: int = 4000
    max_json_depth: int = 32
    #: the session's input format now: how appended audio is checked
    input_format: Callable[[], InputAudioFormat] = lambda: InputAudioFormat.PCM16
    #: whether session.update may set the audio formats (a WebRTC call's are its
    #: tracks': there, as in OpenAI's WebRTC, they are ignored)
    audio_formats: bool = True

    def parse(self, raw: str | bytes) -> ClientEvent:
        """One text frame as a client event, or a :class:`ProtocolError`."""
        obj = load_json_frame(raw, max_bytes=self.max_message_bytes,
                              max_depth=self.max_json_depth)
        event_id = obj.get("event_id") if isinstance(obj.get("event_id"), str) else None
        kind = obj.get("type")
        if kind not in SUPPORTED_CLIENT_EVENTS:
            raise ProtocolError(
                f"unsupported event type {kind!r}; this server takes "
                f"{', '.join(SUPPORTED_CLIENT_EVENTS)}",
                code=ErrorCode.UNKNOWN_MESSAGE_TYPE, type=str(kind), param="type",
                event_id=event_id)
        try:
            return ClientEvent.model_validate(obj)
        except ValidationError as exc:
            err = exc.errors()[0]
            param = ".".join(str(p) for p in err["loc"])
            raise ProtocolError(f"invalid {kind}: {param}: {err['msg']}",
                                code=ErrorCode.INVALID_MESSAGE, param=param,
                                event_id=event_id) from None

    def actions(self, event: ClientEvent) -> ClientActions:
        """What ``event`` asks of the session; bad fields raise with ``event_id`` set."""
        try:
            return ClientActions(self._messages(event), self._ack(event), event.event_id)
        except ProtocolError as exc:
            exc.details.setdefault("event_id", event.event_id)
            raise

    def _messages(self, event: ClientEvent) -> tuple[ClientMessageUnion, ...]:
        match event.type:
            case "session.update":
                # even an update that changes nothing is answered with session.updated
                return (SessionUpdate(settings=self.settings_patch(
                    event.session or SessionConfig())),)
            case "input_audio_buffer.append":
                return (InputAudioAppend(audio=_audio(event.audio, "audio",
                                                      self.input_format())),)
            case "input_audio_buffer.commit":
                return (InputAudioCommit(),)
            case "input_audio_buffer.clear":
                return (InputAudioClear(),)
            case "conversation.item.create":
                return self._item(event.item)
            case "response.create":
                config = event.response or ResponseConfig()
                _modalities(config.output_modalities, config.modalities, "response")
                return (ResponseCreate(),)
            case "conversation.item.truncate":
                return (_truncate(event),)
            case "conversation.item.retrieve":  # answered from the session's state
                return ()
            case _:  # "response.cancel" (parse lets nothing else through)
                return (ResponseCancel(),)

    def _ack(self, event: ClientEvent) -> dict[str, Any] | None:
        if event.type == "input_audio_buffer.clear":
            return {"type": "input_audio_buffer.cleared"}
        return None

    def _item(self, item: Item | None) -> tuple[ClientMessageUnion, ...]:
        if item is not None and item.type == "function_call_output":
            return (tool_output(item),)
        if item is None or item.type != "message" or item.role != "user":
            raise ProtocolError(
                "conversation.item.create takes user messages (input_text, input_audio) "
                "and function_call_output items", code=ErrorCode.INVALID_MESSAGE,
                param="item.role")
        texts = [p.text or "" for p in item.content if p.type == "input_text"]
        audios = [p.audio for p in item.content if p.type == "input_audio"]
        if len(texts) + len(audios) != len(item.content) or not item.content:
            raise ProtocolError("a user message holds input_text or input_audio parts",
                                code=ErrorCode.INVALID_MESSAGE, param="item.content")
        if texts and audios:
            raise ProtocolError("one user message is either text or audio, not both",
                                code=ErrorCode.INVALID_MESSAGE, param="item.content")
        if texts:
            text = "\n".join(texts)
            if not text.strip():
                raise ProtocolError("empty text", code=ErrorCode.EMPTY_INPUT,
                                    param="item.content")
            if len(text) > self.max_text_chars:
                raise InputTooLargeError(
                    f"text of {len(text)} characters is over the limit of "
                    f"{self.max_text_chars}",
                    code=ErrorCode.TEXT_TOO_LONG, limit=self.max_text_chars,
                    param="item.content")
            # OpenAI: an item never starts a response by itself; response.create does
            return (InputTextMessage(text=text, respond=False),)
        fmt = self.input_format()  # each part checked: whole samples join to whole samples
        audio = b"".join(_audio(a, "item.content.audio", fmt) for a in audios)
        return InputAudioAppend(audio=audio), InputAudioCommit()

    def settings_patch(self, config: SessionConfig) -> dict[str, object]:
        """A ``session.update``'s ``session`` as a native settings patch."""
        patch: dict[str, object] = {}
        if config.instructions is not None:
            patch["system_prompt"] = config.instructions
        modalities = _modalities(config.output_modalities, config.modalities, "session")
        if modalities is not None:
            patch["realtime_tts"] = "audio" in modalities
        audio = config.audio or AudioConfig()
        audio_in = audio.input or AudioInputConfig()
        audio_out = audio.output or AudioOutputConfig()
        fmt_in = _chosen_format(audio_in.format, config.input_audio_format, "input")
        if fmt_in is not None and self.audio_formats:
            patch["input_format"], patch["input_sample_rate"] = fmt_in
        fmt_out = _chosen_format(audio_out.format, config.output_audio_format, "output")
        if fmt_out is not None and self.audio_formats:
            patch["output_format"], patch["output_sample_rate"] = fmt_out
        if "turn_detection" in audio_in.model_fields_set:
            patch.update(_turn_detection(audio_in.turn_detection))
        elif "turn_detection" in config.model_fields_set:
            patch.update(_turn_detection(config.turn_detection))
        transcription = audio_in.transcription or config.input_audio_transcription
        if transcription is not None and transcription.language:
            patch["language"] = transcription.language
        voice = audio_out.voice or config.voice
        if voice is not None:
            patch["voice"] = engine_voice(voice, self.voice_map)
        speed = audio_out.speed if audio_out.speed is not None else config.speed
        if speed is not None:
            patch["speech_speed"] = speed
        sampling: dict[str, object] = {}
        limit = config.max_output_tokens or config.max_response_output_tokens
        if isinstance(limit, int):
            sampling["max_tokens"] = limit
        if config.temperature is not None:
            sampling["temperature"] = config.temperature
        if sampling:
            patch["sampling"] = sampling
        patch.update(tools_patch(config.tools, config.tool_choice))
        return patch


def _modalities(
    output_modalities: list[str] | None, modalities: list[str] | None, where: str
) -> list[str] | None:
    """The modalities asked for (GA name first), each one this server has, or
    ``invalid_settings`` naming the field: an unknown one is never taken silently."""
    field, chosen = ((f"{where}.output_modalities", output_modalities)
                     if output_modalities is not None else (f"{where}.modalities", modalities))
    if chosen is None:
        return None
    unknown = [m for m in chosen if m not in MODALITIES]
    if unknown or not chosen:
        raise ProtocolError(
            f"{field} takes {' and '.join(repr(m) for m in MODALITIES)}, not "
            f"{', '.join(repr(m) for m in unknown) if unknown else 'an empty list'}",
            code=ErrorCode.INVALID_SETTINGS, param=field)
    return chosen


def _truncate(event: ClientEvent) -> ResponseTruncate:
    """``conversation.item.truncate``: the reply item's audio was played up to
    ``audio_end_ms``. Only assistant items (``item_<turn>_out``) have audio to truncate."""
    match = _REPLY_ITEM.match(event.item_id or "")
    if match is None:
        raise ProtocolError(
            f"no assistant item {event.item_id!r} to truncate; reply items are named "
            "item_<turn>_out", code=ErrorCode.NOT_FOUND, param="item_id")
    if event.content_index not in (None, 0):
        raise ProtocolError("a reply item has one content part: content_index 0",
                            code=ErrorCode.INVALID_MESSAGE, param="content_index")
    if event.audio_end_ms is None or event.audio_end_ms < 0:
        raise ProtocolError("audio_end_ms (the audio played, in ms) is required and >= 0",
                            code=ErrorCode.INVALID_MESSAGE, param="audio_end_ms")
    return ResponseTruncate(turn_id=match[1], audio_end_ms=event.audio_end_ms)


def _audio(data: str | None, param: str, fmt: InputAudioFormat) -> bytes:
    """Base64 audio in the session's input format (PCM16 must be whole samples)."""
    if not data:
        raise InvalidAudioError("no audio", code=ErrorCode.EMPTY_INPUT, param=param)
    try:
        audio = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidAudioError("audio is not valid base64", param=param) from None
    if fmt is not InputAudioFormat.PCM16:
        return audio  # G.711: one byte a sample, any length is whole
    try:
        return check_pcm16(audio)
    except InvalidAudioError as exc:
        exc.details["param"] = param
        raise


def _chosen_format(
    spec: AudioFormatSpec | None, beta: str | None, way: Literal["input", "output"]
) -> tuple[str, int] | None:
    """The (format, rate) an update sets for one way: GA's ``audio.<way>.format`` first,
    else the beta's ``<way>_audio_format``; ``None`` if it sets neither."""
    if spec is not None:
        return from_openai(spec.type, spec.rate, f"session.audio.{way}.format")
    if beta is not None:
        return from_beta(beta, f"session.{way}_audio_format")
    return None


def _turn_detection(detection: TurnDetection | None) -> dict[str, object]:
    """``null``: manual turns (no reply until ``response.create``); ``server_vad``: turns
    ended by silence (its ``silence_duration_ms``); ``semantic_vad``: by the end-of-turn
    model (Voxline's ``smart`` turn detection)."""
    if detection is None:
        return {"auto_response": False}
    patch: dict[str, object] = {"auto_response": detection.create_response is not False}
    if detection.type == "semantic_vad":
        patch["turn_detection"] = "smart"
    elif detection.type == "server_vad":
        patch["turn_detection"] = "silence"
    if detection.silence_duration_ms is not None:
        patch["end_of_speech_ms"] = detection.silence_duration_ms
    return patch
