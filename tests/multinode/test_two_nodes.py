"""A real two-node Ray cluster on one machine (tests/multinode/_cluster.py): stages placed
by custom resources, turns across nodes, and the LLM node lost mid-turn and brought back.

Losing the "llm" node (SIGKILL of every process of it) while the LanguageModel streams a
reply ends the turn with a transient ``llm_failed`` error event. No other node offers
``voxline_llm``, so the replacement replica waits for the node: once ``ray start --address``
brings it back, Serve places a new LanguageModel there and the next turn of the same
session completes. Nothing acknowledged is lost from the log (numbers 1..n, every event
the client saw present).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from pipeline.log import EventLog, create_redis
from schemas import Event, EventLogSettings
from tests.multinode._cluster import LocalCluster, wait_for
from tests.support.api_harness import forget_keys
from voxline.client import SessionInfo, VoxlineClient
from voxline.redis_server import free_port
from voxline.server import wait_ready

pytestmark = [pytest.mark.serve, pytest.mark.redis, pytest.mark.models]

SAMPLING = {"temperature": 0.0, "max_tokens": 48, "seed": 1}
STORY = "Tell me a long story about a dragon who lives in the mountains."
SPEECH_NODE = {"Gateway", "Transcriber", "Synthesizer"}  # the Gateway consumes the feed
GUARD_S = 300.0  # hang guards, not measures


@pytest.fixture(scope="module")
def cluster(redis_url: str) -> Iterator[LocalCluster]:
    prefix = f"voxnodes:{uuid.uuid4().hex[:8]}"
    cluster = LocalCluster({"VOXLINE_REDIS_URL": redis_url, "VOXLINE_LOG__KEY_PREFIX": prefix,
                            "VOXLINE_STT__MODEL": "whisper-tiny.en",
                            "VOXLINE_METRICS_PORT": str(free_port())})
    cluster.prefix = prefix  # type: ignore[attr-defined]
    try:
        cluster.start_head()
        cluster.start_worker()
        cluster.deploy()
        wait_ready(cluster.url, 600, lambda _: None)
        yield cluster
    finally:
        cluster.stop()
        forget_keys(redis_url, prefix)


@pytest.fixture
async def client(cluster: LocalCluster) -> AsyncIterator[VoxlineClient]:
    async with VoxlineClient(cluster.url, timeout=180) as client:
        yield client


@pytest.fixture
async def log(cluster: LocalCluster, redis_url: str) -> AsyncIterator[EventLog]:
    redis = create_redis(redis_url)
    try:
        yield EventLog(redis, EventLogSettings(key_prefix=cluster.prefix))  # type: ignore[attr-defined]
    finally:
        await redis.aclose()


async def text_turn(client: VoxlineClient, session: SessionInfo, text: str) -> list[Event]:
    async with client.connect(session) as conn:
        await conn.send_text(text)
        return [e async for e in conn.until_done()]


def test_replicas_land_on_the_nodes_their_resources_name(cluster: LocalCluster) -> None:
    speech, llm = cluster.head.replicas(), cluster.worker.replicas()
    assert set(speech) == SPEECH_NODE, speech
    assert set(llm) == {"LanguageModel"}, llm


async def test_a_turn_crosses_nodes(client: VoxlineClient) -> None:
    session = await client.create_session(sampling=SAMPLING)
    events = await text_turn(client, session, "What is the capital of France?")
    data: Any = events[-1].data
    assert events[-1].type == "response.done" and data.status == "completed"
    assert any(e.type == "response.audio.chunk" for e in events)  # TTS on the other node


async def test_losing_the_llm_node_mid_turn_is_a_transient_error_and_serve_recovers(
        cluster: LocalCluster, client: VoxlineClient, log: EventLog) -> None:
    session = await client.create_session(sampling=SAMPLING)
    seen: list[Event] = []
    async with client.connect(session) as conn:
        await conn.send_text(STORY)
        async with asyncio.timeout(GUARD_S):
            async for event in conn.until_done():
                seen.append(event)
                if event.type == "response.text.delta" and len(seen) < 50 \
                        and cluster.worker.raylet() is not None:
                    await asyncio.to_thread(cluster.worker.kill)
    errors: list[Any] = [e.data for e in seen if e.type == "error"]
    assert errors and errors[0].code == "llm_failed" and errors[0].transient, \
        [e.type for e in seen]

    await asyncio.to_thread(cluster.start_worker)
    await asyncio.to_thread(wait_for, lambda: "LanguageModel" in cluster.worker.replicas(),
                            GUARD_S, "no LanguageModel replica on the returned node")
    async with asyncio.timeout(GUARD_S):
        while True:
            try:
                events = await text_turn(client, session, "What is the capital of Italy?")
                data: Any = events[-1].data
                if events[-1].type == "response.done" and data.status == "completed":
                    break
            except (ConnectionClosed, OSError):
                pass
            await asyncio.sleep(2.0)
    page = await log.read_page(session.session_id, count=100_000)
    assert list(page.numbers) == list(range(1, len(page.numbers) + 1))
    logged = {e.id for e in page.events}
    assert len(logged) == len(page.events)
    assert {e.id for e in seen + events if e.id} <= logged
