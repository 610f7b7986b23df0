"""Appending a running reply to the log, and grounding it first.

A reply is a stream of events the orchestrator makes; the session appends each one
before any client sees it. Two things can go wrong on the way, and neither may end the
reply the client is reading: a search for the turn's documents fails or is slow (the
reply goes on without them, with a ``warning``), or a log write fails (the reply goes on,
reported once with a ``warning``; the event that ends a turn is retried, since every
reader of the turn waits for it, and one that still fails is told to whoever serves the
session outside the log: :meth:`SessionEmitter.unlogged`). :class:`ReplyWriter` holds
both rules for the session's responder (:mod:`pipeline.session.responder`), which owns
the turn itself, and appends through the session's emitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator

from pipeline.retrieval import Grounder
from pipeline.session.emitter import SessionEmitter
from pipeline.session.follow import TURN_ENDS
from schemas import (
    ChatMessage,
    ErrorCode,
    Event,
    EventBase,
    EventLogError,
    ResponseCitations,
    ResponseStarted,
    SearchToolConfig,
    WarningData,
    WarningEvent,
)

logger = logging.getLogger(__name__)

#: the events readers of a turn wait for, and the pauses between tries to append one; a
#: call's start too: a server tool runs only once it is in the log
_RETRIED_TYPES = frozenset({"response.done", "response.cancelled", "tool.call.started"})
_END_RETRY_S = (0.05, 0.2, 0.5)


class ReplyWriter:
    """Grounds a session's turns and appends their replies (see the module docstring)."""

    def __init__(self, emitter: SessionEmitter, grounder: Grounder | None) -> None:
        self.session_id = emitter.session_id
        self._emitter = emitter
        self.grounder = grounder

    async def ground(
        self, turn_id: str, config: SearchToolConfig, query: str
    ) -> tuple[list[ChatMessage], ResponseCitations]:
        """Search before the turn: the context message, the citations to send before
        ``response.done``; a failed search appends ``warning`` events and gives none."""
        if self.grounder is None:
            warning = WarningData(code=ErrorCode.RETRIEVAL_FAILED, stage="retrieval",
                                  message="this server has no retrieval configured")
            await self._emitter.emit(WarningEvent(session_id=self.session_id,
                                                  turn_id=turn_id, data=warning))
            return [], ResponseCitations(session_id=self.session_id, turn_id=turn_id)
        grounded = await self.grounder.prompt(self.session_id, config, query)
        if grounded.warnings:
            await self._emitter.emit(*(
                WarningEvent(session_id=self.session_id, turn_id=turn_id, data=w)
                for w in grounded.warnings))
        citations = ResponseCitations(
            session_id=self.session_id, turn_id=turn_id, data=grounded.citations)
        return list(grounded.context), citations

    async def write(
        self, turn_id: str, stream: AsyncGenerator[Event, None],
        citations: ResponseCitations | None = None, *, waited_ms: int | None = None,
    ) -> None:
        """Append a reply's events as they come, ``citations`` right before
        ``response.done``, ``waited_ms`` (the turn's wait for a place) in
        ``response.started``; closing the stream when done or failed."""
        async with contextlib.aclosing(stream):
            write_failed = False
            event: Event | None = await anext(stream, None)
            while event is not None:
                if waited_ms and isinstance(event, ResponseStarted):
                    event = event.model_copy(update={"data": event.data.model_copy(
                        update={"waited_ms": waited_ms})})
                if citations is not None and event.type == "response.done":
                    write_failed |= not await self._append(citations, turn_id)
                appended = await self._append(event, turn_id, warn=not write_failed)
                write_failed |= not appended
                if appended or event.type != "tool.call.started":
                    event = await anext(stream, None)
                    continue
                try:  # a call not in the log is not run: the reply is told so
                    event = await stream.athrow(EventLogError(
                        "tool.call.started was not appended", code=ErrorCode.LOG_WRITE_FAILED))
                except StopAsyncIteration:
                    event = None

    async def _append(self, event: EventBase, turn_id: str, *, warn: bool = True) -> bool:
        """Append one event of a running reply. A log write that fails does not end the
        reply: it is logged, reported once with a ``warning`` event (when the log takes
        that one), and the reply goes on; ``response.done`` still carries the whole text."""
        try:
            if getattr(event, "type", None) in _RETRIED_TYPES:
                await self._append_retried(event)  # retried (bounded)
            else:
                await self._emitter.emit(event)
            return True
        except EventLogError as exc:
            kind = getattr(event, "type", type(event).__name__)
            logger.warning("session %s turn %s: %s not appended: %s", self.session_id,
                           turn_id, kind, exc)
            if kind in TURN_ENDS:  # its readers would wait for it forever: told otherwise
                self._emitter.unlogged(exc)
            if warn:
                warning = WarningData(
                    code=ErrorCode.LOG_WRITE_FAILED, stage="log",
                    message="an event of this reply could not be written to the session "
                    "log; the reply goes on", details={"event": kind})
                with contextlib.suppress(EventLogError):
                    await self._emitter.emit(WarningEvent(session_id=self.session_id,
                                                          turn_id=turn_id, data=warning))
            return False

    async def _append_retried(self, event: EventBase) -> None:
        """Append an event that must be in the log, retried a few times: the end of a turn
        (every reader of the turn waits for it) or a tool call's start (the call runs only
        once it is logged). The last failure propagates."""
        for delay in _END_RETRY_S:
            try:
                await self._emitter.emit(event)
                return
            except EventLogError:
                await asyncio.sleep(delay)
        await self._emitter.emit(event)
