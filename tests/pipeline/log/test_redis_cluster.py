"""The log on a real Redis Cluster (3 primaries, 3 replicas, started by the fixture): key
layout, replica acknowledgement, and a chat turn through the API on it.

The event-log contract itself runs on the cluster too: the modules that override
``redis_url`` with ``both_redis_urls`` (test_eventlog, test_fanout, test_consumer, ...).
"""

from __future__ import annotations

from collections import Counter

import openai
import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from pipeline.log import EventLog, create_redis, is_cluster
from pipeline.log.keys import LogKeys
from pipeline.retrieval import CollectionStore
from schemas import (
    ErrorCode,
    EventLogError,
    EventLogSettings,
    InputText,
    InputTextData,
    RetrievalSettings,
)
from tests.support.api_harness import serve_api
from tests.support.engines import ScriptedLLM

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_url(redis_cluster_url: str) -> str:
    return redis_cluster_url


def text(session: str, body: str) -> InputText:
    return InputText(session_id=session, data=InputTextData(text=body))


def test_the_url_selects_the_cluster_client(redis_cluster_url: str) -> None:
    assert is_cluster(create_redis(redis_cluster_url))
    assert not is_cluster(create_redis("redis://127.0.0.1:6379/0"))


def test_standalone_keys_keep_their_names() -> None:
    keys = LogKeys("voxline")
    assert keys.session("abc") == "voxline:session:abc"
    assert keys.feeds() == ["voxline:feed"] and keys.feed_of("abc") == "voxline:feed"


@pytest.mark.parametrize("partitions", [1, 3, 16, 64, 1000])
def test_partition_tags_spread_evenly_over_the_slots(partitions: int) -> None:
    keys = LogKeys("voxline", partitions)
    slots = [key_slot(keys.feed(n).encode()) for n in range(partitions)]
    band = 16384 / partitions
    assert all(n * band - 1 < slot < (n + 1) * band for n, slot in enumerate(slots))
    if partitions == 16:  # three primaries with equal slot ranges hold 5, 6, 5
        owners = Counter(slot * 3 // 16384 for slot in slots)
        assert sorted(owners.values()) == [5, 5, 6]


async def test_a_session_shares_its_slot_with_its_feed_and_partitions_spread(
    redis: Redis, event_log: EventLog
) -> None:
    cluster: RedisCluster = redis  # type: ignore[assignment]
    await cluster.initialize()
    sessions = [f"s{i}" for i in range(200)]
    for session in sessions:
        assert cluster.keyslot(event_log.key(session)) == cluster.keyslot(
            event_log.feed_key_for(session))
    slots = {cluster.keyslot(feed) for feed in event_log.feed_keys}
    assert len(slots) == event_log.settings.partitions  # one slot per partition
    primaries = {cluster.get_node_from_key(feed).name for feed in event_log.feed_keys}
    assert len(primaries) == 3, "16 partitions should land on every primary"
    assert len({event_log.keys.partition(s) for s in sessions}) == 16


async def test_an_append_waits_for_a_replica(
    redis: Redis, log_settings: EventLogSettings
) -> None:
    acked = EventLog(redis, log_settings.model_copy(update={"replica_acks": 1}))
    event = await acked.append(text("acked", "kept on two machines"))
    assert [e.id for e in await acked.read_all("acked")] == [event.id]


async def test_too_few_replicas_is_a_transient_log_error(
    redis: Redis, log_settings: EventLogSettings
) -> None:
    """Each primary has one replica: waiting for two times out, and the event counts as
    not appended (the caller does not send it); its retry is a duplicate and waits again."""
    strict = EventLog(redis, log_settings.model_copy(
        update={"replica_acks": 2, "replica_ack_timeout_ms": 20, "outage_grace_s": 0}))
    [stamped] = strict.stamp([text("strict", "x")])
    with pytest.raises(EventLogError) as caught:
        await strict.append_batch([stamped])
    assert caught.value.code is ErrorCode.EVENT_LOG_UNAVAILABLE and caught.value.transient
    with pytest.raises(EventLogError):
        await strict.append_batch([stamped])
    assert len(await strict.read_all("strict")) == 1  # on the primary, once


async def test_a_collection_lives_in_one_slot(redis: Redis, key_prefix: str) -> None:
    store = CollectionStore(redis, RetrievalSettings(), key_prefix)
    try:
        info = await store.create("tagged")
        cluster: RedisCluster = redis  # type: ignore[assignment]
        parts = ("", "docs", "chunks", "index", "grants", "lock")
        assert len({cluster.keyslot(store.key(info.collection_id, p)) for p in parts}) == 1
        await store.grant(info.collection_id, "s1")
        assert await store.granted(info.collection_id, "s1")
        await store.delete(info.collection_id)
        assert not await redis.exists(store.key(info.collection_id))
    finally:
        await store.aclose()


async def test_a_chat_turn_through_the_api_on_the_cluster(
    redis_cluster_url: str, key_prefix: str
) -> None:
    tokens = ["Hello", " from", " the", " cluster", "."]
    async with serve_api(redis_cluster_url, EventLogSettings(key_prefix=key_prefix),
                         llm=ScriptedLLM(tokens), tts=None) as harness:
        client = openai.AsyncOpenAI(base_url=harness.url + "/v1", api_key="x", max_retries=0)
        async with client:
            reply = await client.chat.completions.create(
                model="any", messages=[{"role": "user", "content": "Hi"}])
            stream = await client.chat.completions.create(
                model="any", messages=[{"role": "user", "content": "Hi"}], stream=True)
            streamed = "".join([c.choices[0].delta.content or "" async for c in stream
                                if c.choices])
    assert reply.choices[0].message.content == streamed == "".join(tokens)
