"""What the event log's reads and appends return: plain records, apart from the log so
that the modules around it (fan-out, erasure) can name them without importing it."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.log.streamid import StreamId
from schemas import Event

__all__ = ["AppendResult", "LogPage"]


@dataclass(frozen=True)
class AppendResult:
    """What an append did: ``duplicate`` is true when every event was already there."""

    events: tuple[Event, ...]
    first_number: int
    duplicate: bool


@dataclass(frozen=True)
class LogPage:
    """One snapshot read: events after the cursor and the stream's counters at that moment."""

    events: tuple[Event, ...]
    numbers: tuple[int, ...]
    exists: bool
    entries_added: int
    last_id: StreamId
