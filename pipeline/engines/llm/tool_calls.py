"""Tool calls for models that write a dialogue (the CPU default's base model), not a chat
template with a tool format of their own.

Such a model is told its tools in the prompt's preamble (:func:`tools_preamble`) and
calls one by writing, as its whole reply, one JSON object: ``{"name": "...",
"arguments": {...}}``. An engine that can constrain its decoding (llama.cpp's grammars,
vLLM's structured outputs) makes that object always parse and satisfy the tool's
parameters:
:func:`call_schema` is the JSON Schema of every call the request allows (one tool named
by ``tool_choice``, or any of them). With ``auto`` the reply is either that object or
words, and the model's first character decides: ``{`` starts a call.

:class:`ReplySplitter` reads the reply as it streams: words pass on at once, a call is
held until it is whole, checked against the tool's schema (``jsonschema``: what a
grammar could not hold the model to), and yielded as one :class:`~schemas.ToolCallDelta`
with its id (``call_`` + random hex: the idempotency key of whatever runs it). In the
history the model reads, an earlier call is written the same way, with its output, as
the ``tool`` message (:func:`calls_on_tool_lines`).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from pipeline.engines.base import GenerationStats
from schemas import (
    ChatMessage,
    EngineError,
    ErrorCode,
    GenerationRequest,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolFunction,
)

__all__ = [
    "ReplySplitter",
    "call_schema",
    "calls_on_tool_lines",
    "new_call_id",
    "render_call",
    "schema_problem",
    "split_calls",
    "tools_preamble",
    "with_tools",
]


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def offered(tools: Sequence[ToolFunction], choice: ToolChoice) -> list[ToolFunction]:
    """The tools a reply may call under ``choice`` (``function``: the one named)."""
    if choice.mode == "none":
        return []
    if choice.mode == "function":
        named = [tool for tool in tools if tool.name == choice.name]
        if not named:
            raise EngineError(f"tool_choice names {choice.name!r}, which is not a tool of "
                              "the request", code=ErrorCode.LLM_FAILED, stage="llm")
        return named
    return list(tools)


def call_schema(request: GenerationRequest) -> dict[str, Any]:
    """The JSON Schema of one call the request allows: ``name`` one of its tools (a
    constant each), ``arguments`` that tool's parameters."""
    variants = [{
        "type": "object",
        "properties": {"name": {"const": tool.name}, "arguments": tool.parameters},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    } for tool in offered(request.tools, request.tool_choice)]
    return variants[0] if len(variants) == 1 else {"anyOf": variants}


def tools_preamble(request: GenerationRequest) -> str:
    """What the model is told of its tools, a paragraph for the prompt's preamble."""
    tools = offered(request.tools, request.tool_choice)
    lines = [f"- {tool.name}: {tool.description.strip() or 'no description'} "
             f"Arguments: {json.dumps(tool.parameters.get('properties', {}))}"
             for tool in tools]
    if request.tool_choice.mode in ("required", "function"):
        how = 'Reply with only a JSON object: {"name": <tool>, "arguments": {...}}.'
    else:
        how = ('To use a tool, reply with only a JSON object: {"name": <tool>, '
               '"arguments": {...}}. Otherwise answer in words.')
    return "\n".join(["You can use these tools.", *lines, how])


def render_call(call: ToolCall) -> str:
    """An earlier call as the model would have written it."""
    try:
        arguments = json.loads(call.arguments or "{}")
    except ValueError:
        arguments = call.arguments
    return json.dumps({"name": call.name, "arguments": arguments})


def calls_on_tool_lines(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """The dialogue as a model that writes calls as text should read it: each call with
    its output, in the ``tool`` message (``<call> returned <output>``), and an assistant
    message that only called left out. A base model copies its last turns: one written
    as a call it made is made again instead of answered."""
    calls: dict[str, ToolCall] = {}
    out: list[ChatMessage] = []
    for message in messages:
        calls.update((call.id, call) for call in message.tool_calls)
        if message.role == "tool":
            call = calls.get(message.tool_call_id or "")
            text = message.content.strip()
            out.append(ChatMessage(role="tool", content=f"{render_call(call)} returned {text}"
                                   if call else text))
        elif message.content.strip() or not message.tool_calls:
            out.append(message.model_copy(update={"tool_calls": ()}))
    return out


class ReplySplitter:
    """Reads a reply that may be a call (see the module docstring): :meth:`feed` each
    text piece and :meth:`finish` at the end; each returns what to pass on."""

    def __init__(self, request: GenerationRequest) -> None:
        self._schemas = {tool.name: tool.parameters
                         for tool in offered(request.tools, request.tool_choice)}
        self._names = set(self._schemas)
        self._held: list[str] = []
        #: None until the first character that is not a space; then whether it is a call
        self.is_call: bool | None = None

    def feed(self, text: str) -> list[str]:
        if self.is_call is None:
            self._held.append(text)
            start = "".join(self._held).lstrip()
            if not start:
                return []
            self.is_call = start.startswith("{")
            if not self.is_call:
                held, self._held = "".join(self._held), []
                return [held]
            return []
        if self.is_call:
            self._held.append(text)
            return []
        return [text]

    def finish(self) -> list[str | ToolCallDelta]:
        """The call, whole (or the words held so far, for a reply of spaces only).
        A call that does not parse (cut by ``max_tokens``: a grammar keeps it valid
        otherwise) is ``llm_failed``."""
        held = "".join(self._held).strip()
        if not self.is_call:
            return [held] if held else []
        try:
            call = json.loads(held)
            name, arguments = call["name"], call["arguments"]
        except (ValueError, KeyError, TypeError):
            raise EngineError("the model's tool call was cut off before it was whole "
                              "(raise max_tokens)", code=ErrorCode.LLM_FAILED,
                              stage="llm", reason="tool_call_incomplete") from None
        if name not in self._names or not isinstance(arguments, dict):
            raise EngineError(f"the model called {name!r}, which it may not call",
                              code=ErrorCode.LLM_FAILED, stage="llm")
        problem = schema_problem(arguments, self._schemas[name])
        if problem is not None:  # what a grammar could not hold it to (a number's bounds)
            raise EngineError(f"the model called {name} with arguments its schema refuses: "
                              f"{problem}", code=ErrorCode.LLM_FAILED, stage="llm",
                              reason="tool_arguments_invalid")
        return [ToolCallDelta(index=0, id=new_call_id(), name=name,
                              arguments=json.dumps(arguments))]


def schema_problem(arguments: dict[str, Any], schema: dict[str, Any]) -> str | None:
    """Why ``arguments`` do not satisfy ``schema`` (None: they do, or the schema itself
    is not one a validator reads: the model's words are not judged by a broken rule)."""
    import jsonschema

    try:
        jsonschema.validate(arguments, schema)
    except jsonschema.ValidationError as exc:
        return str(exc.message)[:200]
    except jsonschema.SchemaError:
        return None
    return None


async def split_calls(
    pieces: AsyncGenerator[str, None], request: GenerationRequest, stats: GenerationStats
) -> AsyncGenerator[str | ToolCallDelta, None]:
    """``pieces`` of a reply read by a :class:`ReplySplitter` (a request that may call
    a tool): words as they come, a call once whole (``stats.finish_reason`` is then
    ``tool_calls``)."""
    splitter = ReplySplitter(request)
    async with contextlib.aclosing(pieces):  # leaving early ends the model's work at once
        async for piece in pieces:
            for item in splitter.feed(piece):
                yield item
    for last in splitter.finish():
        yield last
    if splitter.is_call:
        stats.finish_reason = "tool_calls"


def with_tools(request: GenerationRequest) -> tuple[ChatMessage, ...]:
    """The request's messages with :func:`tools_preamble` after its leading system
    messages (the persona first, then what it can do)."""
    messages = request.messages
    if not request.calls_tools:
        return messages
    lead = next((i for i, m in enumerate(messages) if m.role != "system"), len(messages))
    told = ChatMessage(role="system", content=tools_preamble(request))
    return (*messages[:lead], told, *messages[lead:])
