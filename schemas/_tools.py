"""Tools: what a model may call, the calls it makes, and the tools a session declares.

The model-facing shapes (:class:`ToolFunction`, :class:`ToolChoice`, :class:`ToolCall`,
:class:`ToolCallDelta`) cross the LLM seam; :class:`FunctionTool` and :class:`ServerTool`
are what a session's ``tools`` setting holds: functions the *client* runs (the model's
call goes to it, its output comes back), and tools the *server* runs itself, named from
what the operator allows (``VOXLINE_TOOLS__ALLOW``). Both are offered to the model alike.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_CONFIG = ConfigDict(frozen=True, extra="forbid")

#: a tool's name, as OpenAI allows it
TOOL_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
#: Upper bound of one tool's JSON Schema and of one call's arguments, serialized.
MAX_TOOL_SCHEMA_CHARS = 16_000
MAX_TOOL_ARGUMENTS_CHARS = 16_000
#: Upper bound of the tools one session declares.
MAX_SESSION_TOOLS = 64
#: Upper bound of one tool output in the log (a server tool's is cut to the operator's
#: ``max_output_chars`` first; a client's output is refused past it).
MAX_TOOL_OUTPUT_CHARS = 1_000_000


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
    (one of them), or ``function`` (the one named).

    Also read from OpenAI's shapes, so a session takes what a Realtime client sends:
    ``"auto"``, ``{"type": "function", "name": "f"}`` or ``{"type": "function",
    "function": {"name": "f"}}``.
    """

    model_config = _CONFIG

    mode: Literal["auto", "none", "required", "function"] = "auto"
    name: str | None = Field(default=None, pattern=TOOL_NAME_PATTERN)

    @model_validator(mode="before")
    @classmethod
    def _openai_shapes(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"mode": data}
        if isinstance(data, dict) and data.get("type") == "function":
            function = data.get("function")
            name = function.get("name") if isinstance(function, dict) else data.get("name")
            return {"mode": "function", "name": name}
        return data

    @model_validator(mode="after")
    def _named(self) -> ToolChoice:
        if (self.mode == "function") != (self.name is not None):
            raise ValueError("a function choice names one function, and only it names one")
        return self


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


# ---- what a session declares ----------------------------------------------------------


class FunctionTool(ToolFunction):
    """A function the client runs: the model's call reaches the client as a
    ``tool.call.started`` event (a Realtime ``function_call`` item), and the client sends
    its output back (``tool.output``; Realtime: a ``function_call_output`` item), then
    asks for the reply to go on (``response.create``)."""

    type: Literal["function"] = "function"

    @field_validator("parameters")
    @classmethod
    def _a_schema_object(cls, parameters: dict[str, Any]) -> dict[str, Any]:
        if parameters.get("type", "object") != "object":
            raise ValueError("parameters must be a JSON Schema object (type 'object')")
        size = len(json.dumps(parameters))
        if size > MAX_TOOL_SCHEMA_CHARS:
            raise ValueError(f"parameters are {size} characters of JSON Schema, over the "
                             f"limit of {MAX_TOOL_SCHEMA_CHARS}")
        return parameters


class ServerTool(BaseModel):
    """A tool the server runs itself (``search_documents``, an MCP server's tool), one the
    operator enabled; its description and parameters are the server's."""

    model_config = _CONFIG

    type: Literal["server"] = "server"
    name: str = Field(pattern=TOOL_NAME_PATTERN)


class McpTool(BaseModel):
    """The tools of an MCP server the operator configured (OpenAI's ``mcp`` tool shape):
    named by its ``server_label``; ``allowed_tools`` narrows them. The server itself is
    the operator's: a ``server_url`` from a client is refused, never connected to."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    type: Literal["mcp"] = "mcp"
    server_label: str = Field(pattern=r"^[A-Za-z0-9-]{1,24}$")
    allowed_tools: tuple[Annotated[str, Field(pattern=TOOL_NAME_PATTERN)], ...] | None = None
    server_url: str | None = None

    @field_validator("server_url")
    @classmethod
    def _operators_only(cls, url: str | None) -> str | None:
        if url is not None:
            raise ValueError("MCP servers are the operator's (VOXLINE_TOOLS__MCP_SERVERS); "
                             "name one by server_label, without server_url")
        return url

    @property
    def name(self) -> str:
        return f"mcp:{self.server_label}"


SessionTool: TypeAlias = Annotated[FunctionTool | ServerTool | McpTool,
                                   Field(discriminator="type")]


#: what the model reads as the output of a call cancelled before it ended
CANCELLED_CALL_OUTPUT = "the call was cancelled before it finished"


def failed_call_output(code: str, message: str) -> str:
    """What the model reads as the output of a call that failed (the live reply and the
    log's fold both say it so)."""
    return f"error ({code}): {message}"


def check_tools(tools: tuple[SessionTool, ...], choice: ToolChoice) -> None:
    """A session's tools and choice fit together: names unique, a named choice among
    them, ``required`` with some to call (:class:`ValueError` otherwise)."""
    names = [tool.name for tool in tools]
    if len(set(names)) != len(names):
        raise ValueError("two tools have the same name")
    if choice.mode == "function" and choice.name not in names:
        raise ValueError(f"tool_choice names {choice.name!r}, which is not one of the tools")
    if choice.mode == "required" and not tools:
        raise ValueError("tool_choice 'required' needs tools")
