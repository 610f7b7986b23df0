"""Ending the server tool calls a dead replica left running, once, from the log.

A server call's start is in the log before it runs and its end right after. A replica
that dies in between (killed, out of memory, its node gone) leaves a call started and not
ended, and its response never finished. The next replica to open the session ends it:

* it waits until the call's lease has lapsed (:class:`pipeline.log.CallLeases`: its runner
  refreshed it while alive), then takes the lease itself, so no two replicas decide;
* it reads the log again: an end appended meanwhile (the runner was alive after all, or
  another replica decided first) is the end, and nothing more is done;
* otherwise the dead response is ended (``response.cancelled``, reason ``shutdown``) and
  the call is decided: a tool declared idempotent is run again with the same call id (its
  idempotency key: a side effect it has made already is not made twice); any other
  gets ``tool.call.failed`` ``tool_interrupted``, never a second run, and the model reads
  that it may or may not have happened;
* if that was the session's newest turn, the reply goes on with the outcomes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from pipeline.log import EventLog, ToolCallRecord, TurnState
from pipeline.reply import ToolOutcome, ended_event
from pipeline.session.emitter import SessionEmitter
from pipeline.tools import CallContext, Toolbox
from schemas import (
    ErrorCode,
    EventBase,
    ResponseCancelled,
    ResponseCancelledData,
    ToolCall,
)

__all__ = ["INTERRUPTED", "CallRecovery"]

logger = logging.getLogger(__name__)

INTERRUPTED = ("the call was interrupted when its server stopped, and was not run again: "
               "it may or may not have taken effect")


class CallRecovery:
    """Ends a session's orphaned server calls (see the module docstring)."""

    def __init__(self, emitter: SessionEmitter, log: EventLog, toolbox: Toolbox,
                 go_on: Callable[[], Awaitable[None]]) -> None:
        self._emitter = emitter
        self._log = log
        self._toolbox = toolbox
        self._go_on = go_on

    def orphans(self) -> list[tuple[TurnState, ToolCallRecord]]:
        """Server calls the session's state has started and not ended."""
        return [(turn, call) for turn in self._emitter.state.turns.values()
                for call in turn.pending_calls if call.runs_on == "server"]

    async def run(self) -> int:
        """End every orphan; the number this replica ended."""
        ended = 0
        for turn, call in self.orphans():
            try:
                ended += await self._recover(turn, call)
            except Exception:
                logger.exception("tool call %s of session %s could not be recovered",
                                 call.call_id, self._emitter.session_id)
        state = self._emitter.state
        newest = next(reversed(state.turns.values()), None)
        if ended and newest is not None and newest.awaits_reply:
            await self._go_on()
        return ended

    async def _recover(self, turn: TurnState, call: ToolCallRecord) -> bool:
        session_id = self._emitter.session_id
        leases = self._toolbox.runner.leases
        if leases is None:  # no leases: nobody can say the runner is gone
            return False
        # a lease in Redis, refreshed by a live runner: polled, nothing local to wait on
        while (left := await leases.remaining_ms(session_id, call.call_id)) > 0:  # noqa: ASYNC110
            await asyncio.sleep(left / 1000 + 0.01)
        async with leases.hold(session_id, call.call_id) as mine:
            if not mine or await self._ended_in_log(call.call_id):
                return False
            outcome = await self._decide(turn, call)
            events: list[EventBase] = []
            if turn.status == "responding":  # the response died with its replica
                events.append(ResponseCancelled(
                    session_id=session_id, turn_id=turn.turn_id, data=ResponseCancelledData(
                        reason="shutdown", text_sent=turn.assistant_text)))
            events.append(ended_event(session_id, turn.turn_id, call.call_id, outcome))
            await self._emitter.emit(*events)
            return True

    async def _decide(self, turn: TurnState, call: ToolCallRecord) -> ToolOutcome:
        tool = self._toolbox.tools.get(call.name)
        if tool is None or not tool.idempotent:
            return ToolOutcome.failed(ErrorCode.TOOL_INTERRUPTED, INTERRUPTED)
        context = CallContext(self._emitter.session_id, turn.turn_id, call.call_id,
                              self._emitter.state.settings)
        return await self._toolbox.runner.run_held(
            tool, ToolCall(id=call.call_id, name=call.name, arguments=call.arguments), context)

    async def _ended_in_log(self, call_id: str) -> bool:
        events = await self._log.read_all(self._emitter.session_id)
        return any(event.type in ("tool.call.output", "tool.call.failed", "tool.call.cancelled")
                   and getattr(event.data, "call_id", None) == call_id for event in events)
