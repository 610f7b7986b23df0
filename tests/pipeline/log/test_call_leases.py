"""A running call's lease: one holder at a time, kept while it runs, lapsing after it."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from pipeline.log import CallLeases, EventLog

pytestmark = pytest.mark.redis


async def test_one_holder_at_a_time_kept_while_it_runs_and_lapsing_after(
    redis: Redis, event_log: EventLog,
) -> None:
    leases = CallLeases(redis, event_log.keys, ttl_s=1.0, owner="replica-a")
    other = CallLeases(redis, event_log.keys, ttl_s=1.0, owner="replica-b")
    async with leases.hold("sess_l", "call_1") as mine:
        assert mine
        async with other.hold("sess_l", "call_1") as theirs:
            assert not theirs  # a second replica never decides for a running call
        await asyncio.sleep(1.4)  # longer than the TTL: refreshed while held
        assert await other.remaining_ms("sess_l", "call_1") > 0
        assert await redis.get(event_log.keys.tool_call("sess_l", "call_1")) == b"replica-a"
    assert await other.remaining_ms("sess_l", "call_1") > 0  # not deleted: it lapses
    await asyncio.sleep(1.2)
    assert await other.remaining_ms("sess_l", "call_1") == 0
    async with other.hold("sess_l", "call_1") as theirs:
        assert theirs
