"""The ids this process gives each session's events, and its appends still awaiting a reply.

Ids are stamped before an append is sent, above the last id this process used for the
session, so that a retried append is recognised as a duplicate (:mod:`pipeline.log.eventlog`).
The last id is kept for the most recently used sessions only (:data:`SESSION_CACHE`): a
session forgotten here is stamped from the clock again, and a collision with its own
older ids is re-stamped by the append like any other writer's.

An append in flight is what a live reader of this process may hear of (Redis pushes it
as the script runs) before its reply comes back here: the reader leaves it to the append,
which hands out the events it already holds, instead of decoding them again
(:meth:`SessionIds.in_flight`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence

from pipeline.log.streamid import ZERO, StreamId
from schemas import AppendConflictError, Event, EventBase

#: sessions whose last id is remembered
SESSION_CACHE = 4096


class SessionIds:
    """Stamps events with ids, and counts the appends in flight per session stream."""

    def __init__(self) -> None:
        self._last: OrderedDict[str, StreamId] = OrderedDict()
        self._flying: dict[str, tuple[int, StreamId]] = {}

    def stamp(self, events: Sequence[EventBase]) -> list[Event]:
        """Give unstamped events ids above the last id this process used for the session.
        Stamp once, then append (and retry) as often as needed: the ids make it idempotent."""
        if not events:
            return []
        session_id = events[0].session_id
        last = self._last.get(session_id, ZERO)
        now = time.time_ns() // 1_000_000
        stamped: list[Event] = []
        for event in events:
            if event.session_id != session_id:
                raise ValueError("a batch belongs to one session")
            if event.id is None:
                last = last.next(now)
                event = event.model_copy(update={"id": str(last)})
            else:
                last = max(last, StreamId.parse(event.id))
            stamped.append(event)  # type: ignore[arg-type]
        self.remember(session_id, last)
        return stamped

    def restamp(self, batch: list[Event], last_id: bytes, restampable: bool) -> list[Event]:
        """Another writer took ``batch``'s ids (``last_id``: the stream's last): stamped
        again above it, unless the caller chose them (:class:`AppendConflictError`)."""
        if not restampable:
            raise AppendConflictError(
                f"event ids {batch[0].id}..{batch[-1].id} collide with other events",
                session_id=batch[0].session_id,
                last_id=last_id.decode(),
            )
        self.remember(batch[0].session_id, StreamId.parse(last_id), force=True)
        return self.stamp([event.model_copy(update={"id": None}) for event in batch])

    def remember(self, session_id: str, last: StreamId, *, force: bool = False) -> None:
        """``last`` is the session's last id (``force``: even below the one remembered)."""
        current = self._last.get(session_id, ZERO)
        self._last[session_id] = last if force else max(current, last)
        self._last.move_to_end(session_id)
        while len(self._last) > SESSION_CACHE:
            self._last.popitem(last=False)

    def in_flight(self, key: str) -> StreamId | None:
        """The last id of the appends to stream ``key`` still awaiting their reply (None:
        none)."""
        flying = self._flying.get(key)
        return None if flying is None else flying[1]

    def fly(self, key: str, last_id: str | None, *, again: bool = False) -> None:
        """An append to ``key`` up to ``last_id`` is being sent (``again``: the same
        append, stamped anew after a conflict; :meth:`land` once per append)."""
        count, last = self._flying.get(key, (0, ZERO))
        self._flying[key] = (count + (not again), max(last, StreamId.parse(last_id or "0-0")))

    def land(self, key: str) -> None:
        """An append to ``key`` ended (answered, failed or cancelled)."""
        count, last = self._flying.pop(key, (1, ZERO))
        if count > 1:
            self._flying[key] = (count - 1, last)
