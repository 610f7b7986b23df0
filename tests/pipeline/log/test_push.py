"""Appends pushed to the live readers that follow their sessions (pipeline.log._push),
against a real Redis server and a real Redis Cluster."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from pipeline.log import EventLog, LogFanout, is_cluster
from pipeline.log._push import Subscription
from schemas import EventLogSettings
from tests.support.event_samples import typed_text as text
from tests.support.log_tails import follow, take, texts, until_subscribed

pytestmark = pytest.mark.redis

@pytest.fixture
def redis_url(both_redis_urls: str) -> str:
    return both_redis_urls


@pytest.fixture
async def readers(event_log: EventLog) -> AsyncIterator[list[LogFanout]]:
    """Two live readers of one log, as two Gateways each hold their own sockets (each its
    own EventLog: the test's ``event_log`` appends as a third process)."""
    made = [LogFanout(EventLog(event_log.redis, event_log.settings), block_ms=200)
            for _ in range(2)]
    try:
        yield made
    finally:
        for fanout in made:
            await fanout.aclose()


async def test_each_reader_is_pushed_its_own_sessions_only(
    event_log: EventLog, readers: list[LogFanout],
) -> None:
    """Two readers, a session each: every append reaches the reader that follows its
    session as one push, and the other reader hears nothing of it (a blocking read of the
    changes stream would be woken by both sessions' appends)."""
    first, second = readers
    tails = [first.tail("mine"), second.tail("theirs")]
    pending = [asyncio.ensure_future(take(tail, 30)) for tail in tails]
    await until_subscribed(first, 1)
    await until_subscribed(second, 1)
    for i in range(30):
        await event_log.append(text("mine", f"m{i}"))
        await event_log.append(text("theirs", f"t{i}"))
    mine, theirs = [texts(events) for events in await asyncio.gather(*pending)]
    assert mine == [f"m{i}" for i in range(30)]
    assert theirs == [f"t{i}" for i in range(30)]
    # each reader was pushed its own session's 30 appends, never the other's: at most
    # its own (one may have been read by a sweep first), and none of the other 30
    assert 0 < first.pushes <= 30 and 0 < second.pushes <= 30


async def test_an_append_that_was_not_pushed_is_still_heard(
    redis: Redis, log_settings: EventLogSettings, readers: list[LogFanout],
) -> None:
    """A writer with live_read "changes" (or of an older version) publishes nothing: the pushed
    read's sweep of the changes stream brings its appends anyway, in order."""
    quiet = EventLog(redis, log_settings.model_copy(update={"live_read": "changes"}))
    fanout = readers[0]
    _, pending = await follow(fanout, "unpushed", 5)
    for i in range(5):
        await quiet.append(text("unpushed", str(i)))
    assert texts(await pending) == ["0", "1", "2", "3", "4"]
    assert fanout.pushes == 0


async def kill_subscriptions(redis: Redis, fanout: LogFanout) -> None:
    """Drop the fanout's subscribed connection, as a failover or a restart would: that one
    connection, by its address (the test Redis is shared with the Serve app of the tests
    that ran before, whose subscriptions are not this test's to drop)."""
    [read] = fanout._reads.values()
    assert read.subscription is not None and read.subscription.node is not None
    connection = read.subscription._connection
    assert connection is not None and connection._writer is not None
    host, port = connection._writer.get_extra_info("sockname")[:2]
    kill = ("CLIENT", "KILL", "ADDR", f"{host}:{port}")
    if is_cluster(redis):
        node = redis.get_node(*read.subscription.node)  # type: ignore[attr-defined]
        killed = await redis.execute_command(*kill, target_nodes=node)  # type: ignore[call-arg]
    else:
        killed = await redis.execute_command(*kill)
    assert killed == 1


@pytest.mark.parametrize("live_read", ["push", "push_only"])
async def test_a_lost_subscription_starts_the_read_over_and_loses_nothing(
    redis: Redis, log_settings: EventLogSettings, live_read: str,
) -> None:
    """Redis drops the subscribed connection (a failover, a restart, a killed client):
    the read subscribes again and reads from its cursors; nothing is lost or repeated,
    with the changes stream (``push``) or without it (``push_only``)."""
    settings = log_settings.model_copy(update={"live_read": live_read})
    fanout = LogFanout(EventLog(redis, settings), block_ms=200)
    writer = EventLog(redis, settings)  # another process's appends: none handed out here
    try:
        tail, pending = await follow(fanout, "dropped", 20)
        for i in range(10):
            await writer.append(text("dropped", str(i)))
        await kill_subscriptions(redis, fanout)
        for i in range(10, 20):
            await writer.append(text("dropped", str(i)))
        assert texts(await pending) == [str(i) for i in range(20)]
        # and it is pushed to again: subscribed anew, not left to the sweeps
        [read] = fanout._reads.values()
        pushes = fanout.pushes
        later = asyncio.ensure_future(take(tail, 1))
        for _ in range(2000):
            if read.subscribed and read.subscription and read.subscription.error is None:
                break
            await asyncio.sleep(0.005)
        await writer.append(text("dropped", "20"))
        assert texts(await later) == ["20"]
        assert fanout.pushes > pushes
        changes = await redis.exists(writer.keys.changes_of("dropped"))
        assert changes == (live_read == "push")  # push_only writes no changes stream
    finally:
        await fanout.aclose()


async def test_an_overflowing_inbox_reads_every_stream_instead(
    event_log: EventLog, readers: list[LogFanout], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """More pushes held than the inbox's bound: they are dropped, and the read reads its
    streams from their cursors instead (the log has every event)."""
    monkeypatch.setattr("pipeline.log._push.INBOX_LIMIT", 3)
    fanout = readers[0]
    _, pending = await follow(fanout, "burst", 40)
    # written by another log, so that none is handed out in process as it is appended
    other = EventLog(event_log.redis, event_log.settings)
    await asyncio.gather(*(other.append(text("burst", str(i))) for i in range(40)))
    assert texts(await pending) == [str(i) for i in range(40)]


def test_a_subscription_that_redis_ends_fails_the_read() -> None:
    """A shard channel's slot moving away ends its subscriptions with a sunsubscribe the
    reader did not ask for: the read must start over, where the slot is now. One it asked
    for is only a confirmation."""
    subscription = Subscription(Redis(), asyncio.Event())
    subscription._leaving[b"asked"] += 1
    subscription._take([b"sunsubscribe", b"asked", 0])
    assert subscription.error is None
    subscription._take([b"sunsubscribe", b"moved", 0])
    assert isinstance(subscription.error, RedisConnectionError)
    assert subscription.changed.is_set()


def test_an_error_reply_fails_the_read() -> None:
    """A subscription Redis refuses (its reply an error, read by our protocol as the
    exception redis-py would raise) ends the subscription: the read starts over."""
    subscription = Subscription(Redis(), asyncio.Event())
    subscription._take(ResponseError("CROSSSLOT Keys in request don't hash to the same slot"))
    assert isinstance(subscription.error, ResponseError)
    assert subscription.changed.is_set()


async def test_a_closed_subscription_opens_anew_and_is_pushed_to(
    redis: Redis, log_settings: EventLogSettings,
) -> None:
    """After ``aclose`` (the read starting over) the next subscribe opens a connection and
    a protocol of its own, not the closed one's, whose close does not fail it."""
    log = EventLog(redis, log_settings)
    key = log.key("reopened")
    subscription = Subscription(redis, asyncio.Event())
    try:
        await subscription.subscribe([key], key)
        await subscription.aclose()
        await subscription.subscribe([key], key)
        assert subscription.error is None
        await log.append(text("reopened", "heard"))
        for _ in range(400):
            if subscription.inbox:
                break
            await asyncio.sleep(0.005)
        assert subscription.inbox and subscription.error is None
    finally:
        await subscription.aclose()


def test_pushes_past_the_inbox_bound_are_dropped_and_flagged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The inbox is bounded: past its bound it is emptied and the read told to read every
    stream (what the pushes said is in the log)."""
    import msgpack

    monkeypatch.setattr("pipeline.log._push.INBOX_LIMIT", 3)
    subscription = Subscription(Redis(), asyncio.Event())
    for i in range(5):
        payload = msgpack.packb([b"k", b"stream", b"i", f"{i}-0".encode()])
        subscription._take([b"smessage", b"stream", payload])
    assert subscription.overflowed
    assert len(subscription.inbox) <= 3
    assert subscription.inbox[-1] == [b"k", b"stream", b"i", b"4-0"]


async def test_a_sweep_too_far_behind_reads_every_stream_and_loses_nothing(
    redis: Redis, log_settings: EventLogSettings, readers: list[LogFanout],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """More unpushed appends between two sweeps than the changes stream surely keeps: the
    sweep jumps to the newest entry and reads every stream from its cursor instead."""
    monkeypatch.setattr("pipeline.log._live_read.CHANGES_MAXLEN", 4)
    monkeypatch.setattr("pipeline.log._live_read._CHANGES_PAGE", 2)
    quiet = EventLog(redis, log_settings.model_copy(update={"live_read": "changes"}))
    fanout = readers[0]
    _, pending = await follow(fanout, "behind", 12)
    await asyncio.gather(*(quiet.append(text("behind", str(i))) for i in range(12)))
    assert texts(await pending) == [str(i) for i in range(12)]


async def test_a_burst_of_tails_starting_at_once_is_subscribed_and_pushed_to(
    event_log: EventLog, readers: list[LogFanout],
) -> None:
    """Sockets resuming together (a Gateway's restart, a failover): hundreds of tails join
    in one turn of the loop, are subscribed together, and each hears its own appends."""
    fanout = readers[0]
    sessions = [f"burst-{i}" for i in range(300)]
    pending = [asyncio.ensure_future(take(fanout.tail(s), 1)) for s in sessions]
    await until_subscribed(fanout, len(sessions))
    other = EventLog(event_log.redis, event_log.settings)  # none handed out in process
    await asyncio.gather(*(other.append(text(s, s)) for s in sessions))
    assert [texts(events) for events in await asyncio.gather(*pending)] == [
        [s] for s in sessions]
    assert fanout.pushes == len(sessions)  # each pushed (a sweep may have handed it out first)


async def test_sealed_events_are_pushed_and_open_for_the_reader(
    redis: Redis, log_settings: EventLogSettings,
) -> None:
    """Encryption at rest: a push carries the sealed fields as stored (binary, through
    msgpack whole), and the reader opens them with the session's data key."""
    master = SecretStr(base64.b64encode(os.urandom(32)).decode())
    settings = log_settings.model_copy(update={"encrypt": True, "master_key": master})
    fanout = LogFanout(EventLog(redis, settings), block_ms=200)
    writer = EventLog(redis, settings)  # another process's appends: none handed out here
    try:
        _, pending = await follow(fanout, "sealed", 5)
        for i in range(5):
            await writer.append(text("sealed", f"secret {i}"))
        assert texts(await pending) == [f"secret {i}" for i in range(5)]
        assert fanout.pushes == 5
        # handed out from the pushes themselves: no read of the stream for each
        assert fanout.keys_read <= 2, fanout.keys_read
        stored = await redis.xrange(writer.key("sealed"))
        assert all(b"secret" not in b"".join(fields.values()) for _, fields in stored)
    finally:
        await fanout.aclose()
