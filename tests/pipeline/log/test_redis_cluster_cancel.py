"""Blocking reads cancelled at random points, on a Redis Cluster of this module's own.

A Gateway's live read is cancelled whenever its set of sessions changes. On redis-py's
shared cluster pool that went wrong in two ways, both reproduced here before the fixes:
a cancel that landed while the command was being written was lost (the read then blocked
its full time and returned as if nothing happened: 149 of 400 here; now
:class:`pipeline.log.redis_client.SafeConnection` raises it after the write), and, with
connections dropped under the client, reads died in redis-py with ``AttributeError:
'NoneType' object has no attribute 'writelines'`` (11 of 400; now a retried
ConnectionError, and the live reads have a connection of their own:
:mod:`pipeline.log._blocking`).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from pipeline.log import create_redis
from pipeline.log._blocking import BlockingReads
from voxline.redis_cluster import RedisClusterServers, start_redis_cluster

pytestmark = pytest.mark.redis

WORKERS = 10
ROUNDS = 30


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[RedisClusterServers]:
    """Ours alone: the test drops every client connection on it."""
    cluster = start_redis_cluster(primaries=3, replicas_per_primary=0)
    try:
        yield cluster
    finally:
        cluster.stop()


async def _stress(redis: Redis, seed: int, outcomes: Counter[str], shared: bool) -> None:
    rng = random.Random(seed)
    reads = BlockingReads(redis)
    for round_ in range(ROUNDS):
        stream = f"{{p{rng.randrange(16)}}}:live"
        read = (redis.xread({stream: "$"}, count=10, block=5000) if shared
                else reads.xread({stream: "$"}, count=10, block_ms=5000))
        task = asyncio.ensure_future(read)
        await asyncio.sleep(rng.random() * 0.01)
        task.cancel()
        try:
            await task
            outcomes["cancel lost: the read ran to its end"] += 1
        except asyncio.CancelledError:
            outcomes["cancelled"] += 1
        except RedisError:
            outcomes["redis error"] += 1  # a dropped connection: the caller retries
        except Exception as exc:  # what the test looks for
            outcomes[f"{type(exc).__name__}: {exc}"] += 1
        key, value = f"{{p{rng.randrange(16)}}}:k{seed}", f"{seed}-{round_}".encode()
        try:
            await redis.set(key, value)
            got = await redis.get(key)
            outcomes["ordinary ok" if got == value else f"wrong reply {got!r}"] += 1
        except RedisError:
            outcomes["ordinary redis error"] += 1
    await reads.aclose()


async def _run(url: str, drop_connections: bool, shared: bool = False) -> Counter[str]:
    redis = create_redis(url)
    outcomes: Counter[str] = Counter()
    stop = asyncio.Event()
    killers = [Redis(port=int(part.rsplit(":", 1)[1]))
               for part in url.removeprefix("redis+cluster://").strip("/").split(",")]

    async def drop() -> None:
        rng = random.Random(0)
        while not stop.is_set():
            await asyncio.sleep(0.05)
            await rng.choice(killers).execute_command(
                "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")

    dropper = asyncio.create_task(drop()) if drop_connections else None
    try:
        await asyncio.gather(*(_stress(redis, seed, outcomes, shared) for seed in range(WORKERS)))
    finally:
        stop.set()
        if dropper is not None:
            await dropper
        for killer in killers:
            await killer.aclose()
        await redis.aclose()
    return outcomes


def _assert_sound(outcomes: Counter[str]) -> None:
    """Every cancelled read ends cancelled; nothing fails but as a Redis error (a rare
    timeout on a loaded machine), and the ordinary commands answer what they asked."""
    assert set(outcomes) <= {"cancelled", "redis error", "ordinary ok",
                             "ordinary redis error"}, outcomes
    assert outcomes["cancelled"] >= 0.95 * WORKERS * ROUNDS, outcomes
    assert outcomes["ordinary ok"] >= 0.95 * WORKERS * ROUNDS, outcomes


async def test_cancelled_blocking_reads_end_cancelled_and_leave_the_client_sound(
    own_cluster: RedisClusterServers,
) -> None:
    _assert_sound(await _run(own_cluster.url, drop_connections=False))


async def test_a_cancel_is_not_lost_in_a_write_on_the_shared_client(
    own_cluster: RedisClusterServers,
) -> None:
    """Before :class:`pipeline.log.redis_client.SafeConnection`: 7 cancels in 60 lost."""
    _assert_sound(await _run(own_cluster.url, drop_connections=False, shared=True))


async def test_cancelled_reads_with_connections_dropped_fail_only_as_redis_errors(
    own_cluster: RedisClusterServers,
) -> None:
    outcomes = await _run(own_cluster.url, drop_connections=True)
    allowed = {"cancelled", "redis error", "ordinary ok", "ordinary redis error"}
    assert set(outcomes) <= allowed, outcomes
    assert outcomes["cancelled"] + outcomes["redis error"] == WORKERS * ROUNDS
