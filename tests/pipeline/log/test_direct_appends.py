"""Appends written straight onto a held connection per server (:mod:`pipeline.log._direct`),
on a standalone Redis and on the cluster: each caller answered in order, and everything
off the common path (a lost connection, a reply that never comes, a lost script, a full
send buffer) answered by redis-py instead, each append landing exactly once."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from redis.asyncio import Redis, RedisCluster

from pipeline.log import EventLog, create_redis
from pipeline.log._direct import _Replies
from schemas import EventLogSettings, InputText, InputTextData, RedisSettings
from tests.support.outages import lose_appends_after_sending

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_url(both_redis_urls: str) -> str:
    return both_redis_urls


def typed(session: str, text: str) -> InputText:
    return InputText(session_id=session, data=InputTextData(text=text))


async def append_each(log: EventLog, sessions: list[str], text: str = "hi") -> list[str | None]:
    appended = await asyncio.gather(*(log.append(typed(s, text)) for s in sessions))
    return [event.id for event in appended]


async def assert_logged_once(log: EventLog, sessions: list[str], ids: list[str | None]) -> None:
    for session, event_id in zip(sessions, ids, strict=True):
        assert [e.id for e in await log.read_all(session)] == [event_id], session


def new_sessions(count: int) -> list[str]:
    return [f"d{uuid.uuid4().hex[:8]}" for _ in range(count)]


async def test_appends_go_over_one_held_connection_per_server(event_log: EventLog) -> None:
    sessions = new_sessions(40)
    ids = await append_each(event_log, sessions)
    direct = event_log.appends.direct
    assert direct is not None
    opened = direct.opened
    assert 1 <= opened <= 3  # one per server the sessions live on
    assert event_log.appends.direct_calls == 40
    again = await append_each(event_log, sessions, "again")
    assert direct.opened == opened, "the connections are kept"
    for session, first, second in zip(sessions, ids, again, strict=True):
        logged = await event_log.read_all(session)
        assert [e.id for e in logged] == [first, second]
        assert [e.data.text for e in logged] == ["hi", "again"]  # type: ignore[union-attr]


async def test_a_connection_lost_under_the_calls_lands_each_once_through_redis_py(
    event_log: EventLog, monkeypatch: pytest.MonkeyPatch,
) -> None:
    await append_each(event_log, new_sessions(4))  # the channels are open
    lose_appends_after_sending(monkeypatch)
    sessions = new_sessions(20)
    ids = await append_each(event_log, sessions)
    monkeypatch.undo()
    await assert_logged_once(event_log, sessions, ids)
    direct = event_log.appends.direct
    assert direct is not None
    opened = direct.opened
    more = new_sessions(20)
    await assert_logged_once(event_log, more, await append_each(event_log, more))
    assert direct.opened > opened, "closed channels are opened again"


async def test_a_reply_that_never_comes_closes_the_channel_after_the_socket_timeout(
    redis_url: str, log_settings: EventLogSettings, monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = create_redis(redis_url, RedisSettings(socket_timeout_s=0.3))
    try:
        log = EventLog(client, log_settings)
        await append_each(log, new_sessions(4))
        monkeypatch.setattr(_Replies, "data_received", lambda self, data: None)
        sessions = new_sessions(6)
        ids = await asyncio.wait_for(append_each(log, sessions), 10)
        monkeypatch.undo()
        await assert_logged_once(log, sessions, ids)
    finally:
        await client.aclose()


async def test_a_script_the_servers_lost_is_loaded_by_redis_py_and_then_sent_direct(
    event_log: EventLog, redis: Redis,
) -> None:
    await append_each(event_log, new_sessions(4))
    direct_calls = event_log.appends.direct_calls
    if isinstance(redis, RedisCluster):
        await redis.execute_command("SCRIPT FLUSH", target_nodes=RedisCluster.PRIMARIES)
    else:
        await redis.script_flush()
    sessions = new_sessions(12)
    await assert_logged_once(event_log, sessions, await append_each(event_log, sessions))
    assert event_log.appends.direct_calls == direct_calls + 12  # tried direct first
    more = new_sessions(12)
    await assert_logged_once(event_log, more, await append_each(event_log, more))
    assert event_log.appends.direct_calls == direct_calls + 24


async def test_a_full_send_buffer_sends_through_redis_py(
    event_log: EventLog, redis: Redis,
) -> None:
    # a channel to every server first: a new session on a server without one would open
    # a fresh channel, not paused (8 sessions missed one of the cluster's 3 now and then)
    servers = 1
    if isinstance(redis, RedisCluster):
        await redis.initialize()  # learns the nodes (idempotent)
        servers = len(redis.get_primaries())
    for _ in range(20):
        await append_each(event_log, new_sessions(8))
        direct = event_log.appends.direct
        assert direct is not None
        if len(direct.channels()) == servers:
            break
    assert len(direct.channels()) == servers
    for channel in direct.channels():
        channel.replies.paused = True  # as the transport says over its high-water mark
    calls = event_log.appends.direct_calls
    sessions = new_sessions(10)
    await assert_logged_once(event_log, sessions, await append_each(event_log, sessions))
    assert event_log.appends.direct_calls == calls


async def test_a_slot_no_node_holds_sends_through_redis_py(
    event_log: EventLog, redis: Redis, monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not isinstance(redis, RedisCluster):
        pytest.skip("a standalone server holds every key")
    await append_each(event_log, new_sessions(4))
    calls = event_log.appends.direct_calls
    monkeypatch.setattr(redis, "get_node_from_key", lambda *_, **__: None)  # mid-reshard
    sessions = new_sessions(6)
    ids = await append_each(event_log, sessions)
    monkeypatch.undo()
    await assert_logged_once(event_log, sessions, ids)
    assert event_log.appends.direct_calls == calls


async def test_closing_the_client_closes_its_channels(
    redis_url: str, log_settings: EventLogSettings,
) -> None:
    client = create_redis(redis_url)
    log = EventLog(client, log_settings)
    await append_each(log, new_sessions(8))
    direct = log.appends.direct
    assert direct is not None
    channels = direct.channels()
    assert channels
    await client.aclose()
    assert all(channel.replies.closed for channel in channels)


async def test_turned_off_every_append_goes_through_redis_py(
    redis: Redis, log_settings: EventLogSettings,
) -> None:
    log = EventLog(redis, log_settings.model_copy(update={"direct_appends": False}))
    sessions = new_sessions(10)
    await assert_logged_once(log, sessions, await append_each(log, sessions))
    assert log.appends.direct is None and log.appends.direct_calls == 0


async def test_a_write_that_raises_fails_its_callers_instead_of_hanging(
    event_log: EventLog, monkeypatch: pytest.MonkeyPatch,
) -> None:
    await append_each(event_log, new_sessions(4))  # the channels are open: sent at once

    def broken(*_: Any) -> None:
        raise RuntimeError("a bug in the write")

    monkeypatch.setattr(_Replies, "send", broken)
    with pytest.raises(RuntimeError, match="a bug in the write"):
        await asyncio.wait_for(event_log.append(typed(new_sessions(1)[0], "x")), 10)


async def test_a_channel_to_a_server_no_longer_a_primary_is_given_back(
    event_log: EventLog, redis: Redis,
) -> None:
    """After a failover the old primary's channel would hold a connection and one of the
    client's places forever: the next channel opened gives it back."""
    if not isinstance(redis, RedisCluster):
        pytest.skip("a standalone server is always the one")
    await append_each(event_log, new_sessions(30))
    direct = event_log.appends.direct
    assert direct is not None
    places = redis._places._value  # type: ignore[attr-defined]
    name, channel = next(iter(direct._channels.items()))
    direct._channels["127.0.0.1:1"] = direct._channels.pop(name)  # its server is gone
    await append_each(event_log, new_sessions(30))  # opens the channel for `name` again
    assert "127.0.0.1:1" not in direct._channels
    assert channel.replies.closed
    assert redis._places._value == places  # type: ignore[attr-defined]
