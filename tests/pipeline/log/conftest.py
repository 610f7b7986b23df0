"""Fixtures of the event log's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pipeline.log import EventLog, LogFanout


@pytest.fixture
async def fanout(event_log: EventLog) -> AsyncIterator[LogFanout]:
    """A shared live reader of the test's log (a quiet partition read whole after 0.2 s)."""
    fanout = LogFanout(event_log, block_ms=200)
    try:
        yield fanout
    finally:
        await fanout.aclose()
