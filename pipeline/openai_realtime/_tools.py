"""Tools in the Realtime API's shapes, both ways.

In: ``session.tools`` (``{"type": "function", "name", "description", "parameters"}``, and
Voxline's own ``{"type": "server", "name"}`` for a tool the server runs) and
``tool_choice`` become the session's ``tools`` and ``tool_choice``; a
``conversation.item.create`` of a ``function_call_output`` item is the client's output of
a call (:class:`schemas.ToolOutput`), and ``response.create`` lets the reply go on.

Out (:class:`CallItems`): a call the client runs is a ``function_call`` item of the
response (``response.output_item.added``, ``response.function_call_arguments.delta`` and
``.done``, ``response.output_item.done``), its output, once the client sends it, a
``function_call_output`` item of the conversation. A call the server runs is what OpenAI's
server-run tools are, an ``mcp_call`` item (``response.mcp_call_arguments.*``,
``response.mcp_call.in_progress`` / ``.completed`` / ``.failed``) with its output or error
on the item, so a client never mistakes it for one it must run.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from schemas import ErrorCode, ProtocolError, ToolOutput

Frame = dict[str, Any]

#: the server_label of the server's own tools' ``mcp_call`` items
SERVER_LABEL = "voxline"

_LENIENT = ConfigDict(extra="ignore", frozen=True)


class ToolSpec(BaseModel):
    """One of ``session.tools``: a function, a server tool by name, or the tools of an MCP
    server the operator configured (by ``server_label``)."""

    model_config = _LENIENT
    type: str = "function"
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    server_label: str | None = None
    allowed_tools: list[str] | dict[str, Any] | None = None
    server_url: str | None = None


def tools_patch(tools: list[ToolSpec] | None, choice: Any) -> dict[str, object]:
    """``session.tools`` and ``tool_choice`` as a settings patch (validated there)."""
    patch: dict[str, object] = {}
    if tools is not None:
        declared: list[dict[str, Any]] = []
        for index, tool in enumerate(tools):
            if tool.type not in ("function", "server", "mcp"):
                raise ProtocolError(
                    f"session.tools.{index}: type {tool.type!r} is not one this server "
                    "takes (function; mcp, and server for the server's own tools)",
                    code=ErrorCode.INVALID_SETTINGS, param=f"session.tools.{index}.type")
            if tool.type == "mcp":
                declared.append(_mcp_spec(tool))
                continue
            spec: dict[str, Any] = {"type": tool.type, "name": tool.name}
            if tool.type == "function":
                spec["description"] = tool.description or ""
                if tool.parameters is not None:
                    spec["parameters"] = tool.parameters
            declared.append(spec)
        patch["tools"] = declared
    if choice is not None:
        patch["tool_choice"] = choice
    return patch


def _mcp_spec(tool: ToolSpec) -> dict[str, Any]:
    """OpenAI's ``mcp`` tool: ``allowed_tools`` a list of names, or a filter object with
    ``tool_names``."""
    allowed = tool.allowed_tools
    if isinstance(allowed, dict):
        allowed = allowed.get("tool_names")
    spec: dict[str, Any] = {"type": "mcp", "server_label": tool.server_label,
                            "allowed_tools": allowed}
    if tool.server_url is not None:
        spec["server_url"] = tool.server_url  # refused by the settings, with why
    return spec


def tool_output(item: Any) -> ToolOutput:
    """A ``function_call_output`` item as the client's output of its call."""
    call_id, output = getattr(item, "call_id", None), getattr(item, "output", None)
    if not isinstance(call_id, str) or not call_id or not isinstance(output, str):
        raise ProtocolError("a function_call_output item needs its call_id and its output "
                            "(a string)", code=ErrorCode.INVALID_MESSAGE, param="item")
    return ToolOutput(call_id=call_id, output=output)


class CallItems:
    """The call items of one socket's responses (see the module docstring)."""

    def __init__(self, *, beta: bool) -> None:
        self.beta = beta
        #: the running response's items past its message (for ``response.done``)
        self.items: list[Frame] = []
        self._server: dict[str, tuple[Frame, int, str]] = {}  # call → item, index, response

    def new_response(self) -> None:
        self.items = []
        self._server.clear()

    def started(self, data: Any, response_id: str) -> list[Frame]:
        index = len(self.items) + 1  # the message item is output 0
        item_id = f"item_{data.call_id}"
        where = {"response_id": response_id, "item_id": item_id, "output_index": index}
        if data.runs_on == "client":
            item = {"id": item_id, "object": "realtime.item", "type": "function_call",
                    "status": "completed", "name": data.name, "call_id": data.call_id,
                    "arguments": data.arguments}
            self.items.append(item)
            return [
                {"type": "response.output_item.added", "response_id": response_id,
                 "output_index": index, "item": {**item, "status": "in_progress",
                                                 "arguments": ""}},
                {"type": "response.function_call_arguments.delta", **where,
                 "call_id": data.call_id, "delta": data.arguments},
                {"type": "response.function_call_arguments.done", **where,
                 "call_id": data.call_id, "name": data.name, "arguments": data.arguments},
                {"type": "response.output_item.done", "response_id": response_id,
                 "output_index": index, "item": item},
            ]
        item = {"id": item_id, "object": "realtime.item", "type": "mcp_call",
                "server_label": SERVER_LABEL, "name": data.name, "arguments": data.arguments,
                "output": None, "error": None}
        self.items.append(item)
        self._server[data.call_id] = (item, index, response_id)
        return [
            {"type": "response.output_item.added", "response_id": response_id,
             "output_index": index, "item": {**item, "arguments": ""}},
            {"type": "response.mcp_call_arguments.delta", **where, "delta": data.arguments},
            {"type": "response.mcp_call_arguments.done", **where,
             "arguments": data.arguments},
            {"type": "response.mcp_call.in_progress", "item_id": item_id,
             "output_index": index},
        ]

    def ended(self, kind: str, data: Any, previous_item: str | None) -> list[Frame]:
        """A call's end: a server call's item done; a client's output as its item."""
        server = self._server.pop(data.call_id, None)
        if server is None:
            if kind != "tool.call.output":
                return []  # a client call cancelled or failed: its item was done already
            return self._output_item(data, previous_item)
        item, index, response_id = server
        if kind == "tool.call.output":
            item["output"], status = data.output, "completed"
        else:
            message = "cancelled" if kind == "tool.call.cancelled" else data.message
            code = (ErrorCode.TOOL_INTERRUPTED.value if kind == "tool.call.cancelled"
                    else data.code.value)
            item["error"], status = {"type": "tool_execution_error", "code": code,
                                     "message": message}, "failed"
        return [
            {"type": f"response.mcp_call.{status}", "item_id": item["id"],
             "output_index": index},
            {"type": "response.output_item.done", "response_id": response_id,
             "output_index": index, "item": item},
        ]

    def _output_item(self, data: Any, previous_item: str | None) -> list[Frame]:
        item = {"id": f"item_{data.call_id}_output", "object": "realtime.item",
                "type": "function_call_output", "status": "completed",
                "call_id": data.call_id, "output": data.output}
        if self.beta:
            return [{"type": "conversation.item.created", "previous_item_id": previous_item,
                     "item": item}]
        return [{"type": kind, "previous_item_id": previous_item, "item": item}
                for kind in ("conversation.item.added", "conversation.item.done")]
