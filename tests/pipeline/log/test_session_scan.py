"""``logged_sessions``: every session the log holds with when it began (its first entry's
milliseconds); an erased session is not among them. ``created_tags``: the tags of its
``session.created``, none once that event is gone. On a standalone Redis and on the
cluster, whose session keys carry a hash tag."""

from __future__ import annotations

import pytest

from pipeline.log import EventLog, created_tags, logged_sessions
from pipeline.session import create_session, erase_session
from schemas import InputText, InputTextData, SessionSettings

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


async def test_the_tags_a_session_was_created_with_are_read_from_its_first_event(
        event_log: EventLog) -> None:
    tagged = await create_session(event_log, SessionSettings(tags=("beta", "release=2")))
    plain = await create_session(event_log, SessionSettings())
    assert await created_tags(event_log, tagged) == ("beta", "release=2")
    assert await created_tags(event_log, plain) == ()
    assert await created_tags(event_log, "sess_never") is None
    erased = await create_session(event_log, SessionSettings(tags=("beta",)))
    await erase_session(event_log, erased, by="test")
    assert await created_tags(event_log, erased) is None


async def test_a_stream_trimmed_past_its_first_event_has_lost_its_tags(
        event_log: EventLog) -> None:
    trimmed = await create_session(event_log, SessionSettings(tags=("beta",)))
    for n in range(3):
        await event_log.append(InputText(session_id=trimmed, turn_id=f"turn_{n}",
                                         data=InputTextData(text="hello")))
    await event_log.redis.xtrim(event_log.key(trimmed), maxlen=2, approximate=False)
    assert await created_tags(event_log, trimmed) is None
