"""What flows into and out of the model engines.

These cross process boundaries (Ray Serve handles) as well as function calls, so they are
pydantic models like everything else. Audio is always PCM16 mono little-endian bytes with
an explicit sample rate; conversion happens at the edges (``pipeline.audio.pcm``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas._session import SamplingSettings
from schemas._types import Base64Bytes

_CONFIG = ConfigDict(frozen=True, extra="forbid")

#: Upper bound of one piece of text sent to a synthesizer, in characters.
MAX_SYNTHESIS_CHARS = 2000
#: Upper bound of Whisper's initial prompt, in characters (it keeps 224 tokens of it).
MAX_PROMPT_CHARS = 2000


#: a tool's name, as OpenAI allows it
TOOL_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
#: Upper bound of one tool's JSON Schema and of one call's arguments, serialized.
MAX_TOOL_SCHEMA_CHARS = 16_000
MAX_TOOL_ARGUMENTS_CHARS = 16_000


class ToolFunction(BaseModel):
    """A function the model may call (OpenAI's ``function`` of a tool): its ``parameters``
    are a JSON Schema object the arguments must satisfy."""

    model_config = _CONFIG

    name: str = Field(pattern=TOOL_NAME_PATTERN)
    description: str = Field(default="", max_length=4000)
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object",
                                                                "properties": {}})


class ToolChoice(BaseModel):
    """Whether the model may call a tool: ``auto`` (it chooses), ``none``, ``required``
    (one of them), or ``function`` (the one named)."""

    model_config = _CONFIG

    mode: Literal["auto", "none", "required", "function"] = "auto"
    name: str | None = Field(default=None, pattern=TOOL_NAME_PATTERN)


class ToolCall(BaseModel):
    """A call the model made: its id (the idempotency key of whatever runs it), the
    function, and the arguments as JSON text (as OpenAI carries them)."""

    model_config = _CONFIG

    id: str = Field(min_length=1, max_length=128)
    name: str = Field(pattern=TOOL_NAME_PATTERN)
    arguments: str = Field(default="{}", max_length=MAX_TOOL_ARGUMENTS_CHARS)


class ToolCallDelta(BaseModel):
    """A piece of a tool call as a model streams it: the call's ``index`` in the reply,
    its ``id`` and ``name`` on the first piece, then fragments of the ``arguments`` JSON
    text (OpenAI's ``delta.tool_calls`` item)."""

    model_config = _CONFIG

    index: int = Field(default=0, ge=0)
    id: str | None = None
    name: str | None = None
    arguments: str = ""


class ChatMessage(BaseModel):
    """One message of the dialogue. An assistant message may carry the ``tool_calls``
    it made (its ``content`` then often empty); a ``tool`` message is a call's output,
    ``tool_call_id`` naming the call."""

    model_config = _CONFIG

    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = Field(default=None, max_length=128)


class GenerationRequest(BaseModel):
    """One LLM call: the dialogue so far, how to sample, and the tools it may call."""

    model_config = _CONFIG

    request_id: str = Field(min_length=1, max_length=128)
    messages: tuple[ChatMessage, ...] = Field(min_length=1)
    sampling: SamplingSettings = Field(default_factory=SamplingSettings)
    tools: tuple[ToolFunction, ...] = ()
    tool_choice: ToolChoice = Field(default_factory=ToolChoice)

    @property
    def calls_tools(self) -> bool:
        """Whether the reply may be a tool call."""
        return bool(self.tools) and self.tool_choice.mode != "none"


class GenerationUsage(BaseModel):
    """What a language model counted for one reply, with its own tokenizer: the last item
    of :meth:`pipeline.engines.LanguageModel.generate_with_usage` (chat completions report
    it as ``usage``; the text deltas of a stream are not tokens, a replica batches them)."""

    model_config = _CONFIG

    completion_tokens: int = Field(ge=0)
    prompt_tokens: int | None = Field(default=None, ge=0, description="None: not counted")
    finish_reason: Literal["stop", "length", "tool_calls"] | None = Field(
        default=None, description="length: the token budget or the context window ran "
        "out; tool_calls: the reply is tool calls")


class SynthesisRequest(BaseModel):
    """One piece of text to speak."""

    model_config = _CONFIG

    text: str = Field(min_length=1, max_length=MAX_SYNTHESIS_CHARS)
    language: str = "en"
    voice: str | None = None
    speed: float = Field(default=1.0, ge=0.25, le=4.0)  # OpenAI's range


class AudioChunk(BaseModel):
    """A slice of PCM16 mono audio."""

    model_config = _CONFIG

    audio: Base64Bytes = Field(repr=False)
    sample_rate: int = Field(gt=0)

    @property
    def duration_s(self) -> float:
        return len(self.audio) / 2 / self.sample_rate


class TranscriptionRequest(BaseModel):
    """Audio to transcribe. Live turns always pass the session's ``language``: detection
    misfires on short utterances. ``None`` asks the engine to detect it (a whole uploaded
    file is long enough); each segment then reports what was detected. ``prompt`` is
    Whisper's initial prompt (spellings, context) and ``temperature`` its sampling
    temperature (0: greedy)."""

    model_config = _CONFIG

    audio: Base64Bytes = Field(repr=False, description="PCM16 mono")
    sample_rate: int = Field(gt=0)
    language: str | None = "en"
    word_timestamps: bool = False
    prompt: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    temperature: float = Field(default=0.0, ge=0.0, le=1.0)
    quick: bool = Field(
        default=False,
        description="a judgement of a few words (the speech over a held reply; a turn so "
        "far read for text cues), wanted fast: the engine may trade a little accuracy "
        "for time (faster-whisper encodes a shorter window than Whisper's 30 s); engines "
        "without such a trade ignore it",
    )


class TranscriptSegment(BaseModel):
    model_config = _CONFIG

    text: str
    start_s: float = Field(ge=0)
    end_s: float = Field(ge=0)
    words: tuple[tuple[str, float, float], ...] = ()
    language: str | None = Field(default=None, description="the language transcribed")
