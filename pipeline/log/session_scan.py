"""Every session the log holds, with when it began: one scan for whoever needs to choose
sessions by age (the retention sweep, ``voxline evaluate --since``); and the tags a
session was created with (``voxline evaluate --tag``), read from its first event.

Redis keeps no index of sessions by time, and the log adds none (one more write per session
for a question asked by a nightly sweep or an operator): the sessions are the streams
``<prefix>:session:<id>`` (``<prefix>:session:{<tag>}:<id>`` on a cluster), found with
``SCAN``, and a session began at its first entry's id, whose first half is the append's
milliseconds. An erased session's stream is gone, so it is never found. ``SCAN`` may
return a key twice (a rehash during the scan): a caller that collects the sessions keeps
each once; nothing here grows with the log.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import cast

from pipeline.log.eventlog import EventLog
from pipeline.log.streamid import StreamId
from schemas import ResyncRequiredError, SessionCreated

__all__ = ["LoggedSession", "created_tags", "logged_sessions"]

#: keys asked for per SCAN round trip
SCAN_COUNT = 1000


@dataclass(frozen=True)
class LoggedSession:
    session_id: str
    #: the session's first event's append time, milliseconds since the epoch
    started_ms: int


async def logged_sessions(log: EventLog) -> AsyncIterator[LoggedSession]:
    """Each session in ``log`` (in no particular order, rarely twice), with when it
    began."""
    prefix = log.keys.session("")  # "{prefix}:session:" standalone
    pattern = (f"{log.settings.key_prefix}:session:*" if not log.keys.cluster
               else f"{log.settings.key_prefix}:session:{{*}}:*")
    async for raw in log.redis.scan_iter(match=pattern, count=SCAN_COUNT):
        key = raw.decode() if isinstance(raw, bytes) else raw
        session_id = key.rsplit(":", 1)[1] if log.keys.cluster else key[len(prefix):]
        first = cast(list[tuple[bytes, object]], await log.redis.xrange(key, "-", "+", count=1))
        if first:
            yield LoggedSession(session_id, StreamId.parse(first[0][0]).ms)


async def created_tags(log: EventLog, session_id: str) -> tuple[str, ...] | None:
    """The ``tags`` of the session's ``session.created`` (they never change afterwards),
    or ``None`` where that event is gone: the session was erased, or retention trimmed its
    stream past its first event (``VOXLINE_LOG__MAXLEN``), which took the tags with it."""
    try:
        page = await log.read_page(session_id, count=1)
    except ResyncRequiredError:
        return None
    first = page.events[0] if page.events else None
    return first.data.settings.tags if isinstance(first, SessionCreated) else None
