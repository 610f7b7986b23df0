"""Who read a session's log: an audit stream of every read through the API or the CLI.

Each read of a session's events (its socket, its event stream, its audio, its messages,
the session itself, a chat continuing it, the CLI's stats, replay, trace and export) and
each erasure appends one entry to ``{prefix}:audit``: when (the entry's id), which
session, what (the action: the request's method and path, or the command), and who (the
session's token, an admin key, an API key by a digest of it, the CLI and its user). No
content: an erased session's entries stay, so an operator can still say who read it.
The stream is bounded (``audit_maxlen``, trimmed in steps). A read is refused when its
entry cannot be written (the log is unavailable): nothing is read unrecorded.
"""

from __future__ import annotations

from typing import Any, cast

from redis.exceptions import RedisError

from pipeline.log.eventlog import EventLog
from schemas import EventLogError

__all__ = ["audit_entries", "record_read"]


def _key(log: EventLog) -> str:
    return f"{log.settings.key_prefix}:audit"


async def record_read(log: EventLog, session_id: str, action: str, who: str) -> None:
    """One audit entry (see the module docstring)."""
    try:
        await log.redis.xadd(_key(log), {"session": session_id, "action": action[:200],
                                         "who": who[:200]},
                             maxlen=log.settings.audit_maxlen, approximate=True)
    except RedisError as exc:
        raise EventLogError("the audit log is unavailable, so nothing is read; try "
                            "again") from exc


async def audit_entries(log: EventLog, session_id: str | None = None, *,
                        count: int = 1000) -> list[dict[str, Any]]:
    """The newest ``count`` entries (of one session, or all), oldest first."""
    found: list[dict[str, Any]] = []
    before = "+"
    while len(found) < count:
        page = cast(list[tuple[bytes, dict[bytes, bytes]]],
                    await log.redis.xrevrange(_key(log), before, "-", count=1000))
        for entry_id, fields in page:
            entry = {k.decode(): v.decode() for k, v in fields.items()}
            if session_id is None or entry["session"] == session_id:
                found.append({"at_ms": int(entry_id.decode().split("-")[0]), **entry})
        if len(page) < 1000:
            break
        before = "(" + page[-1][0].decode()
    return list(reversed(found[:count]))
