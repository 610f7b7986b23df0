"""The OpenAI Realtime client events this server reads, as lenient pydantic models: the
fields the supported types read, checked; unknown fields ignored (as OpenAI's own
additions would be)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.openai_realtime._tools import ToolSpec

_LENIENT = ConfigDict(extra="ignore", frozen=True)


class AudioFormatSpec(BaseModel):
    model_config = _LENIENT
    type: str = "audio/pcm"
    rate: int | None = None


class TurnDetection(BaseModel):
    model_config = _LENIENT
    type: str = "server_vad"
    silence_duration_ms: int | None = None
    create_response: bool | None = None


class Transcription(BaseModel):
    model_config = _LENIENT
    model: str | None = None
    language: str | None = None


class AudioInputConfig(BaseModel):
    model_config = _LENIENT
    format: AudioFormatSpec | None = None
    transcription: Transcription | None = None
    turn_detection: TurnDetection | None = None  # null (when set): manual turns


class AudioOutputConfig(BaseModel):
    model_config = _LENIENT
    format: AudioFormatSpec | None = None
    voice: str | None = None
    speed: float | None = None


class AudioConfig(BaseModel):
    model_config = _LENIENT
    input: AudioInputConfig | None = None
    output: AudioOutputConfig | None = None


class SessionConfig(BaseModel):
    """``session.update``'s ``session``: the GA shape, and the beta's flat fields."""

    model_config = _LENIENT
    instructions: str | None = None
    output_modalities: list[str] | None = None
    audio: AudioConfig | None = None
    max_output_tokens: int | Literal["inf"] | None = None
    tools: list[ToolSpec] | None = None
    tool_choice: str | dict[str, Any] | None = None
    # beta names
    modalities: list[str] | None = None
    voice: str | None = None
    input_audio_format: str | None = None
    output_audio_format: str | None = None
    turn_detection: TurnDetection | None = None
    input_audio_transcription: Transcription | None = None
    max_response_output_tokens: int | Literal["inf"] | None = None
    temperature: float | None = None
    speed: float | None = None


class ResponseConfig(BaseModel):
    """``response.create``'s ``response``: only its modalities are checked (a reply's
    other options are the session's)."""

    model_config = _LENIENT
    output_modalities: list[str] | None = None
    modalities: list[str] | None = None  # beta name


class ContentPart(BaseModel):
    model_config = _LENIENT
    type: str
    text: str | None = None
    audio: str | None = None


class Item(BaseModel):
    model_config = _LENIENT
    type: str = "message"
    role: str | None = None
    content: list[ContentPart] = Field(default_factory=list)
    # function_call_output
    call_id: str | None = Field(default=None, max_length=128)
    output: str | None = None


class ClientEvent(BaseModel):
    """One client event: its type, its id, and the fields the supported types read
    (unknown fields are ignored, as OpenAI's own additions would be)."""

    model_config = _LENIENT
    type: str
    event_id: str | None = Field(default=None, max_length=128)
    session: SessionConfig | None = None
    audio: str | None = None
    item: Item | None = None
    response: ResponseConfig | None = None
    # conversation.item.truncate, conversation.item.retrieve
    item_id: str | None = Field(default=None, max_length=160)
    content_index: int | None = None
    audio_end_ms: int | None = None
