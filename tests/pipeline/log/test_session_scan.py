"""``logged_sessions``: every session the log holds with when it began (its first entry's
milliseconds); an erased session is not among them. On a standalone Redis and
on the cluster, whose session keys carry a hash tag."""

from __future__ import annotations

import pytest

from pipeline.log import EventLog, logged_sessions
from pipeline.session import create_session, erase_session
from schemas import SessionSettings

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_url(both_redis_urls: str) -> str:
    return both_redis_urls


async def test_each_session_once_with_its_first_event_s_time(event_log: EventLog) -> None:
    made = [await create_session(event_log, SessionSettings()) for _ in range(3)]
    erased = await create_session(event_log, SessionSettings())
    await erase_session(event_log, erased, by="test")
    found = [s async for s in logged_sessions(event_log)]
    ids = [s.session_id for s in found]
    assert sorted(set(ids)) == sorted(made)  # the erased one gone
    for session in found:
        first = (await event_log.read_page(session.session_id, count=1)).events[0]
        assert session.started_ms == int(first.id.split("-")[0])


async def test_an_empty_log_has_no_sessions(event_log: EventLog) -> None:
    assert [s async for s in logged_sessions(event_log)] == []
