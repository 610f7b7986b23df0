"""The Serve app with its log on a Redis Cluster, and a primary's loss in the middle of a reply.

The child app (``voxline serve``, real CPU engines) runs against a 3-primary, 3-replica
cluster of this module's own, with ``VOXLINE_LOG__REPLICA_ACKS=1``: nothing is sent to a
client before a replica has it. A voice turn and a chat completion are served there;
then the primary holding a live session's slot is SIGKILLed as the reply streams. Its
replica takes over, the killed node is started again (it rejoins as the new primary's
replica, so ``WAIT 1`` can be met again), and the reply goes on over the same socket:
every event the client received is in the log once, the next turn works, and a resume
from an id inside the reply is exact.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from pipeline.log import EventLog
from tests.faults._processes import ChildApp
from tests.support.audio_fixtures import piper_pcm16
from voxline.client import VoxlineClient
from voxline.demo import RATE, voice_turn, with_pauses
from voxline.redis_cluster import RedisClusterServers, redis_cluster

pytestmark = [pytest.mark.serve, pytest.mark.models, pytest.mark.redis]

QUESTION = "What is the capital of France?"
GREEDY = {"temperature": 0.0, "max_tokens": 40, "seed": 1}


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterServers]:
    with redis_cluster(node_timeout_ms=1000) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def redis_url(cluster: RedisClusterServers) -> str:
    return cluster.url


@pytest.fixture(scope="module")
def child_env() -> dict[str, str]:
    # With one replica per primary and REPLICA_ACKS=1 the outage an append rides out is
    # the failover *and* the killed node's restart and resync as the new primary's replica
    # (no replica, no WAIT 1): 3-5 s on an idle machine, past the default 10 s grace once on
    # CI's busy one (a socket closed 4503 after the reply). The grace is sized to the test's
    # outage, as the docs tell an operator to size it to theirs.
    return {"VOXLINE_LOG__REPLICA_ACKS": "1", "VOXLINE_LOG__REPLICA_ACK_TIMEOUT_MS": "500",
            "VOXLINE_LOG__OUTAGE_GRACE_S": "45"}


async def test_a_voice_turn_through_serve_on_the_cluster(
        child_app: ChildApp, child_client: VoxlineClient, child_log: EventLog) -> None:
    spoken = piper_pcm16(QUESTION, RATE)  # the server's voice without its noise: same every run
    result = await voice_turn(child_client, with_pauses(spoken, RATE), speech_end_s=0.5,
                              realtime=False, sampling=GREEDY)
    assert "france" in result.transcript.lower()
    assert result.events[-1].type == "response.done"
    assert result.events[-1].data.status == "completed"  # type: ignore[union-attr]
    assert len(result.audio) > RATE // 2
    logged = [e.id for e in await child_log.read_all(result.session.session_id)]
    seen = [e.id for e in result.events if e.id is not None]
    assert logged[logged.index(seen[0]):][: len(seen)] == seen
    assert "{p" in child_log.key(result.session.session_id)  # the cluster's key layout


async def test_a_chat_completion_through_serve_on_the_cluster(child_app: ChildApp) -> None:
    async with httpx.AsyncClient(base_url=child_app.url, timeout=180) as http:
        response = await http.post("/v1/chat/completions", json={
            "model": "any", "messages": [{"role": "user", "content": QUESTION}],
            "temperature": 0, "max_tokens": 40, "seed": 1})
    assert response.status_code == 200, response.text
    assert "paris" in response.json()["choices"][0]["message"]["content"].lower()


async def test_a_primary_killed_mid_reply_loses_nothing_the_client_saw(
        child_client: VoxlineClient, child_log: EventLog,
        cluster: RedisClusterServers) -> None:
    session = await child_client.create_session(
        sampling={"temperature": 0.0, "max_tokens": 120, "seed": 2})
    redis: Any = child_log.redis
    await redis.initialize()
    port = redis.get_node_from_key(child_log.key(session.session_id)).port
    victim = next(node for node in cluster.primaries if node.port == port)

    outage: dict[str, float] = {}

    async def fail_over() -> None:
        began = time.monotonic()
        cluster.kill(victim)
        await asyncio.to_thread(cluster.wait_promoted, cluster.replica_of(victim))
        outage["promoted_s"] = time.monotonic() - began
        await asyncio.to_thread(cluster.restart, victim)
        outage["restarted_s"] = time.monotonic() - began

    seen = []
    crash: asyncio.Task[None] | None = None
    async with child_client.connect(session) as conn:
        await conn.send_text("Tell me about the history of Paris in a few sentences.")
        async with asyncio.timeout(240):
            async for event in conn.until_done():
                seen.append(event)
                if crash is None and event.type == "response.text.delta":
                    crash = asyncio.create_task(fail_over())
        assert crash is not None
        await crash
        assert conn.resumes == 0, outage  # the socket rode the failover out
        try:
            await conn.send_text(QUESTION)
        except ConnectionClosed as exc:  # closed past the grace: say how long the outage was
            pytest.fail(f"the socket was closed ({exc}) in an outage of {outage}")
        async with asyncio.timeout(240):  # an error ends the wait: a refused turn has no reply
            after = [event async for event in conn.until_done(stop_on_error=True)]
    assert seen[-1].type == "response.done", [e.type for e in seen[-5:]]
    assert after[-1].type == "response.done", after[-1]
    assert after[-1].data.status == "completed"  # type: ignore[union-attr]

    logged = await child_log.read_all(session.session_id)
    by_id = {event.id: event for event in logged}
    assert len(by_id) == len(logged)
    for event in seen + after:
        if event.id is not None:
            assert by_id[event.id].model_dump() == event.model_dump()
    deltas = [e.data.delta for e in logged  # type: ignore[union-attr]
              if e.type == "response.text.delta" and e.turn_id == seen[-1].turn_id]
    assert "".join(deltas) == "".join(
        e.data.delta for e in seen if e.type == "response.text.delta")  # type: ignore[union-attr]

    # a resume from inside the reply gets exactly what the log holds after it
    middle = [e.id for e in seen if e.id is not None][len(seen) // 2]
    async with child_client.connect(session, last_event_id=middle) as conn:
        resumed = []
        async with asyncio.timeout(60):
            async for event in conn.events():
                if event.id is not None:
                    resumed.append(event.id)
                if event.id == logged[-1].id:
                    break
    assert resumed == [e.id for e in logged][[e.id for e in logged].index(middle) + 1:]
