"""Failover trials: the primary holding a live session's slot is SIGKILLed mid-reply.

Each trial runs on a Redis Cluster of its own (3 primaries, 1 replica each, a 1 s node
timeout), never the shared fixture: it kills a node. The trial itself (a writer retrying
each stamped event with ``replica_acks=1`` until acknowledged, a reader following through
:class:`LogFanout`, and what is asserted afterwards) is :mod:`tests.support.failover_trial`,
shared with the Sentinel trial; here the session's primary is killed, its replica takes
over, and the dead node is started again on its directory and rejoins as the new
primary's replica.

``VOXLINE_FAILOVER_TRIALS`` sets the number of seeded trials (3 by default; the figure
for 20 is in the report that came with this test).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from pipeline.log import EventLog
from tests.support.failover_trial import DEADLINE_S, run_checked_trial, trial_count
from tests.support.outages import DEAD_SOCKETS
from voxline.redis_cluster import RedisClusterServers, start_redis_cluster
from voxline.redis_server import RedisServer

pytestmark = [pytest.mark.redis, *DEAD_SOCKETS]


class ClusterFailover:
    """Kills the primary of the session's slot; its replica is promoted by the cluster."""

    def __init__(self, cluster: RedisClusterServers) -> None:
        self.cluster = cluster
        self.victim: RedisServer | None = None
        self.replica: RedisServer | None = None
        self.killed = 0.0

    async def kill(self, log: EventLog, session: str) -> None:
        await log.redis.initialize()
        node = log.redis.get_node_from_key(log.key(session))  # type: ignore[attr-defined]
        self.victim = next(p for p in self.cluster.primaries if p.port == node.port)
        self.replica = self.cluster.replica_of(self.victim)
        self.killed = time.monotonic()
        self.cluster.kill(self.victim)

    async def promoted(self) -> None:
        assert self.replica is not None
        await asyncio.to_thread(self.cluster.wait_promoted, self.replica,
                                self.killed + DEADLINE_S - time.monotonic())

    async def restart(self) -> None:
        assert self.victim is not None
        await asyncio.to_thread(self.cluster.restart, self.victim)


@pytest.mark.parametrize("seed", range(trial_count(3)))
async def test_a_killed_primary_loses_no_acknowledged_or_delivered_event(seed: int) -> None:
    await run_checked_trial(lambda: start_redis_cluster(node_timeout_ms=1000),
                            ClusterFailover, seed)
