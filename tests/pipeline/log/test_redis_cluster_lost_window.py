"""A failover that loses acknowledged events (``replica_acks=0``) is never a silent gap.

Without replica acknowledgement an append counts once the primary has it. Here the
session's replica is paused (SIGSTOP) and cut off while five more events are appended, the
primary is SIGKILLed, and the replica, resumed, takes over without them: the log lost a window that
a client may have been shown. A live tail that had delivered them ends with
``resync_required`` when the next event arrives, and a resume from the last of them
(what a reconnecting socket does, :func:`pipeline.session.check_cursor`) is refused with
``resync_required`` too, also once newer events follow.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from pipeline.log import EventLog, LogFanout, create_redis, fold
from pipeline.session import check_cursor
from schemas import Event, EventLogSettings, InputText, InputTextData, ResyncRequiredError
from voxline.redis_cluster import RedisClusterServers, redis_cluster

pytestmark = pytest.mark.redis

SESSION = "lost-window"


def text(value: str) -> InputText:
    return InputText(session_id=SESSION, turn_id="t", data=InputTextData(text=value))


@pytest.fixture
def cluster() -> Iterator[RedisClusterServers]:
    with redis_cluster(node_timeout_ms=1000) as cluster:  # its own: a node is killed
        yield cluster


async def test_events_lost_in_a_failover_are_resync_required_never_a_gap(
        cluster: RedisClusterServers) -> None:
    redis: Any = create_redis(cluster.url)
    log = EventLog(redis, EventLogSettings(key_prefix="lw", replica_acks=0))
    fanout = LogFanout(log, block_ms=200)
    seen: list[Event] = []
    outcome: list[BaseException] = []
    shown = asyncio.Event()
    try:
        for n in range(5):
            await log.append(text(f"kept {n}"))
        await redis.initialize()
        port = redis.get_node_from_key(log.key(SESSION)).port
        primary = next(node for node in cluster.primaries if node.port == port)
        replica = cluster.replica_of(primary)
        await redis.execute_command("WAIT", 1, 5000, target_nodes=redis.get_node_from_key(
            log.key(SESSION)))  # the first five are on the replica

        async def follow() -> None:
            try:
                async for event in fanout.tail(SESSION):
                    seen.append(event)
                    if len(seen) == 10:
                        shown.set()
            except ResyncRequiredError as exc:
                outcome.append(exc)

        reader = asyncio.create_task(follow())
        os.kill(replica.process.pid, signal.SIGSTOP)
        try:
            # cut the replication link too: what the primary wrote into it before is read
            # by the replica once it runs again; what follows never reaches it
            await redis.execute_command("CLIENT", "KILL", "TYPE", "replica",
                                        target_nodes=redis.get_node_from_key(log.key(SESSION)))
            for n in range(5):
                await log.append(text(f"lost {n}"))  # acknowledged by the primary alone
            await asyncio.wait_for(shown.wait(), 30)  # the client was shown them
            cluster.kill(primary)
        finally:
            os.kill(replica.process.pid, signal.SIGCONT)
        await asyncio.to_thread(cluster.wait_promoted, replica)

        after = await log.append(text("after the failover"))  # rides the outage out
        await asyncio.wait_for(reader, 30)
        stored = await log.read_all(SESSION)
        state = fold(SESSION, stored)
        with pytest.raises(ResyncRequiredError):
            await check_cursor(log, state, seen[-1].id or "")
        await check_cursor(log, state, seen[4].id or "")  # before the window: resumes
    finally:
        await fanout.aclose()
        await redis.aclose()
    assert [e.data.text for e in stored] == [  # type: ignore[union-attr]
        *(f"kept {n}" for n in range(5)), "after the failover"]
    assert stored[-1].id == after.id
    assert [e.data.text for e in seen[5:10]] == [f"lost {n}" for n in range(5)]  # type: ignore[union-attr]
    assert outcome and isinstance(outcome[0], ResyncRequiredError)
