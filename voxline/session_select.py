"""Sessions chosen by when they began and how they are tagged: ``--since``, ``--until`` and
``--tag`` of ``voxline evaluate`` and ``voxline export``.

A moment is an ISO 8601 date or time (``2026-11-27``, ``2026-11-27T09:30``; UTC unless it
names its offset) or a span back from now (``90m``, ``12h``, ``7d``). The sessions are
those the log holds that began in ``[since, until)``, found by
:func:`pipeline.log.logged_sessions` (a scan: the log keeps no index by time); the most
recent ``limit`` of them are taken, oldest first. With a tag, only sessions created with
it count (``SessionSettings.tags``, read from each one's first event, newest first, until
``limit`` are found).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from schemas import ConfigurationError, Settings

__all__ = ["parse_moment", "sessions_between"]

_SPAN = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_moment(text: str, *, now_ms: int | None = None, option: str = "--since") -> int:
    """Milliseconds since the epoch of ``text`` (see the module docstring)."""
    now = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    spoken = text.strip()
    if match := _SPAN.match(spoken):
        return now - round(float(match[1]) * _UNIT_MS[match[2]])
    try:
        moment = datetime.fromisoformat(spoken)
    except ValueError:
        raise ConfigurationError(
            f"{option} {text!r} is neither an ISO 8601 time (2026-11-27T09:30, UTC unless "
            "it says its offset) nor a span back from now (90m, 12h, 7d)",
            setting=option) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


async def sessions_between(settings: Settings, since_ms: int | None, until_ms: int | None,
                           limit: int, tag: str | None = None) -> list[str]:
    """The ids of the most recent ``limit`` sessions that began in ``[since, until)`` (and
    were created with ``tag``, when given), oldest first."""
    from pipeline.log import EventLog, create_redis, created_tags, logged_sessions

    if since_ms is not None and until_ms is not None and until_ms <= since_ms:
        raise ConfigurationError("--until must come after --since", setting="--until")
    if not settings.redis_url:
        raise ConfigurationError("no Redis URL to read sessions from")
    redis = create_redis(settings.redis_url, settings.redis)
    try:
        log = EventLog(redis, settings.log)
        found = {s.session_id: s.started_ms async for s in logged_sessions(log)
                 if (since_ms is None or s.started_ms >= since_ms)
                 and (until_ms is None or s.started_ms < until_ms)}  # each once
        newest = [session_id for _, session_id in sorted(
            ((t, s) for s, t in found.items()), reverse=True)]
        chosen: list[str] = []
        for session_id in newest:
            if len(chosen) == limit:
                break
            if tag is None or tag in (await created_tags(log, session_id) or ()):
                chosen.append(session_id)
    finally:
        await redis.aclose()
    return chosen[::-1]
