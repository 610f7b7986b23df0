"""MCP servers as server tools, through the official ``mcp`` SDK (stdio and streamable HTTP).

An :class:`McpServer` is one server the operator configured (``VOXLINE_TOOLS__MCP_SERVERS``):
a program each Gateway replica starts (stdio) or a URL (streamable HTTP). It is connected
once per replica and its tools listed; each becomes an :class:`McpServerTool`, offered to
the model as ``<label>__<tool>`` with the server's own description and input schema, and
idempotent when the server says so (``readOnlyHint`` or ``idempotentHint``). A call is an
MCP ``tools/call`` carrying the call id in its ``_meta`` (``io.voxline/idempotency-key``),
so a server with side effects can keep them once per call.

The SDK's client lives in one task that owns its connection (anyio scopes end where they
began); calls from any task go through it. A server that dies or never answers costs the
calls made meanwhile a coded failure (``tool_failed``, or the runner's ``tool_timeout``),
nothing else; the next call connects again, within ``mcp_connect_s`` and before its own
``timeout_s`` starts (a server's restart is not the call's time). Its errors (``isError``
results) reach the model as the tool's failure, in the server's words.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from pipeline.tools.base import CallContext, ServerTool
from schemas import (
    MCP_SEPARATOR,
    ErrorCode,
    McpServerSettings,
    ToolFunction,
    VoxlineError,
)

__all__ = ["IDEMPOTENCY_KEY", "McpServer", "McpServerTool"]

logger = logging.getLogger(__name__)

#: the ``_meta`` key of a call's idempotency key (the call id)
IDEMPOTENCY_KEY = "io.voxline/idempotency-key"


class McpServer:
    """One configured MCP server, connected on demand (see the module docstring)."""

    def __init__(self, label: str, settings: McpServerSettings, *,
                 connect_s: float = 10.0) -> None:
        self.label = label
        self.settings = settings
        self.connect_s = connect_s
        self._client: Any = None
        self._owner: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()

    async def tools(self) -> list[McpServerTool]:
        """Its tools (the ones ``settings.tools`` allows), listed now."""
        client = await self.connected()
        try:
            listed = await asyncio.wait_for(client.list_tools(), self.connect_s)
        except Exception as exc:
            await self._reset()
            raise self._failure("listing its tools", exc) from exc
        allowed = set(self.settings.tools)
        return [McpServerTool(self, tool) for tool in listed.tools
                if not allowed or tool.name in allowed]

    async def call(self, name: str, arguments: dict[str, Any], call_id: str) -> str:
        """``tools/call``; the output as text, or :class:`VoxlineError` ``tool_failed``."""
        client = await self.connected()
        try:
            result = await client.call_tool(name, arguments, meta={IDEMPOTENCY_KEY: call_id})
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._reset()  # the connection may be gone: the next call connects again
            raise self._failure(f"calling {name}", exc) from exc
        text = _text_of(result)
        if result.is_error:
            raise VoxlineError(text or f"{name} failed", code=ErrorCode.TOOL_FAILED,
                               stage="tool")
        return text

    async def aclose(self) -> None:
        await self._reset()

    # ---- the connection -------------------------------------------------------------

    async def connected(self) -> Any:
        """The client, connecting first (within ``connect_s``) if it is not."""
        async with self._lock:
            if self._client is not None and self._owner is not None and not self._owner.done():
                return self._client
            await self._reset()
            ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._stop = asyncio.Event()
            self._owner = asyncio.create_task(self._own(ready), name=f"mcp-{self.label}")
            try:
                self._client = await asyncio.wait_for(asyncio.shield(ready), self.connect_s)
            except Exception as exc:
                await self._reset()
                raise self._failure("connecting", exc) from exc
            return self._client

    async def _own(self, ready: asyncio.Future[Any]) -> None:
        """Hold the client's connection open until :meth:`_reset` (its scopes are this
        task's); tell ``ready`` the client, or why it could not connect."""
        from mcp import Client, StdioServerParameters

        target: Any
        if self.settings.command:
            program, *args = self.settings.command
            target = StdioServerParameters(command=program, args=args,
                                           env=dict(self.settings.env) or None)
        else:
            target = self.settings.url
        try:
            async with Client(target) as client:
                if not ready.done():
                    ready.set_result(client)
                await self._stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception)
                                    else ConnectionError("closed"))
            if not isinstance(exc, asyncio.CancelledError):
                logger.warning("MCP server %s: connection ended: %r", self.label, exc)

    async def _reset(self) -> None:
        owner, self._owner, self._client = self._owner, None, None
        self._stop.set()
        if owner is not None and not owner.done():
            try:
                await asyncio.wait_for(owner, 5)
            except (TimeoutError, asyncio.CancelledError, Exception):
                owner.cancel()
                with contextlib.suppress(BaseException):
                    await owner

    def _failure(self, doing: str, exc: BaseException) -> VoxlineError:
        return VoxlineError(f"the MCP server {self.label!r} failed {doing} "
                            f"({type(exc).__name__})", code=ErrorCode.TOOL_FAILED, stage="tool")


class McpServerTool(ServerTool):
    """One tool of an MCP server, as a server tool (see the module docstring)."""

    def __init__(self, server: McpServer, tool: Any) -> None:
        self.server = server
        self.remote_name = str(tool.name)
        schema = dict(tool.input_schema or {"type": "object", "properties": {}})
        schema.setdefault("type", "object")
        self.function = ToolFunction(
            name=f"{server.label}{MCP_SEPARATOR}{self.remote_name}"[:64],
            description=(tool.description or "")[:4000], parameters=schema)
        hints = tool.annotations
        self.idempotent = bool(hints is not None and (
            hints.read_only_hint or hints.idempotent_hint))

    async def ready(self) -> None:
        await self.server.connected()

    async def call(self, arguments: dict[str, Any], context: CallContext) -> str:
        return await self.server.call(self.remote_name, arguments, context.call_id)


def _text_of(result: Any) -> str:
    """A ``CallToolResult`` as the model reads it: its text parts, else its structured
    content as JSON."""
    texts = [part.text for part in result.content if getattr(part, "type", "") == "text"]
    if texts:
        return "\n".join(texts)
    if result.structured_content is not None:
        return json.dumps(result.structured_content, ensure_ascii=False, default=str)
    return ""
