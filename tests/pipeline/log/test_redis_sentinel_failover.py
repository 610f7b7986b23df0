"""Failover trials behind Sentinel: the standalone primary is SIGKILLed mid-reply.

Each trial runs on a Sentinel setup of its own (a primary, its replica, 3 sentinels with
quorum 2 and a 1 s down-after), never the shared fixture: it kills the primary. The trial
itself is :mod:`tests.support.failover_trial`, shared with the Redis Cluster trial: a
writer retrying each stamped event with ``replica_acks=1`` until acknowledged, a reader
following through :class:`LogFanout`. Here the sentinels agree the primary is down and
promote the replica; the client's next connections (pool and dedicated blocking reads)
ask them for the new master; the dead server is started again as its replica, so
``WAIT 1`` can be met again.

``VOXLINE_FAILOVER_TRIALS`` sets the number of seeded trials (2 by default).
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from redis import Redis as SyncRedis

from pipeline.log import EventLog, LogFanout, create_redis
from schemas import Event, EventLogError, EventLogSettings, InputText
from tests.support.event_samples import typed_text as text
from tests.support.failover_trial import DEADLINE_S, run_checked_trial, trial_count
from tests.support.outages import DEAD_SOCKETS
from voxline.redis_sentinel import RedisSentinelServers, start_redis_sentinel
from voxline.redis_server import RedisServer

pytestmark = [pytest.mark.redis, *DEAD_SOCKETS]


class SentinelFailover:
    """Kills the master the sentinels name; they promote its replica."""

    def __init__(self, setup: RedisSentinelServers) -> None:
        self.setup = setup
        self.victim: RedisServer | None = None

    async def kill(self, log: EventLog, session: str) -> None:
        self.victim = self.setup.master()  # standalone: it holds every session
        self.setup.kill(self.victim)

    async def promoted(self) -> None:
        assert self.victim is not None
        await asyncio.to_thread(self.setup.wait_for_failover, self.victim, DEADLINE_S)

    async def restart(self) -> None:
        assert self.victim is not None
        await asyncio.to_thread(self.setup.restart, self.victim)


@pytest.mark.parametrize("seed", range(trial_count(2)))
async def test_a_killed_primary_loses_no_acknowledged_or_delivered_event(seed: int) -> None:
    await run_checked_trial(start_redis_sentinel, SentinelFailover, seed)




async def test_a_demoted_master_hands_appends_and_live_reads_to_the_new_one() -> None:
    """``SENTINEL FAILOVER``: the old master lives on and accepts writes until the
    sentinels demote it, some ten seconds later (and its other replica, until they
    re-point it, may even confirm them: an append acknowledged in that moment can be
    lost, which is why this test asserts only that the client follows). An unconfirmed
    ``WAIT`` makes the client ask the sentinels again; appends and a live tail carry on
    on the new master."""
    setup = await asyncio.to_thread(start_redis_sentinel, replicas=2)
    redis = create_redis(setup.url)
    log = EventLog(redis, EventLogSettings(key_prefix="demoted", replica_acks=1))
    fanout = LogFanout(log, block_ms=200)
    try:
        old = setup.master()
        with SyncRedis(port=setup.sentinels[0].port) as sentinel:
            sentinel.execute_command("SENTINEL", "FAILOVER", setup.master_name)
        new = await asyncio.to_thread(setup.wait_for_failover, old, DEADLINE_S)
        for index in range(200):
            last = await _appended(log, text("s", f"after {index}"))
            if (await redis.info("server"))["tcp_port"] == new.port:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the client never moved to the new master")
        received: list[Event] = []
        for _ in range(100):  # a client: follow, resuming from its last id after an error
            with contextlib.suppress(EventLogError):
                async for event in fanout.tail("s", after=received[-1].id if received else None):
                    received.append(event)
                    if event.id == last.id:
                        break
            if received and received[-1].id == last.id:
                break
        assert received[-1].id == last.id
        assert last.id in {event.id for event in await log.read_all("s")}
    finally:
        await fanout.aclose()
        await redis.aclose()
        await asyncio.to_thread(setup.stop)

async def _appended(log: EventLog, event: InputText) -> Event:
    """Appended and acknowledged, retried with its stamped id as the Gateway does."""
    [stamped] = log.stamp([event])
    for _ in range(200):
        try:
            await log.append(stamped)
            return stamped
        except EventLogError:
            await asyncio.sleep(0.05)
    raise AssertionError("the append was never acknowledged")
