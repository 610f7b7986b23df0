"""The log on a standalone Redis watched by Sentinel (a primary, its replica, 3 sentinels,
started by the fixture): the URL, the client it builds, appends, replica acknowledgement
and a live read through the sentinels. The failover trial is test_redis_sentinel_failover.
"""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import BlockingConnectionPool, Redis

from pipeline.log import EventLog, LogFanout, create_redis, is_cluster
from pipeline.log._blocking import BlockingReads
from pipeline.log.redis_client import SentinelUrl, is_sentinel, sentinel_url
from schemas import (
    ConfigurationError,
    ErrorCode,
    EventLogError,
    EventLogSettings,
    InputText,
    InputTextData,
    RedisSettings,
)
from voxline.redis_sentinel import RedisSentinelServers

pytestmark = pytest.mark.redis

@pytest.fixture
def redis_url(redis_sentinel_url: str) -> str:
    return redis_sentinel_url


def text(session: str, body: str) -> InputText:
    return InputText(session_id=session, data=InputTextData(text=body))


@pytest.mark.parametrize(("url", "parsed"), [
    ("redis+sentinel://10.0.0.1:26380,10.0.0.2:26381/mymaster",
     SentinelUrl((("10.0.0.1", 26380), ("10.0.0.2", 26381)), "mymaster")),
    ("redis+sentinel://sentinel/mymaster/3", SentinelUrl((("sentinel", 26379),), "mymaster", 3)),
    ("redis+sentinel://a:1/m/", SentinelUrl((("a", 1),), "m")),
    ("redis+sentinel://[::1]:5000,[::1]/m", SentinelUrl((("::1", 5000), ("::1", 26379)), "m")),
    ("redis+sentinel://me:p%40ss@a:1/my%20master/0",
     SentinelUrl((("a", 1),), "my master", 0, "me", "p@ss")),
    ("redis+sentinel://:secret@a:1/m", SentinelUrl((("a", 1),), "m", 0, None, "secret")),
])
def test_a_sentinel_url_names_sentinels_master_and_db(url: str, parsed: SentinelUrl) -> None:
    assert sentinel_url(url) == parsed


@pytest.mark.parametrize("url", [
    "redis+sentinel://a:1",  # no master name
    "redis+sentinel://a:1/",
    "redis+sentinel:///m",  # no sentinel
    "redis+sentinel://a:x/m",
    "redis+sentinel://a:0/m",
    "redis+sentinel://a:65536/m",
    "redis+sentinel://::1/m",  # an IPv6 address needs its brackets
    "redis+sentinel://a:1/m/zero",
    "redis+sentinel://a:1/m/0/extra",
    "redis+sentinel://a:1/m?socket_timeout=1",
])
def test_a_malformed_sentinel_url_says_so(url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"Redis URL|redis\+sentinel"):
        create_redis(url)


def test_other_urls_are_not_sentinel_urls() -> None:
    assert sentinel_url("redis://127.0.0.1:6379/0") is None
    assert sentinel_url("redis+cluster://127.0.0.1:7000/") is None


async def test_the_url_selects_a_bounded_client_of_the_master(
    redis_sentinel_servers: RedisSentinelServers,
) -> None:
    client = create_redis(redis_sentinel_servers.url)
    try:
        assert is_sentinel(client) and not is_cluster(client)
        assert client.connection_pool.max_connections == 100
        await client.ping()
        master = redis_sentinel_servers.master()
        assert (await client.info("server"))["tcp_port"] == master.port
    finally:
        await client.aclose()  # the sentinels' clients too: an open one would warn
    assert not is_sentinel(create_redis("redis://127.0.0.1:6379/0"))


async def test_past_the_bound_a_command_waits_for_a_free_connection(
    redis_sentinel_url: str, key_prefix: str
) -> None:
    """As on ``redis://``: a burst queues for the pool instead of failing at once."""
    client = create_redis(redis_sentinel_url, RedisSettings(max_connections=2))
    try:
        replies = await asyncio.gather(*[
            client.blpop([f"{key_prefix}:nothing"], timeout=0.2) for _ in range(5)])
        assert replies == [None] * 5
        assert isinstance(client.connection_pool, BlockingConnectionPool)
    finally:
        await client.aclose()


async def test_appends_and_reads_through_the_sentinels(event_log: EventLog) -> None:
    first = await event_log.append(text("s", "one"))
    second = await event_log.append(text("s", "two"))
    assert [e.id for e in await event_log.read_all("s")] == [first.id, second.id]


async def test_an_append_waits_for_the_replica(
    redis: Redis, log_settings: EventLogSettings
) -> None:
    acked = EventLog(redis, log_settings.model_copy(update={"replica_acks": 1}))
    event = await acked.append(text("acked", "kept on two machines"))
    assert [e.id for e in await acked.read_all("acked")] == [event.id]


async def test_too_few_replicas_is_a_transient_log_error(
    redis: Redis, log_settings: EventLogSettings
) -> None:
    strict = EventLog(redis, log_settings.model_copy(
        update={"replica_acks": 2, "replica_ack_timeout_ms": 20, "outage_grace_s": 0}))
    [stamped] = strict.stamp([text("strict", "x")])
    with pytest.raises(EventLogError) as caught:
        await strict.append_batch([stamped])
    assert caught.value.code is ErrorCode.EVENT_LOG_UNAVAILABLE and caught.value.transient
    assert len(await strict.read_all("strict")) == 1  # on the master, once


async def test_a_blocking_read_goes_to_the_master_the_sentinels_name(
    redis: Redis, event_log: EventLog, redis_sentinel_servers: RedisSentinelServers
) -> None:
    reads = BlockingReads(redis)
    try:
        await event_log.append(text("blocking", "hello"))
        reply = await reads.xread({event_log.key("blocking"): "0-0"}, count=10, block_ms=100)
        assert len(reply[0][1]) == 1
        assert reads._node == ("127.0.0.1", redis_sentinel_servers.master().port)
        await reads.xread({event_log.key("blocking"): "0-0"}, count=10, block_ms=100)
        assert reads.opened == 1  # kept while healthy
    finally:
        await reads.aclose()


async def test_a_live_tail_follows_appends(event_log: EventLog) -> None:
    fanout = LogFanout(event_log, block_ms=200)
    try:
        tail = fanout.tail("live")
        await event_log.append(text("live", "before"))
        assert (await anext(tail)).data.text == "before"  # type: ignore[union-attr]
        await event_log.append(text("live", "after"))
        assert (await anext(tail)).data.text == "after"  # type: ignore[union-attr]
        await tail.aclose()  # type: ignore[attr-defined]
    finally:
        await fanout.aclose()
