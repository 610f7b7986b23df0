"""What an append asks the script to trim and expire: retention, as the settings say."""

from __future__ import annotations

import time
from collections.abc import Sequence

from schemas import Event, EventLogSettings

__all__ = ["closed_ttl", "trim_minid"]


def trim_minid(settings: EventLogSettings) -> str:
    """The oldest id a stream keeps (``max_age_s``); "" for none."""
    if settings.max_age_s is None:
        return ""
    horizon = time.time_ns() // 1_000_000 - int(settings.max_age_s * 1000)
    return f"{max(horizon, 0)}-0"


def closed_ttl(settings: EventLogSettings, batch: Sequence[Event]) -> str:
    """The TTL a batch that closes its session gives the stream (``closed_ttl_s``)."""
    ttl = settings.closed_ttl_s
    if ttl is not None:
        for event in batch:  # (no generator: every append asks)
            if event.type == "session.closed":
                return str(ttl)
    return ""
