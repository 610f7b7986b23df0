"""A replica's server tools, and the tools one response offers.

:class:`Toolbox` holds the server tools the operator allows (``VOXLINE_TOOLS__ALLOW``:
built-ins and, later, MCP servers' tools) and the :class:`ToolRunner` that bounds their
calls, for every session of a Gateway replica. For each response it makes a
:class:`SessionTools`: the session's declared tools as the model is offered them, where
each call runs (a ``function`` at the client, a ``server`` tool here), and a server
call run through the runner, never twice for a call id the log has ended.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pipeline.log import CallLeases
from pipeline.reply import ResponseTools, RunsOn, ToolOutcome, ended_event
from pipeline.tools.base import CallContext, ServerTool
from pipeline.tools.mcp import McpServer
from pipeline.tools.runner import Logged, ToolRunner
from schemas import (
    MCP_SEPARATOR,
    EventBase,
    FunctionTool,
    McpTool,
    SessionSettings,
    ToolCall,
    ToolChoice,
    ToolFunction,
    ToolSettings,
    VoxlineError,
)

__all__ = ["CallScope", "SessionTools", "Toolbox"]

logger = logging.getLogger(__name__)

#: how often an MCP server that could not be listed is tried again
_RELIST_S = 30.0


class Toolbox:
    """The server tools a replica may run, and their runner."""

    def __init__(self, settings: ToolSettings | None = None, tools: Iterable[ServerTool] = (),
                 leases: CallLeases | None = None) -> None:
        self.settings = settings or ToolSettings()
        self.runner = ToolRunner(self.settings, leases)
        #: the allowed ones only: a tool the operator did not list never runs
        self.tools = {tool.name: tool for tool in tools if self.settings.allows(tool.name)}
        #: the MCP servers the operator configured, by label (their tools join
        #: :attr:`tools` once listed: :meth:`start`)
        self.mcp = {label: McpServer(label, server, connect_s=self.settings.mcp_connect_s)
                    for label, server in self.settings.mcp_servers.items()}
        self._listing: dict[str, asyncio.Task[None]] = {}
        #: calls running on after their reply was cancelled (``on_barge_in`` finish)
        self.finishing: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        """List every MCP server's tools (at most ``mcp_connect_s`` each); a server that
        cannot be reached is tried again in the background until it can."""
        await asyncio.gather(*(self._list(label) for label in self.mcp))
        for label, server in self.mcp.items():
            if not self._has_tools_of(label):
                self._listing[label] = asyncio.create_task(
                    self._list_until_listed(label), name=f"mcp-list-{server.label}")

    async def _list(self, label: str) -> bool:
        try:
            listed = await self.mcp[label].tools()
        except VoxlineError as exc:
            logger.warning("MCP server %s: %s", label, exc.message)
            return False
        for tool in listed:
            self.tools[tool.name] = tool
        logger.info("MCP server %s: %d tools", label, len(listed))
        return True

    async def _list_until_listed(self, label: str) -> None:
        while True:  # a remote server, tried again on a timer: nothing local to wait on
            await asyncio.sleep(_RELIST_S)
            if await self._list(label):
                return

    def _has_tools_of(self, label: str) -> bool:
        return any(name.startswith(label + MCP_SEPARATOR) for name in self.tools)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.tools)

    def tools_of(self, label: str, only: Iterable[str] | None = None) -> list[ServerTool]:
        """The listed tools of MCP server ``label`` (``only``: these of its names)."""
        wanted = None if only is None else {f"{label}{MCP_SEPARATOR}{name}" for name in only}
        return [tool for name, tool in self.tools.items()
                if name.startswith(label + MCP_SEPARATOR) and (wanted is None or name in wanted)]

    def for_response(self, settings: SessionSettings, scope: CallScope) -> SessionTools | None:
        """The tools a response of a session with these settings offers; ``None``: none."""
        if not settings.tools:
            return None
        return SessionTools(self, settings, scope)

    async def aclose(self) -> None:
        for task in [*self._listing.values(), *self.finishing]:
            task.cancel()
        for tool in self.tools.values():
            await tool.aclose()
        for server in self.mcp.values():
            await server.aclose()


@dataclass(frozen=True)
class CallScope:
    """Whose calls a response's are, and what the session's log says of them."""

    session_id: str
    turn_id: str
    #: calls the turn made before this response
    calls_made: int = 0
    #: the end the log holds for a call id, if any (never run twice)
    logged: Logged | None = None
    #: appends an event: the end of a call that ran on after its reply was cancelled
    late: Callable[[EventBase], Awaitable[object]] | None = None


class SessionTools(ResponseTools):
    """One response's tools (see the module docstring)."""

    def __init__(self, toolbox: Toolbox, settings: SessionSettings, scope: CallScope) -> None:
        self._toolbox = toolbox
        self._settings = settings
        self._scope = scope
        self._where: dict[str, RunsOn] = {}
        functions: list[ToolFunction] = []
        for declared in settings.tools:
            if isinstance(declared, FunctionTool):
                functions.append(ToolFunction(name=declared.name,
                                              description=declared.description,
                                              parameters=declared.parameters))
                self._where[declared.name] = "client"
            elif isinstance(declared, McpTool):
                for listed in toolbox.tools_of(declared.server_label, declared.allowed_tools):
                    functions.append(listed.function)
                    self._where[listed.name] = "server"
            elif (tool := toolbox.tools.get(declared.name)) is not None:
                functions.append(tool.function)
                self._where[declared.name] = "server"
        self.functions = tuple(functions)
        choice = settings.tool_choice
        if choice.name is not None and choice.name not in self._where:
            choice = ToolChoice()  # the tool named is gone (the operator removed it)
        if scope.calls_made and choice.mode in ("required", "function"):
            choice = ToolChoice(mode="none")  # a forced call is made once a turn
        self.choice = choice
        self.max_calls = toolbox.settings.max_calls_per_turn
        self.calls_made = scope.calls_made
        after_ms = toolbox.settings.filler_after_ms
        self.filler = settings.tool_filler
        self.filler_after_s = None if after_ms is None else after_ms / 1000

    def runs_on(self, name: str) -> RunsOn | None:
        return self._where.get(name)

    def finishes(self, name: str) -> bool:
        tool = self._toolbox.tools.get(name)
        return (self._scope.late is not None and tool is not None
                and tool.on_barge_in == "finish" and self._where.get(name) == "server")

    async def run(self, call: ToolCall) -> ToolOutcome:
        tool = self._toolbox.tools[call.name]
        scope = self._scope
        context = CallContext(scope.session_id, scope.turn_id, call.id, self._settings)
        work = self._toolbox.runner.run(tool, call, context, scope.logged)
        if not self.finishes(call.name):
            return await work
        running = asyncio.ensure_future(work)
        try:
            return await asyncio.shield(running)
        except asyncio.CancelledError:  # the reply was cancelled: the call runs on
            finishing = asyncio.ensure_future(self._log_late(call.id, running))
            self._toolbox.finishing.add(finishing)
            finishing.add_done_callback(self._toolbox.finishing.discard)
            raise

    async def _log_late(self, call_id: str, running: asyncio.Future[ToolOutcome]) -> None:
        """The end of a call that ran on after its reply, appended when it comes."""
        outcome = await running
        scope = self._scope
        assert scope.late is not None
        await scope.late(ended_event(scope.session_id, scope.turn_id, call_id, outcome))
