"""A replica's server tools, and the tools one response offers.

:class:`Toolbox` holds the server tools the operator allows (``VOXLINE_TOOLS__ALLOW``:
built-ins and, later, MCP servers' tools) and the :class:`ToolRunner` that bounds their
calls, for every session of a Gateway replica. For each response it makes a
:class:`SessionTools`: the session's declared tools as the model is offered them, where
each call runs (a ``function`` at the client, a ``server`` tool here), and a server
call run through the runner, never twice for a call id the log has ended.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.log import CallLeases
from pipeline.tools.base import CallContext, ServerTool
from pipeline.tools.runner import Logged, ToolRunner
from pipeline.turn import ResponseTools, RunsOn, ToolOutcome
from schemas import (
    FunctionTool,
    SessionSettings,
    ToolCall,
    ToolChoice,
    ToolFunction,
    ToolSettings,
)

__all__ = ["SessionTools", "Toolbox"]


class Toolbox:
    """The server tools a replica may run, and their runner."""

    def __init__(self, settings: ToolSettings | None = None, tools: Iterable[ServerTool] = (),
                 leases: CallLeases | None = None) -> None:
        self.settings = settings or ToolSettings()
        self.runner = ToolRunner(self.settings, leases)
        #: the allowed ones only: a tool the operator did not list never runs
        self.tools = {tool.name: tool for tool in tools if self.settings.allows(tool.name)}

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.tools)

    def for_response(self, settings: SessionSettings, *, session_id: str, turn_id: str,
                     calls_made: int = 0, logged: Logged | None = None) -> SessionTools | None:
        """The tools a response of a session with these settings offers (``calls_made``:
        by its turn before it); ``None``: none."""
        if not settings.tools:
            return None
        return SessionTools(self, settings, session_id=session_id, turn_id=turn_id,
                            calls_made=calls_made, logged=logged)

    async def aclose(self) -> None:
        for tool in self.tools.values():
            await tool.aclose()


class SessionTools(ResponseTools):
    """One response's tools (see the module docstring)."""

    def __init__(self, toolbox: Toolbox, settings: SessionSettings, *, session_id: str,
                 turn_id: str, calls_made: int = 0, logged: Logged | None = None) -> None:
        self._toolbox = toolbox
        self._settings = settings
        self._session_id = session_id
        self._turn_id = turn_id
        self._logged = logged
        self._where: dict[str, RunsOn] = {}
        functions: list[ToolFunction] = []
        for declared in settings.tools:
            if isinstance(declared, FunctionTool):
                functions.append(ToolFunction(name=declared.name,
                                              description=declared.description,
                                              parameters=declared.parameters))
                self._where[declared.name] = "client"
            elif (tool := toolbox.tools.get(declared.name)) is not None:
                functions.append(tool.function)
                self._where[declared.name] = "server"
        self.functions = tuple(functions)
        choice = settings.tool_choice
        if choice.name is not None and choice.name not in self._where:
            choice = ToolChoice()  # the tool named is gone (the operator removed it)
        if calls_made and choice.mode in ("required", "function"):
            choice = ToolChoice(mode="none")  # a forced call is made once a turn
        self.choice = choice
        self.max_calls = toolbox.settings.max_calls_per_turn
        self.calls_made = calls_made

    def runs_on(self, name: str) -> RunsOn | None:
        return self._where.get(name)

    async def run(self, call: ToolCall) -> ToolOutcome:
        tool = self._toolbox.tools[call.name]
        context = CallContext(self._session_id, self._turn_id, call.id, self._settings)
        return await self._toolbox.runner.run(tool, call, context, self._logged)
