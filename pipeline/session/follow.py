"""One turn's events, read from the session's log as they are appended.

A session queues no events for its readers (:mod:`pipeline.session.emitter`): whoever wants a
turn's events as they happen tails the log, from an id before the turn began, and keeps
that turn's. The log already holds them, so a reader that starts late misses nothing,
and what a reader holds is what it has not sent yet, not the connection's history.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Protocol

from pipeline.aio import aclose_stream
from schemas import ErrorEvent, Event

#: the events after which a turn has nothing more to say
TURN_ENDS = frozenset({"response.done", "response.cancelled"})


class TailSource(Protocol):
    """What tails a session's log: :class:`pipeline.log.LogFanout` in a server (one
    connection for all its readers), :class:`pipeline.log.EventLog` anywhere else."""

    def tail(self, session_id: str, after: str | None = None) -> AsyncIterator[Event]: ...


def ends_turn(event: Event) -> bool:
    """``response.done``, ``response.cancelled``, or an error the turn cannot go on after."""
    if event.type in TURN_ENDS:
        return True
    return isinstance(event, ErrorEvent) and not event.data.recoverable


async def follow_turn(
    log: TailSource, session_id: str, turn_id: str, *, after: str | None
) -> AsyncGenerator[Event, None]:
    """The events of ``turn_id``, in log order, from those after ``after`` on, until (and
    with) the one that :func:`ends_turn`. Other turns' events are skipped.

    Errors of the log (:class:`schemas.EventLogError`, or
    :class:`schemas.ResyncRequiredError` when retention overtook the reader, or
    :class:`schemas.OverloadedError` when a shared reader dropped a slow one) propagate.
    """
    tail = log.tail(session_id, after)
    try:
        async for event in tail:
            if event.turn_id != turn_id:
                continue
            yield event
            if ends_turn(event):
                return
    finally:  # the tail is a generator: close it now, not when it is collected
        await aclose_stream(tail)
