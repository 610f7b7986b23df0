"""Where each session stood at the last feed entry a worker handled, so the next reads on.

A feed worker needs a session's state as of the event an entry points at (its settings
then, the turn so far). Folding the session's log from its start for every entry made a
worker's cost per turn grow with the call: the stream holds every chunk of audio, in and
out, and at turn 200 of a session one entry read ~28 MB and spent ~0.2 CPU-s folding it,
on the Gateway's loop where the CPU profile runs the workers, once per worker per turn.

:class:`SessionFolds` keeps the fold as of the last entry handled per session, so the next
entry of that session reads and folds only what was appended since. It is bounded twice:
in sessions (least recently used first out) and in time (a fold not used for ``ttl_s`` is
dropped), so that what a worker holds of an erased session (its settings, its last turns)
leaves the process within ``ttl_s`` even when no entry of it comes again. Each fold keeps
only the turns a fold of the log would still show (:meth:`SessionState.forget_turns`), so
one session's share does not grow with its calls either.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from pipeline.log import SessionState, StreamId

__all__ = ["SessionFolds"]


class SessionFolds:
    """Folds of sessions' logs, each as of one event, for the worker that made them."""

    def __init__(self, max_sessions: int, ttl_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_sessions = max_sessions
        self.ttl_s = ttl_s
        self._clock = clock
        self._folds: OrderedDict[str, tuple[float, SessionState]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._folds)

    def take(self, session_id: str, event_id: str) -> SessionState | None:
        """The session's fold as of an event before ``event_id``, handed over (the caller
        folds on from it and :meth:`keep` s the result); ``None`` when there is none, it
        lapsed, or it is not before ``event_id`` (a redelivered entry: it is left)."""
        self._expire()
        held = self._folds.get(session_id)
        if held is None:
            return None
        state = held[1]
        if state.last_event_id is None or (StreamId.parse(state.last_event_id)
                                           >= StreamId.parse(event_id)):
            return None
        del self._folds[session_id]
        return state

    def keep(self, state: SessionState) -> None:
        """Hold ``state`` (a fold as of its ``last_event_id``) for the session's next entry,
        with the turns a fold no longer shows dropped."""
        if self.max_sessions <= 0 or state.last_event_id is None:
            return
        state.forget_turns()
        self._folds[state.session_id] = (self._clock(), state)
        self._folds.move_to_end(state.session_id)
        while len(self._folds) > self.max_sessions:
            self._folds.popitem(last=False)

    def _expire(self) -> None:
        """Drop the folds not used for ``ttl_s`` (the oldest are first)."""
        oldest = self._clock() - self.ttl_s
        while self._folds:
            used, _ = next(iter(self._folds.values()))
            if used > oldest:
                return
            self._folds.popitem(last=False)
