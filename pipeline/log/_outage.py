"""Riding out a Redis that stops answering for a while: a failover, a restart.

When a Redis Cluster primary dies, its replica takes over after the cluster's node
timeout; a Sentinel does the same for a standalone server. For those seconds every
command to that shard fails. redis-py's own retry policy covers a dropped connection
(a fraction of a second), not that. So the log's writers and its shared live reader
keep trying for ``EventLogSettings.outage_grace_s`` before they give up:

* an append is retried with the ids it was stamped with, so one that landed before its
  reply was lost is recognised as a duplicate, never written twice;
* the live reader keeps its subscribers waiting and reads on from their cursors once
  the slot answers again (on the promoted replica); a subscriber that was shown events
  the failover lost gets ``resync_required`` from the entry numbers, never a silent gap;
* a background worker (:func:`pipeline.log.run_worker`) reads its feeds again, and what
  it handled but could not acknowledge stays pending, to be claimed again.

Only past the grace do callers see ``event_log_unavailable``.
"""

from __future__ import annotations

import logging
import time

from redis.exceptions import RedisError

from schemas import EventLogError

logger = logging.getLogger("pipeline.log.eventlog")

#: what a command that did not get through raises: Redis's errors, and AttributeError from
#: redis-py's cluster client, which follows an ASK redirect to a node it does not know yet
#: (one just added by a reshard) as ``None``; after a topology refresh the retry finds it
UNAVAILABLE = (RedisError, AttributeError)

_FIRST_PAUSE_S = 0.05
_LONGEST_PAUSE_S = 1.0


class Outage:
    """The current outage as one writer or reader sees it: when it began, and how long
    to pause before the next try (doubling, at most a second)."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.since: float | None = None
        self._pause_s = _FIRST_PAUSE_S

    def failed(self) -> bool:
        """Record a failed try; ``True`` while the outage is still within its grace."""
        now = time.monotonic()
        if self.since is None:
            self.since = now
        return now - self.since < self.grace_s

    def pause_s(self) -> float:
        """How long to wait before the next try."""
        pause, self._pause_s = self._pause_s, min(self._pause_s * 2, _LONGEST_PAUSE_S)
        return pause

    def ended(self) -> None:
        """A try succeeded: the next failure starts a new outage."""
        self.since = None
        self._pause_s = _FIRST_PAUSE_S


class SessionOutages:
    """The outage each session's appends are in, while it lasts: the grace counts from the
    session's first failed append, not from each append's. Counted per append, a reply of
    forty text deltas in an outage that outlasts the grace would wait forty graces (half
    an hour at 45 s) before its turn failed; counted per session, the appends after the
    grace fail at their first try until one gets through, so the turn ends and its client
    is told (:meth:`pipeline.session.SessionEmitter.unlogged`). Per session, not per log:
    one shard down must not fail the sessions of the others, nor their appends end its
    outage. Entries exist only during an outage; past :data:`_MOST_SESSIONS` the ones
    past their grace are forgotten (their next append waits a whole grace again)."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self._of: dict[str, Outage] = {}

    def of(self, session_id: str) -> Outage:
        outage = self._of.get(session_id)
        if outage is None:
            if len(self._of) >= _MOST_SESSIONS:
                now = time.monotonic()
                self._of = {key: value for key, value in self._of.items()
                            if value.since is None or now - value.since < self.grace_s}
            outage = self._of[session_id] = Outage(self.grace_s)
        return outage

    def ended(self, session_id: str) -> None:
        """An append of the session got through."""
        self._of.pop(session_id, None)


_MOST_SESSIONS = 10_000


def unavailable(exc: Exception) -> EventLogError:
    """The client's view of a Redis failure (its text stays in the server's log)."""
    logger.warning("the event log is unavailable: %r", exc)
    return EventLogError("the event log is unavailable; try again")
