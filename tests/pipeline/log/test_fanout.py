"""One live reader for many tails (pipeline.log.LogFanout) against a real Redis server."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from pipeline.log import EventLog, LogFanout, is_cluster
from pipeline.log._blocking import BlockingReads
from pipeline.log._codec import encode_fields
from pipeline.log.keys import CHANGES_INLINE_BYTES
from schemas import (
    ErrorCode,
    Event,
    EventLogSettings,
    OverloadedError,
    ResyncRequiredError,
)
from tests.support.event_samples import typed_text as text
from tests.support.log_tails import take, texts, until_live


@pytest.fixture
def redis_url(both_redis_urls: str) -> str:
    """The event-log contract holds on a standalone Redis and on a Redis Cluster."""
    return both_redis_urls

pytestmark = pytest.mark.redis

HANG_GUARD_S = 20  # a hang guard, not a timing assertion



async def test_replays_then_follows_live_in_order(event_log: EventLog, fanout: LogFanout) -> None:
    first = await event_log.append(text("s", "old"))
    tail = fanout.tail("s")
    assert texts(await take(tail, 1)) == ["old"]
    pending = asyncio.ensure_future(take(tail, 3))
    await until_live(fanout, 1)
    for value in ("a", "b", "c"):
        await event_log.append(text("s", value))
    assert texts(await pending) == ["a", "b", "c"]
    await tail.aclose()  # type: ignore[attr-defined]
    assert fanout.subscribers == 0
    later = fanout.tail("s", after=first.id)
    assert texts(await take(later, 3)) == ["a", "b", "c"]
    await later.aclose()  # type: ignore[attr-defined]


async def test_many_subscribers_share_one_connection(
    redis: Redis, event_log: EventLog, fanout: LogFanout
) -> None:
    sessions = [f"m{i}" for i in range(200)]
    for session in sessions:
        await event_log.append(text(session, "0"))
    tails = [fanout.tail(session) for session in sessions]
    for tail in tails:
        assert texts(await take(tail, 1)) == ["0"]
    readers = [asyncio.ensure_future(take(tail, 3)) for tail in tails]
    await until_live(fanout, len(sessions))
    # one live read (standalone), one per partition with subscribers (cluster), and the
    # appends' own connection per server (pipeline.log._direct)
    direct = event_log.appends.direct
    bound = 2 + (event_log.settings.partitions if event_log.keys.cluster else 0) + (
        len(direct.channels()) if direct is not None else 0)
    in_use = connections_in_use(redis)
    assert in_use <= bound, f"{in_use} connections held by {len(sessions)} idle tails"
    for i in range(1, 4):
        for session in sessions:
            await event_log.append(text(session, str(i)))
    for session, reader in zip(sessions, readers, strict=True):
        seen = await reader
        assert texts(seen) == ["1", "2", "3"], session
        assert {e.session_id for e in seen} == {session}
    for tail in tails:
        await tail.aclose()  # type: ignore[attr-defined]
    assert fanout.streams == 0


async def test_exactly_once_across_catch_up_and_live_under_concurrent_appends(
    event_log: EventLog, fanout: LogFanout
) -> None:
    """Writers append while tails start at random points: every tail sees every event
    after its cursor once, in order, whether it came from catch-up or the live read."""
    rng = random.Random(11)
    total = 120

    async def write() -> None:
        for i in range(total):
            await event_log.append(text("x", str(i)))
            if rng.random() < 0.3:
                await asyncio.sleep(0.002)

    async def read(delay: float) -> tuple[str | None, list[str]]:
        await asyncio.sleep(delay)
        stored = await event_log.read_all("x")
        after = stored[rng.randrange(len(stored))].id if stored and rng.random() < 0.7 else None
        start = 0 if after is None else [e.id for e in stored].index(after) + 1
        tail = fanout.tail("x", after=after)
        seen = await take(tail, total - start)
        await tail.aclose()  # type: ignore[attr-defined]
        return after, texts(seen)

    writer = asyncio.ensure_future(write())
    results = await asyncio.gather(*(read(rng.random() * 0.3) for _ in range(25)))
    await writer
    stored = await event_log.read_all("x")
    ids = [e.id for e in stored]
    for after, seen in results:
        start = 0 if after is None else ids.index(after) + 1
        assert seen == [str(i) for i in range(start, total)]


async def test_subscribe_unsubscribe_churn_leaves_nothing_behind(
    event_log: EventLog, fanout: LogFanout
) -> None:
    rng = random.Random(3)
    steady = fanout.tail("steady")
    steady_reader = asyncio.ensure_future(take(steady, 40))
    for i in range(40):
        session = f"churn{rng.randrange(8)}"
        stored = await event_log.read_all(session)
        tail = fanout.tail(session, after=stored[-1].id if stored else None)
        reader = asyncio.ensure_future(anext(tail))
        await until_live(fanout, 2)
        await event_log.append(text(session, str(i)))
        await event_log.append(text("steady", str(i)))
        if rng.random() < 0.5:
            event = await asyncio.wait_for(reader, HANG_GUARD_S)
            assert event.session_id == session
        else:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        await tail.aclose()  # type: ignore[attr-defined]
    assert texts(await steady_reader) == [str(i) for i in range(40)]
    await steady.aclose()  # type: ignore[attr-defined]
    assert fanout.subscribers == 0 and fanout.streams == 0


async def test_a_slow_subscriber_is_dropped_not_buffered(
    redis: Redis, log_settings: EventLogSettings
) -> None:
    log = EventLog(redis, log_settings.model_copy(update={"tail_queue": 5}))
    fanout = LogFanout(log, block_ms=200)
    try:
        slow, fast = fanout.tail("slow"), fanout.tail("slow")
        slow_first = asyncio.ensure_future(anext(slow))
        fast_first = asyncio.ensure_future(anext(fast))
        await until_live(fanout, 2)
        await log.append(text("slow", "0"))
        first = await asyncio.wait_for(slow_first, HANG_GUARD_S)
        seen = [await asyncio.wait_for(fast_first, HANG_GUARD_S)]
        for i in range(1, 20):  # slow stops reading; fast keeps up
            await log.append(text("slow", str(i)))
            seen += await take(fast, 1)
        assert texts(seen) == [str(i) for i in range(20)]
        with pytest.raises(OverloadedError) as info:
            await asyncio.wait_for(take(slow, 20), HANG_GUARD_S)
        assert info.value.code is ErrorCode.OVERLOADED and info.value.transient
        assert info.value.details["last_event_id"] == first.id
        # resuming from the last id it was given loses nothing
        again = fanout.tail("slow", after=first.id)
        assert texts(await take(again, 19)) == [str(i) for i in range(1, 20)]
        await again.aclose()  # type: ignore[attr-defined]
        await fast.aclose()  # type: ignore[attr-defined]
        assert fanout.subscribers == 0
    finally:
        await fanout.aclose()


async def test_a_burst_bigger_than_the_buffer_does_not_drop_a_reader_that_keeps_up(
    redis: Redis, log_settings: EventLogSettings
) -> None:
    log = EventLog(redis, log_settings.model_copy(update={"tail_queue": 5}))
    fanout = LogFanout(log, block_ms=200)
    try:
        tail = fanout.tail("burst")
        reader = asyncio.ensure_future(take(tail, 40))
        await until_live(fanout, 1)
        await log.append_batch([text("burst", str(i)) for i in range(40)])
        assert texts(await reader) == [str(i) for i in range(40)]
        await tail.aclose()  # type: ignore[attr-defined]
    finally:
        await fanout.aclose()


async def test_trim_overtaking_a_live_subscriber_requires_resync(
    redis: Redis, log_settings: EventLogSettings
) -> None:
    log = EventLog(redis, log_settings.model_copy(update={"maxlen": 2, "approximate_trim": False}))
    fanout = LogFanout(log, block_ms=200)
    try:
        await log.append(text("trim", "0"))
        tail = fanout.tail("trim")
        assert texts(await take(tail, 1)) == ["0"]
        # the live read is not running for this tail until it asks again; five appends
        # land at once and only the last two are kept
        await log.append_batch([text("trim", str(i)) for i in range(1, 6)])
        with pytest.raises(ResyncRequiredError):
            await take(tail, 1)
        # a cursor behind the horizon is refused at catch-up
        with pytest.raises(ResyncRequiredError):
            await take(fanout.tail("trim", after="1-0"), 1)
    finally:
        await fanout.aclose()


async def test_resync_when_numbers_jump_on_the_live_path(
    redis: Redis, log_settings: EventLogSettings
) -> None:
    settings = log_settings.model_copy(update={"maxlen": 2, "approximate_trim": False})
    log = EventLog(redis, settings)
    fanout = LogFanout(log, block_ms=200)
    try:
        await log.append(text("jump", "0"))
        tail = fanout.tail("jump")
        assert texts(await take(tail, 1)) == ["0"]
        reader = asyncio.ensure_future(take(tail, 5))
        await until_live(fanout, 1)
        # one atomic batch of five from another process: the live read sees entries 5
        # and 6 after 1 (this process's own appends are handed out whole, see below)
        await EventLog(redis, settings).append_batch(
            [text("jump", str(i)) for i in range(1, 6)])
        with pytest.raises(ResyncRequiredError):
            await reader
    finally:
        await fanout.aclose()


async def test_closing_the_fanout_ends_open_tails(event_log: EventLog) -> None:
    fanout = LogFanout(event_log, block_ms=200)
    tail = fanout.tail("bye")
    reader = asyncio.ensure_future(anext(tail))
    await until_live(fanout, 1)
    await fanout.aclose()
    with pytest.raises(Exception) as info:
        await asyncio.wait_for(reader, HANG_GUARD_S)
    assert getattr(info.value, "transient", False)


async def test_cancelling_blocked_tails_always_ends_them(
    event_log: EventLog, fanout: LogFanout
) -> None:
    rng = random.Random(7)
    for _ in range(60):
        task = asyncio.ensure_future(anext(fanout.tail("idle")))
        await asyncio.sleep(rng.random() * 0.015)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=10)
        assert done, "a cancelled tail kept running"
    await asyncio.sleep(0)
    assert fanout.subscribers == 0


async def test_a_burst_past_the_pool_bound_waits_for_a_connection(
    redis_url: str, key_prefix: str
) -> None:
    """More commands at once than the pool holds queue for a free connection (they used
    to fail at once: "Too many connections" standalone, MaxConnectionsError on a
    cluster, where redis-py's node pools do not block)."""
    from pipeline.log import create_redis, is_cluster
    from schemas import RedisSettings

    redis = create_redis(redis_url, RedisSettings(max_connections=2))
    try:
        key = f"{key_prefix}:empty"
        replies = await asyncio.wait_for(asyncio.gather(*(
            redis.xread({key: "0-0"}, block=50) for _ in range(8))), HANG_GUARD_S)
        assert all(not r for r in replies)
        if is_cluster(redis):
            opened = [len(node._connections) for node in redis.get_nodes()]  # type: ignore[attr-defined]
            assert max(opened) <= 2, opened
        else:
            assert len(list(redis.connection_pool._get_in_use_connections())) == 0  # type: ignore[attr-defined]
    finally:
        await redis.aclose()


async def test_a_live_read_names_only_the_streams_that_changed(
    redis: Redis, event_log: EventLog, log_settings: EventLogSettings
) -> None:
    """One append among many followed sessions makes one read of one stream: the read
    learns what changed from the changes stream, not by naming every stream it follows;
    a small one (a text delta) none at all: its changes entry carries it whole.
    (Appended by another process: this one's own appends need no read at all.)"""
    other = EventLog(redis, log_settings)
    fanout = LogFanout(event_log, block_ms=60_000)  # no quiet read of everything meanwhile
    sessions = [f"c{i}" for i in range(40)]
    tails = [fanout.tail(session) for session in sessions]
    try:
        firsts = [asyncio.ensure_future(take(tail, 1)) for tail in tails]
        await until_live(fanout, len(sessions))
        for session in sessions:
            await other.append(text(session, "0"))
        for first in firsts:
            assert texts(await first) == ["0"]
        before = fanout.keys_read
        await other.append(text("c7", "1"))
        assert texts(await take(tails[7], 1)) == ["1"]
        assert fanout.keys_read - before == 0  # carried by its changes entry
        large = "x" * (CHANGES_INLINE_BYTES + 1)
        await other.append(text("c7", large))
        assert texts(await take(tails[7], 1)) == [large]
        assert fanout.keys_read - before == 1  # too large to carry: its stream is read
    finally:
        for tail in tails:
            await tail.aclose()  # type: ignore[attr-defined]
        await fanout.aclose()


async def test_this_process_appends_reach_its_tails_without_a_read(
    redis: Redis, event_log: EventLog, log_settings: EventLogSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What this process appended is handed to its tails as the append returns; what
    another process appended waits for the live read (held back here), then follows in
    order with nothing twice."""
    async with one_live_tail(event_log, "own") as (tail, first):
        await event_log.append(text("own", "0"))
        assert texts(await first) == ["0"]

        gate, entered = asyncio.Event(), asyncio.Event()
        real = BlockingReads.xread

        async def held(self: BlockingReads, *args: Any, **kwargs: Any) -> Any:
            entered.set()
            await gate.wait()
            return await real(self, *args, **kwargs)

        monkeypatch.setattr(BlockingReads, "xread", held)
        # the read in flight (if any) is over once the next one is held (one at a time)
        await asyncio.wait_for(entered.wait(), HANG_GUARD_S)
        await EventLog(redis, log_settings).append(text("own", "theirs"))
        await event_log.append(text("own", "mine"))  # follows "theirs": left to the read
        reader = asyncio.ensure_future(take(tail, 2))
        await asyncio.sleep(0.1)
        assert not reader.done(), "another process's event came without the read"
        gate.set()
        assert texts(await reader) == ["theirs", "mine"]
        await event_log.append(text("own", "next"))  # the read is not held: both ways
        assert texts(await take(tail, 1)) == ["next"]
        gate.clear()
        await asyncio.sleep(0.3)
        await event_log.append_batch([text("own", "a"), text("own", "b")])
        assert texts(await take(tail, 2)) == ["a", "b"]  # while the read is held
        gate.set()


async def test_a_writer_that_names_no_change_is_read_after_a_quiet_block(
    redis: Redis, event_log: EventLog
) -> None:
    """An append that left no changes entry (a writer of an older version, during a
    rolling upgrade) still reaches the tails: a read that waited ``block_ms`` in vain
    reads every stream once."""
    async with one_live_tail(event_log, "old-writer") as (_, first):
        event = text("old-writer", "unannounced").model_copy(update={"id": "1-1"})
        fields = encode_fields(event)
        entry = dict(zip(fields[::2], fields[1::2], strict=True))
        await redis.xadd(event_log.key("old-writer"), {**entry, b"n": b"1"}, id="1-1")
        assert texts(await first) == ["unannounced"]


@contextlib.asynccontextmanager
async def one_live_tail(
    event_log: EventLog, session: str
) -> AsyncIterator[tuple[AsyncIterator[Event], asyncio.Future[list[Event]]]]:
    """A fanout (``block_ms`` 200) with one tail of ``session`` live, and the future of
    that tail's first event."""
    fanout = LogFanout(event_log, block_ms=200)
    tail = fanout.tail(session)
    try:
        first = asyncio.ensure_future(take(tail, 1))
        await until_live(fanout, 1)
        yield tail, first
    finally:
        await tail.aclose()  # type: ignore[attr-defined]
        await fanout.aclose()


def connections_in_use(redis: Redis) -> int:
    """Connections taken from the pool (every node's, on a cluster)."""
    if is_cluster(redis):
        nodes = redis.get_nodes()  # type: ignore[attr-defined]
        return sum(len(node._connections) - len(node._free) for node in nodes)
    return len(list(redis.connection_pool._get_in_use_connections()))  # type: ignore[attr-defined]
