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

import pytest

from pipeline.log import EventLog
from tests.support.failover_trial import DEADLINE_S, check_trial, run_trial, trial_count
from voxline.redis_sentinel import RedisSentinelServers, start_redis_sentinel
from voxline.redis_server import RedisServer

pytestmark = pytest.mark.redis


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
    setup = await asyncio.to_thread(start_redis_sentinel)
    try:
        trial = await asyncio.wait_for(
            run_trial(setup.url, SentinelFailover(setup), seed), timeout=3 * DEADLINE_S)
    finally:
        await asyncio.to_thread(setup.stop)
    print(trial.summary(seed))
    check_trial(trial)
