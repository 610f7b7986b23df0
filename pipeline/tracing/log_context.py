"""Who a log record is about: the session and turn of the code that wrote it.

A line such as "call rtc_… ended" or a stage's warning is only useful to an operator if
it can be joined with the session's log and its trace. The session and the turn are
context variables: :func:`bind_session` sets the session for the task that opens it
(and the tasks it starts after), :func:`turn_context` makes a turn's response task's
context, and a call to a stage replica carries them (:func:`carrier`, :func:`adopt`),
so the replica's records say whom its work was for. :func:`install_log_context` makes
every log record of the process carry them, as ``session_id`` and ``turn_id``
attributes, with the turn's ``trace_id`` (the trace ``voxline trace`` gives the turn)
where a turn is known: a JSON formatter (Ray's, with ``VOXLINE_LOG_FORMAT=json``) writes
them beside the message; the plain text one ignores them.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Mapping
from typing import Any

from schemas import derived_id, root_span_id, trace_id

__all__ = ["adopt", "bind_session", "carrier", "derived_id", "install_log_context",
           "root_span_id", "trace_id", "turn_context"]

_SESSION: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "voxline_session_id", default=None)
_TURN: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "voxline_turn_id", default=None)


def bind_session(session_id: str) -> None:
    """The current task (and every task it starts from now on) works for ``session_id``."""
    _SESSION.set(session_id)


def turn_context(turn_id: str) -> contextvars.Context:
    """A copy of the current context working for ``turn_id``: run a turn's task in it
    (``asyncio.create_task(..., context=turn_context(turn_id))``)."""
    context = contextvars.copy_context()
    context.run(_TURN.set, turn_id)
    return context


def carrier() -> dict[str, str]:
    """The session and turn the current task works for, to send with a call to another
    process (a stage replica), where :func:`adopt` takes them up; in a turn, also its
    W3C ``traceparent`` (the turn's root span, whose id is known before it is recorded),
    which the callee's span takes as its parent."""
    session, turn = _SESSION.get(), _TURN.get()
    found = {"session_id": session, "turn_id": turn}
    if session is not None and turn is not None:
        trace = trace_id(session, turn)
        found["traceparent"] = f"00-{trace}-{root_span_id(trace)}-01"
    return {key: value for key, value in found.items() if value is not None}


def adopt(context: Mapping[str, str] | None) -> None:
    """The current task works for the session and turn a caller's :func:`carrier` said
    (for a task that serves that one call, as a replica's request task does)."""
    context = context or {}
    _SESSION.set(context.get("session_id"))
    _TURN.set(context.get("turn_id"))


def install_log_context() -> None:
    """Make this process's log records carry the session, turn and trace ids (once per
    process: later calls do nothing)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "voxline_context", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        session, turn = _SESSION.get(), _TURN.get()
        if session is not None:
            record.session_id = session
            if turn is not None:
                record.turn_id = turn
                record.trace_id = trace_id(session, turn)
        return record

    factory.voxline_context = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
