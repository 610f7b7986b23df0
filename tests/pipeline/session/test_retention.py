"""Retention: sessions older than the setting are erased (receipt ``by: retention``),
younger ones kept; on a standalone Redis and on the cluster."""

from __future__ import annotations

import time

import pytest

from pipeline.log import EventLog, erased_receipt
from pipeline.session import Tenant, create_session, expire_sessions
from schemas import SessionSettings

pytestmark = pytest.mark.redis

DAY_MS = 86_400_000


@pytest.fixture
def redis_url(both_redis_urls: str) -> str:
    return both_redis_urls


async def test_sessions_past_the_retention_are_erased_and_younger_ones_kept(
    event_log: EventLog,
) -> None:
    old = await create_session(event_log, SessionSettings())
    young = await create_session(event_log, SessionSettings())
    now = time.time_ns() // 1_000_000
    # seen from two days on, the first is older than a day; the second was made after it
    erased = await expire_sessions(event_log, 1.0, now_ms=now + 2 * DAY_MS)
    assert {r.session_id for r in erased} >= {old, young}
    assert all(r.by == "retention" for r in erased)
    assert await erased_receipt(event_log, old) is not None
    assert not await event_log.exists(old)
    third = await create_session(event_log, SessionSettings())
    assert await expire_sessions(event_log, 1.0, now_ms=now) == []  # none a day old yet
    assert await event_log.exists(third)


async def test_each_api_keys_sessions_keep_their_own_retention(event_log: EventLog) -> None:
    short = await create_session(event_log, SessionSettings(), tenant=Tenant("key:short"))
    long = await create_session(event_log, SessionSettings(), tenant=Tenant("key:long"))
    anyone = await create_session(event_log, SessionSettings())
    now = time.time_ns() // 1_000_000
    erased = await expire_sessions(event_log, None, tenants={"key:short": 1.0, "key:long": 30},
                                   now_ms=now + 2 * DAY_MS)
    assert [r.session_id for r in erased] == [short]  # no retention for the others yet
    erased = await expire_sessions(event_log, 10.0, tenants={"key:short": 1.0, "key:long": 30},
                                   now_ms=now + 11 * DAY_MS)
    assert [r.session_id for r in erased] == [anyone]  # the default; the long key's keeps
    assert await event_log.exists(long)
