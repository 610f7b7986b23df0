"""Consumer groups: at-least-once delivery, takeover of stuck entries, dead letters."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from pipeline.log import Delivery, GroupReader, run_worker
from schemas import EventLogSettings


@pytest.fixture
def redis_url(both_redis_urls: str) -> str:
    """The event-log contract holds on a standalone Redis and on a Redis Cluster."""
    return both_redis_urls

pytestmark = pytest.mark.redis


def reader(redis: Redis, stream: str, consumer: str, **settings: int) -> GroupReader:
    return GroupReader(
        redis,
        stream,
        "workers",
        consumer,
        EventLogSettings(
            claim_idle_ms=settings.get("idle", 50), max_deliveries=settings.get("max", 3)
        ),
    )


async def test_consumer_dying_before_ack_is_taken_over_once(redis: Redis, key_prefix: str) -> None:
    stream = f"{key_prefix}:jobs"
    first, second = reader(redis, stream, "a"), reader(redis, stream, "b")
    await first.ensure_group()
    await second.ensure_group()  # idempotent
    for i in range(3):
        await redis.xadd(stream, {"job": str(i)})

    got = await first.read(block_ms=100)
    assert [d.fields[b"job"] for d in got] == [b"0", b"1", b"2"]
    await first.ack(got[0])  # then "a" dies holding jobs 1 and 2

    assert await second.read(block_ms=10) == []  # nothing new, nothing idle yet
    await asyncio.sleep(0.1)
    handled: list[bytes] = []

    async def handle(delivery: Delivery) -> None:
        handled.append(delivery.fields[b"job"])

    worker = asyncio.create_task(run_worker(second, handle, block_ms=20))
    for _ in range(100):
        if len(handled) >= 2:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.15)  # a second claim round finds nothing left to redo
    worker.cancel()
    await asyncio.gather(worker, return_exceptions=True)
    assert handled == [b"1", b"2"]
    pending = await redis.xpending(stream, "workers")
    assert pending["pending"] == 0


async def test_a_busy_reader_looks_for_stuck_entries_once_not_before_every_read(
    redis: Redis, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing is claimable before it has been idle claim_idle_ms: a worker reading the
    events of a turn one by one makes one round trip a read, not an XAUTOCLAIM too."""
    stream = f"{key_prefix}:busy-reads"
    group = reader(redis, stream, "w", idle=30_000)
    await group.ensure_group()
    looks = 0
    xautoclaim = redis.xautoclaim

    async def counted(*args: object, **kwargs: object) -> object:
        nonlocal looks
        looks += 1
        return await xautoclaim(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(redis, "xautoclaim", counted)
    for i in range(20):
        await redis.xadd(stream, {"job": str(i)})
        [delivery] = await group.read(block_ms=100)
        assert delivery.fields[b"job"] == str(i).encode()
        await group.ack(delivery)
    assert looks == 1


async def test_poison_entry_is_dead_lettered(redis: Redis, key_prefix: str) -> None:
    stream = f"{key_prefix}:poison"
    group = reader(redis, stream, "w", idle=1, max=2)
    await group.ensure_group()
    await redis.xadd(stream, {"job": "bad"})
    attempts: list[int] = []

    async def always_fails(delivery: Delivery) -> None:
        attempts.append(delivery.deliveries)
        raise RuntimeError("cannot handle this one")

    worker = asyncio.create_task(run_worker(group, always_fails, block_ms=5))
    for _ in range(200):
        if await redis.xlen(group.dead_letter_stream):
            break
        await asyncio.sleep(0.01)
    worker.cancel()
    await asyncio.gather(worker, return_exceptions=True)
    assert attempts == [1, 2]
    [(_, dead)] = await redis.xrange(group.dead_letter_stream)
    assert dead[b"job"] == b"bad" and dead[b"dl_deliveries"] == b"3"
    assert dead[b"dl_group"] == b"workers"
    assert (await redis.xpending(stream, "workers"))["pending"] == 0


async def test_trimmed_pending_entries_are_acked_away(redis: Redis, key_prefix: str) -> None:
    stream = f"{key_prefix}:trimmed"
    group = reader(redis, stream, "w", idle=1)
    await group.ensure_group()
    await redis.xadd(stream, {"job": "gone"})
    assert len(await group.read(block_ms=10)) == 1  # delivered, never acked
    await redis.xtrim(stream, maxlen=0)
    await asyncio.sleep(0.01)
    assert await group.claim_stuck() == []
    assert (await redis.xpending(stream, "workers"))["pending"] == 0


async def test_retry_later_leaves_the_entry_pending_without_a_traceback(
    redis: Redis, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    class Busy(Exception):
        pass

    stream = f"{key_prefix}:busy"
    group = reader(redis, stream, "w", idle=60_000)
    await group.ensure_group()
    await redis.xadd(stream, {"job": "held elsewhere"})
    seen = asyncio.Event()

    async def busy(delivery: Delivery) -> None:
        seen.set()
        raise Busy("another worker holds it")

    caplog.set_level("INFO", logger="pipeline.log.consumer")
    worker = asyncio.create_task(run_worker(group, busy, block_ms=5, retry_later=(Busy,)))
    await asyncio.wait_for(seen.wait(), 10)
    worker.cancel()
    await asyncio.gather(worker, return_exceptions=True)
    assert (await redis.xpending(stream, "workers"))["pending"] == 1
    records = [r for r in caplog.records if "left pending" in r.getMessage()]
    assert records and all(r.levelname == "INFO" and r.exc_info is None for r in records)
