"""Riding out an outage: Redis stops answering for a while (a failover, a restart).

A redis_proxy in front of the standalone test Redis is cut (connections dropped, connects
refused) and restored. Within ``outage_grace_s`` an append waits and lands once, and a
live tail goes on without an error; past the grace both end with a transient
``event_log_unavailable``. The cluster's own failover is tried in
``test_redis_cluster_failover``.
"""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from pipeline.log import Delivery, EventLog, GroupReader, LogFanout, create_redis, run_worker
from pipeline.log._outage import SessionOutages
from schemas import EventLogError, EventLogSettings, RedisSettings
from tests.support.event_samples import typed_text as text
from tests.support.outages import DEAD_SOCKETS
from tests.support.redis_proxy import RedisProxy

pytestmark = [pytest.mark.redis, *DEAD_SOCKETS]

OUTAGE_S = 0.6



def proxied_redis(redis_proxy: RedisProxy) -> Redis:
    # redis-py's own retries are kept short: what is tried here is the grace on top
    return create_redis(redis_proxy.url, RedisSettings(retries=1, backoff_base_s=0.01,
                                                       socket_timeout_s=1.0))


def proxied_log(redis_proxy: RedisProxy, key_prefix: str, grace_s: float) -> EventLog:
    return EventLog(proxied_redis(redis_proxy),
                    EventLogSettings(key_prefix=key_prefix, outage_grace_s=grace_s))


async def test_an_append_waits_out_an_outage_within_the_grace(
        redis_proxy: RedisProxy, key_prefix: str, event_log: EventLog) -> None:
    log = proxied_log(redis_proxy, key_prefix, grace_s=30)
    try:
        await log.append(text("s", "before"))
        await redis_proxy.cut()
        append = asyncio.create_task(log.append(text("s", "during")))
        await asyncio.sleep(OUTAGE_S)
        assert not append.done()  # waiting, not failed
        await redis_proxy.restore()
        during = await append
    finally:
        await log.redis.aclose()
    stored = await event_log.read_all("s")
    assert [e.data.text for e in stored] == ["before", "during"]  # type: ignore[union-attr]
    assert stored[-1].id == during.id


async def test_an_outage_past_the_grace_is_a_transient_log_error(
        redis_proxy: RedisProxy, key_prefix: str) -> None:
    log = proxied_log(redis_proxy, key_prefix, grace_s=0.2)
    try:
        await redis_proxy.cut()
        with pytest.raises(EventLogError) as info:
            await log.append(text("s", "lost"))
    finally:
        await log.redis.aclose()
    assert info.value.transient and info.value.code.value == "event_log_unavailable"


async def test_a_live_tail_rides_out_an_outage_without_an_error(
        redis_proxy: RedisProxy, key_prefix: str, event_log: EventLog) -> None:
    log = proxied_log(redis_proxy, key_prefix, grace_s=30)
    fanout = LogFanout(log, block_ms=200)
    seen: list[str] = []
    live = asyncio.Event()

    async def follow() -> None:
        async for event in fanout.tail("s"):
            seen.append(event.data.text)  # type: ignore[union-attr]
            live.set()
            if len(seen) == 3:
                return

    try:
        await event_log.append(text("s", "one"))
        reader = asyncio.create_task(follow())
        await live.wait()
        await redis_proxy.cut()
        await event_log.append(text("s", "two"))  # straight to Redis, during the outage
        await asyncio.sleep(OUTAGE_S)
        await redis_proxy.restore()
        await event_log.append(text("s", "three"))
        await asyncio.wait_for(reader, 30)  # an error would have ended it early
    finally:
        await fanout.aclose()
        await log.redis.aclose()
    assert seen == ["one", "two", "three"]


async def test_a_live_tail_ends_with_a_log_error_past_the_grace(
        redis_proxy: RedisProxy, key_prefix: str, event_log: EventLog) -> None:
    log = proxied_log(redis_proxy, key_prefix, grace_s=0.3)
    fanout = LogFanout(log, block_ms=200)
    await event_log.append(text("s", "one"))
    tail = fanout.tail("s")
    try:
        assert (await anext(tail)).data.text == "one"  # type: ignore[union-attr]
        await redis_proxy.cut()
        with pytest.raises(EventLogError) as info:
            await asyncio.wait_for(anext(tail), 30)
    finally:
        await tail.aclose()
        await fanout.aclose()
        await log.redis.aclose()
    assert info.value.transient


async def test_a_connection_set_up_as_the_proxy_is_cut_is_cut_too(
        redis_proxy: RedisProxy) -> None:
    """The outage the tests above stage is whole: a connection the proxy accepted but had
    not yet joined to Redis when it was cut (its loop was busy) does not live through it,
    or a reader on it would never see the outage."""
    client = create_redis(redis_proxy.url, RedisSettings(retries=0, socket_timeout_s=1.0))
    try:
        ping = asyncio.ensure_future(client.ping())
        for _ in range(5):  # accepted by the proxy, not yet joined upstream
            await asyncio.sleep(0)
        await redis_proxy.cut()
        with pytest.raises(RedisConnectionError):
            await ping
            await client.ping()
    finally:
        await client.aclose()


def test_the_grace_counts_from_a_sessions_first_failure_not_from_each_append() -> None:
    outages = SessionOutages(grace_s=10)
    first = outages.of("a")
    assert first.failed()  # the outage begins: within the grace
    assert first.since is not None
    first.since -= 10  # as if the session's appends had failed for the whole grace
    assert outages.of("a") is first and not first.failed()  # the next append: at once
    assert outages.of("b").failed()  # another session (another shard, maybe): its own
    outages.ended("a")  # an append of the session got through: the next outage is new
    assert outages.of("a") is not first and outages.of("a").failed()


def _proxied_reader(redis_proxy: RedisProxy, stream: str) -> GroupReader:
    return GroupReader(proxied_redis(redis_proxy), stream, "workers", "w")


async def test_a_worker_rides_out_an_outage_within_the_grace(
        redis_proxy: RedisProxy, key_prefix: str, redis: Redis) -> None:
    """A background worker (narration, metrics) reads on once Redis answers again, and
    handles what was appended meanwhile: before, it failed at once and waited for Serve
    to restart its replica."""
    stream = f"{key_prefix}:jobs"
    group = _proxied_reader(redis_proxy, stream)
    handled: list[bytes] = []
    got = asyncio.Event()

    async def handle(delivery: Delivery) -> None:
        handled.append(delivery.fields[b"job"])
        got.set()

    worker = asyncio.create_task(run_worker(group, handle, block_ms=50, outage_grace_s=30))
    try:
        await redis.xadd(stream, {"job": "before"})
        await asyncio.wait_for(got.wait(), 30)
        got.clear()
        await _acknowledged(redis, stream)  # else the cut would leave it pending
        await redis_proxy.cut()
        await redis.xadd(stream, {"job": "during"})  # straight to Redis, during the outage
        await asyncio.sleep(OUTAGE_S)
        assert not worker.done()  # reading again, not failed
        await redis_proxy.restore()
        await asyncio.wait_for(got.wait(), 30)
        assert not worker.done()
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        await group.redis.aclose()
    assert handled == [b"before", b"during"]
    await _acknowledged(redis, stream)  # "during" too


async def _acknowledged(redis: Redis, stream: str) -> None:
    """Return once the group has nothing pending (within ~10 s)."""
    for _ in range(1000):
        if not (await redis.xpending(stream, "workers"))["pending"]:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{stream}: never acknowledged")


async def test_a_worker_fails_with_a_log_error_past_the_grace(
        redis_proxy: RedisProxy, key_prefix: str) -> None:
    group = _proxied_reader(redis_proxy, f"{key_prefix}:jobs")

    async def handle(delivery: Delivery) -> None:
        raise AssertionError("nothing to handle")

    worker = asyncio.create_task(run_worker(group, handle, block_ms=50, outage_grace_s=0.3))
    try:
        await asyncio.sleep(0.2)  # the group is made, the worker reads
        assert not worker.done()
        await redis_proxy.cut()
        with pytest.raises(EventLogError):
            await asyncio.wait_for(worker, 30)
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        await group.redis.aclose()
