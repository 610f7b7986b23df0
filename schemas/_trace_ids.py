"""A turn's trace ids, derived from its session and turn ids.

Every event of a turn names the trace that shows it (``voxline trace``, the live OTLP
trace, the latency exemplars): the ids are a hash of the session and turn ids, so they
are known before anything is recorded, are the same in every process, and need no byte
in the log. Here, beside the events, because the events carry them.
"""

from __future__ import annotations

import functools
import hashlib

__all__ = ["derived_id", "root_span_id", "trace_id"]


@functools.lru_cache(maxsize=4096)
def trace_id(session_id: str, turn_id: str) -> str:
    """The turn's trace id (W3C: 32 hex digits). Remembered for the turns in use: every
    event of a turn names it, each time the event is written (a hash a frame before)."""
    return derived_id(session_id, turn_id, size=32)


@functools.lru_cache(maxsize=4096)
def root_span_id(trace: str) -> str:
    """The id of a turn's root span (``turn``), from its trace id (16 hex digits)."""
    return derived_id(trace, "turn", size=16)


def derived_id(*parts: str, size: int) -> str:
    """``size`` hex digits derived from ``parts``: the same parts, the same id."""
    return hashlib.sha256(":".join(parts).encode()).hexdigest()[:size]
