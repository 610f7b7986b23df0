"""What flows into and out of the model engines.

These cross process boundaries (Ray Serve handles) as well as function calls, so they are
pydantic models like everything else. Audio is always PCM16 mono little-endian bytes with
an explicit sample rate; conversion happens at the edges (``pipeline.audio.pcm``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas._session import SamplingSettings
from schemas._tools import ToolCall, ToolChoice, ToolFunction
from schemas._types import Base64Bytes

_CONFIG = ConfigDict(frozen=True, extra="forbid")

#: Upper bound of one piece of text sent to a synthesizer, in characters.
MAX_SYNTHESIS_CHARS = 2000
#: Upper bound of Whisper's initial prompt, in characters (it keeps 224 tokens of it).
MAX_PROMPT_CHARS = 2000


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
