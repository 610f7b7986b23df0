"""Where a live session's events go out: the log, one atomic batch at a time.

Every part of a live session (the socket-facing side, the responder, the voice turns, the
reply writer, the speculator) emits through one :class:`SessionEmitter`, handed down to
it when the session is built. The emitter appends to the log and folds what it appended
into the session's state; it calls nothing back, so events flow one way: out (one
exception: the end of a turn the log would not take is told to
:attr:`SessionEmitter.on_unlogged`). It queues nothing either: readers tail the log (a
socket the session's whole log, a chat stream one turn of it,
:func:`pipeline.session.follow_turn`), so what a session holds is its live response,
however long the connection has lasted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from pipeline.log import EventLog, SessionState
from pipeline.session.follow import ends_turn
from pipeline.tracing import Appended
from schemas import ErrorEvent, Event, EventBase, HistorySettings, VoxlineError

logger = logging.getLogger(__name__)

#: events that start a turn (with those that end one: when the fold may forget turns)
_NEW_TURN = frozenset({"input.text", "input.audio"})


class SessionEmitter:
    """Appends a session's events to its log and folds them into :attr:`state`."""

    def __init__(
        self, session_id: str, log: EventLog, state: SessionState, history: HistorySettings
    ) -> None:
        self.session_id = session_id
        self.log = log
        #: the session as folded from its log, kept current by :meth:`emit`
        self.state = state
        #: which past turns the fold keeps (those the LLM's dialogue history still shows)
        self.history = history
        #: called with each event appended and when its append ran (tracing): one that
        #: fails is logged, not raised
        self.observers: list[Callable[[Event, Appended], None]] = []
        #: told when the end of a turn could not be logged (:meth:`unlogged`)
        self.on_unlogged: list[Callable[[VoxlineError], None]] = []
        self._append_lock = asyncio.Lock()

    async def emit(self, *events: EventBase) -> list[Event]:
        """Append events (one atomic batch) and fold them; readers find them in the log.

        The fold keeps only the turns the dialogue history still shows (checked when a
        turn starts or ends), so the state does not grow with the number of turns either.
        """
        asked = time.time_ns()
        async with self._append_lock:
            began = time.time_ns()
            result = await self.log.append_batch(events)
            appended = Appended(asked, began, time.time_ns())
            for event in result.events:
                self.state.apply(event)
            if any(e.type in _NEW_TURN or ends_turn(e) for e in result.events):
                self.state.forget_turns(self.history)
            for observe in self.observers:
                for event in result.events:
                    try:
                        observe(event, appended)
                    except Exception:  # watching a turn must never break it
                        logger.exception("an observer of %s failed", self.session_id)
        return list(result.events)

    async def reject(self, error: VoxlineError, turn_id: str | None = None) -> None:
        """Tell the client about bad input or a failed turn: an ``error`` event; the
        session goes on."""
        await self.emit(
            ErrorEvent(session_id=self.session_id, turn_id=turn_id, data=error.to_payload())
        )

    def unlogged(self, error: VoxlineError) -> None:
        """The end of a turn (its ``response.done``, or the ``error`` of one that failed)
        could not be appended: the log is unavailable past its grace. Its client, reading
        the log, would wait for that end forever, so whoever serves the client is told
        here, outside the log (a socket is closed with ``event_log_unavailable``, to
        resume from its last event once the log is back)."""
        logger.warning("session %s: the end of a turn was not logged: %s", self.session_id,
                       error)
        for call in list(self.on_unlogged):
            try:
                call(error)
            except Exception:  # one listener's failure must not keep the others untold
                logger.exception("a listener of %s's unlogged end failed", self.session_id)
