"""The seam of a server-side tool: what it is called, what it takes, and how it runs.

A :class:`ServerTool` declares its function (name, description, JSON Schema of its
arguments) and two things the runner needs to keep a call safe across interruptions:
whether running it twice does the same as once (``idempotent``: a call in flight when
its replica died is retried then, with the same call id as its idempotency key), and
what barge-in does to a running call (``on_barge_in``: ``cancel`` stops it, ``finish``
lets it end and keeps its output). The runner (:mod:`pipeline.tools.runner`) bounds
every call; a tool only does its work.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Literal

from schemas import SessionSettings, ToolFunction

__all__ = ["CallContext", "ServerTool"]


@dataclass(frozen=True, slots=True)
class CallContext:
    """What a call runs for: the session and turn, the session's settings, and the call's
    id, which a tool with side effects passes on as its idempotency key."""

    session_id: str
    turn_id: str
    call_id: str
    settings: SessionSettings


class ServerTool(abc.ABC):
    """A tool the server runs itself (see the module docstring)."""

    #: the function the model is offered
    function: ToolFunction
    #: running it twice does what running it once does (retried after a crash)
    idempotent: bool = False
    #: what barge-in does to a running call
    on_barge_in: Literal["cancel", "finish"] = "cancel"

    @property
    def name(self) -> str:
        return self.function.name

    async def ready(self) -> None:  # noqa: B027 - most tools are always ready
        """Be ready to take a call: connect, start a process. The runner awaits it before
        the call's ``timeout_s`` starts, so a call is timed by its own work, not by a
        reconnect; a tool that waits here bounds the wait itself (an MCP server by
        ``mcp_connect_s``) and raises :class:`schemas.VoxlineError` when it cannot."""

    @abc.abstractmethod
    async def call(self, arguments: dict[str, Any], context: CallContext) -> str:
        """Run once with arguments that satisfy the schema; return the output text.
        Raise :class:`schemas.VoxlineError` for a failure the model should read."""

    async def aclose(self) -> None:  # noqa: B027 - most tools hold nothing
        """Let go of what the tool holds (a connection, a process)."""
