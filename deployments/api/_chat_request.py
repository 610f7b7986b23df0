"""An OpenAI chat request as the language model's :class:`schemas.GenerationRequest`,
within every limit before anything is sent.

What :mod:`deployments.api.completions` takes: OpenAI's request shape (a message's
content as a string or as text parts), each message within ``max_text_chars`` and their
number within ``max_chat_messages`` (413), sampling within the session settings' bounds,
and the whole prompt within the LLM's context window (400 ``context_length_exceeded``,
OpenAI's code and wording): estimated as the history budget estimates
(:func:`pipeline.log.message_tokens`) and checked here, so a prompt of any size costs the
LLM replica nothing. Where the estimate was under and the engine's own tokenizer finds
the prompt too long, :func:`client_error` gives the client the same code.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
)

from deployments.api._chat_tools import (
    CompletionTool,
    CompletionToolCall,
    ToolChoiceParam,
    history_calls,
    request_tools,
)
from deployments.api._services import Services
from pipeline.log import message_tokens
from schemas import (
    ChatMessage,
    ErrorCode,
    GenerationRequest,
    InputTooLargeError,
    ProtocolError,
    SamplingSettings,
    SearchToolConfig,
    VoxlineError,
)

#: the prompt bound when neither the settings nor the engine say the context window
FALLBACK_CONTEXT_TOKENS = 32768


class ContentPart(BaseModel):
    """One part of a message's content; only ``text`` parts are read."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(max_length=64)
    text: str | None = None


class CompletionMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[ContentPart] | None = Field(
        default=None, description="text, or text parts (other parts are not supported); "
        "may be null in an assistant message with tool_calls")
    tool_calls: list[CompletionToolCall] | None = Field(
        default=None, description="an assistant message's calls")
    tool_call_id: str | None = Field(
        default=None, max_length=128, description="a tool message: the call it answers")


class StreamOptions(BaseModel):
    include_usage: StrictBool = False


class CompletionRequest(BaseModel):
    """OpenAI's request; fields Voxline does not act on (``n`` above 1, logprobs, ...) are
    refused or ignored rather than half-served (tools: :mod:`deployments.api._chat_tools`)."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(default="", description="answered with the loaded model's id")
    messages: list[CompletionMessage] = Field(min_length=1)
    # strict numbers: "0.5" or true is refused as the spec says, not read as a number
    max_tokens: StrictInt | None = Field(default=None, ge=1, le=4096)
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1, le=4096)
    temperature: StrictFloat | None = Field(default=None, ge=0.0, le=2.0)
    top_p: StrictFloat | None = Field(default=None, gt=0.0, le=1.0)
    stop: str | list[str] | None = Field(
        default=None, description="sequences that end the reply (as the session settings')")
    seed: StrictInt | None = None
    n: Literal[1] = 1
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    tools: list[CompletionTool] | None = None
    tool_choice: ToolChoiceParam | None = None
    # one call per reply is what the CPU model makes: accepted either way
    parallel_tool_calls: StrictBool | None = None
    # Voxline's extra: ground the reply in a collection; the request shows the
    # collection's token (X-Voxline-Token, or as the api_key when the server has no keys)
    search_tool_config: SearchToolConfig | None = None


def generation_request(body: CompletionRequest, services: Services) -> GenerationRequest:
    """The request as one LLM call: 413 past the number or the length of the messages,
    400 for a part or a sampling it cannot take (the whole prompt: :func:`bounded_prompt`)."""
    limits = services.settings.api
    if len(body.messages) > limits.max_chat_messages:
        raise InputTooLargeError(
            f"{len(body.messages)} messages are over the limit of {limits.max_chat_messages}",
            limit=limits.max_chat_messages)
    contents = [_text(message.content, index) for index, message in enumerate(body.messages)]
    for index, content in enumerate(contents):
        if len(content) > limits.max_text_chars:
            raise InputTooLargeError(
                f"message {index} of {len(content)} characters is over the limit "
                f"of {limits.max_text_chars}",
                code=ErrorCode.TEXT_TOO_LONG, limit=limits.max_text_chars, index=index)
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or ())
    chosen = {"temperature": body.temperature, "top_p": body.top_p, "seed": body.seed,
              "max_tokens": body.max_completion_tokens or body.max_tokens}
    try:  # the session settings' bounds (stop sequences' number and length)
        sampling = SamplingSettings(
            stop=tuple(stop), **{k: v for k, v in chosen.items() if v is not None})
    except ValidationError as exc:
        raise ProtocolError(f"invalid sampling: {exc.errors()[0]['msg']}") from None
    # "developer" is OpenAI's newer name for the system message
    messages = tuple(_message(m, content, index) for index, (m, content)
                     in enumerate(zip(body.messages, contents, strict=True)))
    tools, choice = request_tools(body.tools, body.tool_choice, limits)
    return GenerationRequest(request_id=f"oai-{uuid.uuid4().hex}", messages=messages,
                             sampling=sampling, tools=tools, tool_choice=choice)


def _message(message: CompletionMessage, content: str, index: int) -> ChatMessage:
    if message.role == "tool" and not message.tool_call_id:
        raise ProtocolError("a tool message needs the tool_call_id of the call it answers",
                            param=f"messages.{index}.tool_call_id")
    if message.tool_calls and message.role != "assistant":
        raise ProtocolError("only an assistant message makes tool calls",
                            param=f"messages.{index}.tool_calls")
    role = "system" if message.role == "developer" else message.role
    return ChatMessage(role=role, content=content,
                       tool_calls=history_calls(message.tool_calls, index),
                       tool_call_id=message.tool_call_id if role == "tool" else None)


def _text(content: str | list[ContentPart] | None, index: int) -> str:
    """A message's text: the string, or its text parts joined with newlines."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for part_index, part in enumerate(content):
        param = f"messages.{index}.content.{part_index}"
        if part.type != "text":
            raise ProtocolError(
                f"content parts of type {part.type!r} are not supported: this model reads "
                "text only (parts of type 'text')",
                code=ErrorCode.UNSUPPORTED_CONTENT, param=param, type=part.type)
        if part.text is None:
            raise ProtocolError("a text part needs its 'text'", param=param)
        texts.append(part.text)
    return "\n".join(texts)


def bounded_prompt(
    request: GenerationRequest, services: Services, llm: dict[str, Any] | None
) -> int:
    """The prompt's estimated tokens (as the history budget estimates), or 400
    ``context_length_exceeded`` when over the bound: the setting, else the engine's
    context window, else :data:`FALLBACK_CONTEXT_TOKENS`."""
    history = services.settings.history
    tokens = sum(message_tokens(m.content + "".join(c.arguments for c in m.tool_calls), history)
                 for m in request.messages)
    if request.calls_tools:  # the model is told its tools
        tokens += message_tokens(json.dumps([t.model_dump() for t in request.tools]), history)
    limit = services.settings.api.max_prompt_tokens
    if limit is None:
        window = (llm or {}).get("context_tokens")
        limit = window if isinstance(window, int) and window > 0 else FALLBACK_CONTEXT_TOKENS
    if tokens > limit:
        raise ProtocolError(
            f"This model's maximum context length is {limit} tokens. However, your "
            f"messages resulted in about {tokens} tokens (estimated). Please reduce the "
            "length of the messages.",
            code=ErrorCode.CONTEXT_LENGTH_EXCEEDED, param="messages", limit=limit,
            prompt_tokens=tokens)
    return tokens


def client_error(exc: VoxlineError) -> VoxlineError:
    """The engine's own context overflow (the estimate was under, its tokens were not)
    is the client's ``context_length_exceeded``; anything else as it is."""
    if exc.details.get("reason") != "context_overflow":
        return exc
    limit, tokens = exc.details.get("n_ctx"), exc.details.get("prompt_tokens")
    return ProtocolError(
        f"This model's maximum context length is {limit} tokens. However, your messages "
        f"resulted in {tokens} tokens. Please reduce the length of the messages.",
        code=ErrorCode.CONTEXT_LENGTH_EXCEEDED, param="messages", limit=limit,
        prompt_tokens=tokens)
