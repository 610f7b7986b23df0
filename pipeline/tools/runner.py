"""Running a server-side call inside its bounds, once.

:class:`ToolRunner` is what every server call goes through, whatever the tool: the
arguments are parsed and checked against the tool's schema (a hostile or broken call is
``tool_arguments_invalid``, never run), the call waits for a place in the replica's pool
(``VOXLINE_TOOLS__CONCURRENCY``) and runs within ``timeout_s`` (``tool_timeout``; a
tool's own getting ready, such as an MCP server's reconnect, is bounded apart), its
output is cut to ``max_output_chars``, and anything it raises becomes ``tool_failed``
(a :class:`VoxlineError`'s own code and message are kept). The outcome is what the model
reads; nothing a tool does can hang or end the turn.

Exactly once: a call whose end is already in the session's log (``logged``) is not run
again: the logged outcome is the outcome (a resumed or replayed turn, an append retried).
With ``leases`` (:class:`pipeline.log.CallLeases`), a call runs under its lease, so a
replica that finds it started and not ended knows whether its runner is still alive
(:mod:`pipeline.session.call_recovery`); a call whose lease another holds is not run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from pipeline.engines import schema_problem
from pipeline.log import CallLeases
from pipeline.reply import ToolOutcome
from pipeline.tools.base import CallContext, ServerTool
from schemas import ErrorCode, ToolCall, ToolSettings, VoxlineError

__all__ = ["ToolRunner", "parsed_arguments"]

logger = logging.getLogger(__name__)

#: a call id → the outcome the session's log already holds for it
Logged = Callable[[str], ToolOutcome | None]


def parsed_arguments(arguments: str, schema: dict[str, Any]) -> str | dict[str, Any]:
    """The arguments as an object, or why they are not acceptable (a message)."""
    try:
        value = json.loads(arguments or "{}")
    except json.JSONDecodeError as exc:
        return f"the arguments are not JSON ({exc.msg})"
    if not isinstance(value, dict):
        return "the arguments must be a JSON object"
    problem = schema_problem(value, schema)
    if problem is not None:
        return f"the arguments do not fit the tool's schema: {problem}"
    return value


class ToolRunner:
    """Runs server calls for every session of a replica, bounded (module docstring)."""

    def __init__(self, settings: ToolSettings, leases: CallLeases | None = None) -> None:
        self.settings = settings
        self.leases = leases
        self._places = asyncio.Semaphore(settings.concurrency)
        #: calls run in all, by tool name (tests and metrics read it)
        self.runs: dict[str, int] = {}

    async def run(
        self, tool: ServerTool, call: ToolCall, context: CallContext,
        logged: Logged | None = None,
    ) -> ToolOutcome:
        if logged is not None and (done := logged(call.id)) is not None:
            return done
        if self.leases is None:
            return await self.run_held(tool, call, context)
        try:
            async with self.leases.hold(context.session_id, call.id) as mine:
                if not mine:
                    return ToolOutcome.failed(ErrorCode.TOOL_INTERRUPTED,
                                              "this call is being run elsewhere")
                return await self.run_held(tool, call, context)
        except RedisError:
            return ToolOutcome.failed(ErrorCode.EVENT_LOG_UNAVAILABLE,
                                      "the call's lease could not be taken; it was not run")

    async def run_held(self, tool: ServerTool, call: ToolCall,
                       context: CallContext) -> ToolOutcome:
        """Run the call, bounded; the caller holds its lease (or runs without leases)."""
        arguments = parsed_arguments(call.arguments, tool.function.parameters)
        if isinstance(arguments, str):
            return ToolOutcome.failed(ErrorCode.TOOL_ARGUMENTS_INVALID, arguments)
        limits = self.settings
        started = time.perf_counter()

        def took() -> int:
            return round((time.perf_counter() - started) * 1000)

        try:
            await tool.ready()  # bounded by the tool: a reconnect is not the call's time
            async with asyncio.timeout(limits.timeout_s):
                async with self._places:
                    self.runs[tool.name] = self.runs.get(tool.name, 0) + 1
                    output = await tool.call(arguments, context)
        except TimeoutError:
            return ToolOutcome.failed(
                ErrorCode.TOOL_TIMEOUT,
                f"{tool.name} did not answer within {limits.timeout_s:g} s", took())
        except VoxlineError as exc:
            code = ErrorCode.TOOL_FAILED if exc.code is ErrorCode.INTERNAL_ERROR else exc.code
            return ToolOutcome.failed(code, exc.message, took())
        except Exception as exc:
            logger.warning("tool %s (call %s) failed", tool.name, call.id, exc_info=exc)
            return ToolOutcome.failed(ErrorCode.TOOL_FAILED,
                                      f"{tool.name} failed ({type(exc).__name__})", took())
        if not isinstance(output, str):
            output = json.dumps(output, default=str)
        cut = len(output) > limits.max_output_chars
        return ToolOutcome(output[:limits.max_output_chars], truncated=cut,
                           duration_ms=took())
