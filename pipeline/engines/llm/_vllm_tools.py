"""vLLM's own tool-call parsers, for models that write calls in their own format.

vLLM's OpenAI server reads a model's calls with a parser chosen for the model
(``--tool-call-parser hermes``, ``llama3_json``, ``mistral``, ``pythonic`` ...) and lets
the model choose to call only with ``--enable-auto-tool-choice``. The engine does the same
with the options ``tool_call_parser`` and ``enable_auto_tool_choice``: under
``tool_choice: auto`` the prompt is the model's chat template rendered with the tools
(its own tool format), the reply is held whole and handed to vLLM's parser, and what it
finds comes out as calls (arguments checked against each tool's schema), the rest as
words. A demanded call (``required``, a named function) is held to the schema by
structured outputs instead, as vLLM does too. Everything is imported from vLLM at load.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

from pipeline.engines.llm.tool_calls import new_call_id, schema_problem
from schemas import (
    ConfigurationError,
    EngineError,
    ErrorCode,
    GenerationRequest,
    ToolCallDelta,
)

__all__ = ["load_parser", "openai_messages", "openai_tools", "parsed_reply"]

#: where vLLM keeps its tool parsers and its chat request, newest first
_PARSER_MODULES = ("vllm.tool_parsers", "vllm.entrypoints.openai.tool_parsers")
_REQUEST_MODULES = ("vllm.entrypoints.openai.chat_completion.protocol",
                    "vllm.entrypoints.openai.protocol")


def _first_of(modules: tuple[str, ...], name: str) -> Any:
    for module in modules:
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise ConfigurationError(f"this vLLM has no {name} (looked in {', '.join(modules)})",
                             setting="VOXLINE_LLM__OPTIONS__TOOL_CALL_PARSER")


def load_parser(name: str, tokenizer: Any) -> Any:
    """vLLM's tool parser ``name`` for ``tokenizer`` (an unknown name lists the known)."""
    manager = _first_of(_PARSER_MODULES, "ToolParserManager")
    try:
        parser_class = manager.get_tool_parser(name)
    except KeyError:
        known = ", ".join(sorted(getattr(manager, "tool_parsers", {}) or
                                 getattr(manager, "lazy_parsers", {})))
        raise ConfigurationError(f"vLLM has no tool parser {name!r} (it has: {known})",
                                 setting="VOXLINE_LLM__OPTIONS__TOOL_CALL_PARSER") from None
    return parser_class(tokenizer)


def openai_tools(request: GenerationRequest) -> list[dict[str, Any]]:
    """The request's tools as chat templates and vLLM's parsers read them."""
    return [{"type": "function", "function": {"name": tool.name,
                                              "description": tool.description,
                                              "parameters": tool.parameters}}
            for tool in request.tools]


def openai_messages(request: GenerationRequest) -> list[dict[str, Any]]:
    """The dialogue in OpenAI's shape: assistant ``tool_calls`` and ``tool`` messages, as
    a template with a tool format renders them."""
    out: list[dict[str, Any]] = []
    for message in request.messages:
        item: dict[str, Any] = {"role": message.role, "content": message.content}
        if message.tool_calls:
            item["tool_calls"] = [{"id": call.id, "type": "function", "function": {
                "name": call.name, "arguments": call.arguments}} for call in message.tool_calls]
        if message.tool_call_id is not None:
            item["tool_call_id"] = message.tool_call_id
        out.append(item)
    return out


def parsed_reply(parser: Any, text: str,
                 request: GenerationRequest) -> tuple[str, list[ToolCallDelta]]:
    """The words and the calls vLLM's parser finds in a whole reply; a call to no tool of
    the request, or with arguments its schema refuses, fails the reply."""
    chat_request = _first_of(_REQUEST_MODULES, "ChatCompletionRequest")(
        model="voxline", messages=openai_messages(request), tools=openai_tools(request),
        tool_choice="auto")
    found = parser.extract_tool_calls(text, chat_request)
    if not found.tools_called:
        return text, []
    schemas = {tool.name: tool.parameters for tool in request.tools}
    calls = []
    for index, call in enumerate(found.tool_calls):
        name, arguments = call.function.name, call.function.arguments or "{}"
        problem = None if name in schemas else f"no tool named {name!r}"
        if problem is None:
            try:
                problem = schema_problem(json.loads(arguments), schemas[name])
            except ValueError:
                problem = "the arguments are not JSON"
        if problem is not None:
            raise EngineError(f"the model's call could not be used: {problem}",
                              code=ErrorCode.LLM_FAILED, stage="llm",
                              reason="tool_arguments_invalid")
        calls.append(ToolCallDelta(index=index, id=getattr(call, "id", None) or new_call_id(),
                                   name=name, arguments=arguments))
    return found.content or "", calls
