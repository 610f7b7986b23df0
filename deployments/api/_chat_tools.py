"""Tools on chat completions, in OpenAI's shapes: the request's ``tools``, ``tool_choice``
and ``parallel_tool_calls``, the history's assistant ``tool_calls`` and ``role: "tool"``
messages, and the reply's calls (``message.tool_calls``, or ``delta.tool_calls`` pieces
when streamed, with ``finish_reason: "tool_calls"``).

Checked where they enter, each with a plain 400 ``invalid_message`` naming the field: at
most ``VOXLINE_API__MAX_TOOLS`` tools, names unique, each ``parameters`` a JSON Schema
object of at most ``VOXLINE_API__MAX_TOOL_SCHEMA_CHARS`` characters, a named
``tool_choice`` naming one of them, a tool message naming the call it answers. The model
decides what to call; what a call does is the client's (chat completions run nothing:
the server's own tools run in sessions).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from pipeline.reply import CallGatherer
from schemas import (
    ApiSettings,
    ErrorCode,
    InputTooLargeError,
    ProtocolError,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolFunction,
)

_LENIENT = ConfigDict(extra="ignore")


class FunctionSpec(BaseModel):
    model_config = _LENIENT

    name: str = Field(max_length=64)
    description: str | None = Field(default=None, max_length=4000)
    parameters: dict[str, Any] | None = None
    strict: StrictBool | None = None


class CompletionTool(BaseModel):
    model_config = _LENIENT

    type: Literal["function"]
    function: FunctionSpec


class NamedFunction(BaseModel):
    model_config = _LENIENT

    name: str = Field(max_length=64)


class NamedToolChoice(BaseModel):
    model_config = _LENIENT

    type: Literal["function"]
    function: NamedFunction


class FunctionCall(BaseModel):
    model_config = _LENIENT

    name: str = Field(max_length=64)
    arguments: str = Field(default="{}", description="JSON text")


class CompletionToolCall(BaseModel):
    model_config = _LENIENT

    id: str = Field(max_length=128)
    type: Literal["function"] = "function"
    function: FunctionCall


ToolChoiceParam = Literal["none", "auto", "required"] | NamedToolChoice


def request_tools(
    tools: list[CompletionTool] | None, choice: ToolChoiceParam | None, limits: ApiSettings
) -> tuple[tuple[ToolFunction, ...], ToolChoice]:
    """The request's tools and choice as the model's (see the module docstring)."""
    tools = tools or []
    if len(tools) > limits.max_tools:
        raise InputTooLargeError(f"{len(tools)} tools are over the limit of {limits.max_tools}",
                                 limit=limits.max_tools, param="tools")
    functions: list[ToolFunction] = []
    for index, tool in enumerate(tools):
        spec = tool.function
        parameters = spec.parameters or {"type": "object", "properties": {}}
        size = len(json.dumps(parameters))
        if size > limits.max_tool_schema_chars:
            raise InputTooLargeError(
                f"tool {spec.name!r}'s parameters are {size} characters of JSON Schema, "
                f"over the limit of {limits.max_tool_schema_chars}",
                limit=limits.max_tool_schema_chars, param=f"tools.{index}")
        if parameters.get("type", "object") != "object":
            raise _bad(f"tool {spec.name!r}'s parameters must be a JSON Schema object "
                       "(type 'object')", f"tools.{index}.function.parameters")
        try:
            functions.append(ToolFunction(name=spec.name, description=spec.description or "",
                                          parameters=parameters))
        except ValueError:
            raise _bad(f"{spec.name!r} is not a tool name: letters, digits, '_' and '-', "
                       "at most 64", f"tools.{index}.function.name") from None
    names = [f.name for f in functions]
    if len(set(names)) != len(names):
        raise _bad("two tools have the same name", "tools")
    if choice is None:
        return tuple(functions), ToolChoice()
    if isinstance(choice, NamedToolChoice):
        if choice.function.name not in names:
            raise _bad(f"tool_choice names {choice.function.name!r}, which is not one of "
                       "the tools", "tool_choice")
        return tuple(functions), ToolChoice(mode="function", name=choice.function.name)
    if choice == "required" and not functions:
        raise _bad("tool_choice 'required' needs tools", "tool_choice")
    return tuple(functions), ToolChoice(mode=choice)


def history_calls(calls: list[CompletionToolCall] | None, index: int) -> tuple[ToolCall, ...]:
    """An assistant message's ``tool_calls`` as the model's history has them."""
    made: list[ToolCall] = []
    for number, call in enumerate(calls or []):
        try:
            made.append(ToolCall(id=call.id, name=call.function.name,
                                 arguments=call.function.arguments))
        except ValueError:
            raise _bad("a tool call needs an id, a tool's name and its arguments",
                       f"messages.{index}.tool_calls.{number}") from None
    return tuple(made)


class ReplyCalls:
    """The calls of a reply, gathered from the model's :class:`ToolCallDelta` pieces."""

    def __init__(self) -> None:
        self._calls = CallGatherer()  # the pieces gathered as a turn gathers them

    def add(self, delta: ToolCallDelta) -> dict[str, Any]:
        """Take one piece; what a stream sends for it (a ``delta.tool_calls`` item)."""
        self._calls.add(delta)
        piece: dict[str, Any] = {"index": delta.index}
        if delta.id is not None:
            piece.update(id=delta.id, type="function")
        function: dict[str, str] = {}
        if delta.name is not None:
            function["name"] = delta.name
        function["arguments"] = delta.arguments
        piece["function"] = function
        return piece

    def __bool__(self) -> bool:
        return bool(self._calls)

    def calls(self) -> list[CompletionToolCall]:
        return [CompletionToolCall(id=call_id, function=FunctionCall(
            name=name, arguments=arguments or "{}"))
            for call_id, name, arguments in self._calls.gathered()]


def _bad(message: str, param: str) -> ProtocolError:
    return ProtocolError(message, code=ErrorCode.INVALID_MESSAGE, param=param)
