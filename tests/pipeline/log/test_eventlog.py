"""The event log against a real Redis server."""

from __future__ import annotations

import asyncio
import contextlib
import random
from urllib.parse import urlparse

import pytest
from redis.asyncio import Redis

from pipeline.log import EventLog, StreamId, create_redis
from schemas import (
    AppendConflictError,
    ErrorCode,
    EventLogSettings,
    InputTextData,
    ProtocolError,
    RedisSettings,
    ResponseTextDelta,
    ResyncRequiredError,
    TextDeltaData,
)
from tests.support.event_samples import sample_events
from tests.support.event_samples import typed_text as text
from tests.support.redis_proxy import RedisProxy


@pytest.fixture
def redis_url(both_redis_urls: str) -> str:
    """The event-log contract holds on a standalone Redis and on a Redis Cluster."""
    return both_redis_urls

pytestmark = pytest.mark.redis



async def test_every_event_type_round_trips(event_log: EventLog) -> None:
    events = sample_events("rt")
    result = await event_log.append_batch(events)
    assert not result.duplicate and result.first_number == 1
    stored = await event_log.read_all("rt")
    assert [e.type for e in stored] == [e.type for e in events]
    for original, back in zip(events, stored, strict=True):
        assert back.id is not None
        assert back.model_copy(update={"id": None}) == original
    # audio is a binary stream field, not base64 text inside the JSON
    raw = await event_log.redis.xrange(event_log.key("rt"))
    audio_entries = [fields for _, fields in raw if b"audio" in fields]
    assert len(audio_entries) == 2
    assert all(fields[b"audio"] == bytes(range(256)) * 4 for fields in audio_entries)
    assert all(b"audio" not in fields[b"data"] for fields in audio_entries)


async def test_append_read_after_and_numbers(event_log: EventLog) -> None:
    stored = [await event_log.append(text("s", str(i))) for i in range(5)]
    ids = [StreamId.parse(e.id or "") for e in stored]
    assert ids == sorted(ids) and len(set(ids)) == 5
    after = await event_log.read_all("s", after=stored[1].id)
    assert [e.data.text for e in after] == ["2", "3", "4"]  # type: ignore[union-attr]
    page = await event_log.read_page("s", after=stored[3].id)
    assert page.numbers == (5,) and page.entries_added == 5
    assert await event_log.read_all("s", after=stored[-1].id) == []


async def test_read_pages_through_long_logs(redis: Redis, log_settings: EventLogSettings) -> None:
    log = EventLog(redis, log_settings.model_copy(update={"read_count": 7}))
    await log.append_batch([text("long", str(i)) for i in range(50)])
    got = await log.read_all("long")
    assert [e.data.text for e in got] == [str(i) for i in range(50)]  # type: ignore[union-attr]


async def test_unknown_session_reads_empty(event_log: EventLog) -> None:
    assert await event_log.read_all("nobody") == []
    assert not await event_log.exists("nobody")


async def test_bad_cursor_is_a_protocol_error(event_log: EventLog) -> None:
    with pytest.raises(ProtocolError) as info:
        await event_log.read_all("s", after="not-an-id")
    assert info.value.code is ErrorCode.INVALID_MESSAGE


async def test_tail_replays_then_follows_live(event_log: EventLog) -> None:
    first = await event_log.append(text("tail", "old"))
    seen: list[str] = []

    async def follow() -> None:
        async for event in event_log.tail("tail", block_ms=100):
            seen.append(event.data.text)  # type: ignore[union-attr]
            if len(seen) == 3:
                return

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.05)
    await event_log.append(text("tail", "new1"))
    await event_log.append(text("tail", "new2"))
    await asyncio.wait_for(task, 10)
    assert seen == ["old", "new1", "new2"]
    # a tail after the last seen id gets only what came later
    later = event_log.tail("tail", after=first.id, block_ms=100)
    assert (await anext(later)).data.text == "new1"  # type: ignore[union-attr]
    await later.aclose()


async def test_retried_append_with_same_ids_is_not_duplicated(event_log: EventLog) -> None:
    batch = event_log.stamp([text("r", "a"), text("r", "b")])
    first = await event_log.append_batch(batch)
    again = await event_log.append_batch(batch)
    assert not first.duplicate and again.duplicate
    assert again.first_number == first.first_number == 1
    assert len(await event_log.read_all("r")) == 2


async def test_same_id_other_content_is_a_conflict(event_log: EventLog) -> None:
    [stamped] = event_log.stamp([text("c", "a")])
    await event_log.append(stamped)
    forged = stamped.model_copy(update={"data": InputTextData(text="b")})
    with pytest.raises(AppendConflictError) as info:
        await event_log.append(forged)
    assert info.value.code is ErrorCode.APPEND_CONFLICT
    assert len(await event_log.read_all("c")) == 1


async def test_lost_reply_is_retried_by_redis_py_without_duplicate(
    redis_url: str, log_settings: EventLogSettings
) -> None:
    if redis_url.startswith("redis+cluster://"):
        pytest.skip("the lossy proxy stands in front of one server")
    url = urlparse(redis_url)
    proxy = RedisProxy(url.hostname or "127.0.0.1", url.port or 6379)
    await proxy.start()
    client = create_redis(
        f"redis://127.0.0.1:{proxy.port}/0", RedisSettings(retries=3, backoff_base_s=0.01)
    )
    log = EventLog(client, log_settings)
    try:
        await log.append(text("lost", "warm-up"))  # loads the scripts
        proxy.drop_replies = 1
        event = await log.append(text("lost", "once"))
        assert proxy.dropped == 1
        stored = await log.read_all("lost")
        assert [e.data.text for e in stored] == ["warm-up", "once"]  # type: ignore[union-attr]
        assert stored[-1].id == event.id
    finally:
        await client.aclose()
        await proxy.close()


async def test_two_writers_never_interleave_batches(
    redis: Redis, log_settings: EventLogSettings
) -> None:
    # Two EventLog instances are two processes' worth of id caches: their stamps collide.
    writers = [EventLog(redis, log_settings), EventLog(redis, log_settings)]

    async def write(log: EventLog, name: str) -> None:
        for batch in range(20):
            await log.append_batch([text("w", f"{name}{batch}.{i}") for i in range(5)])

    await asyncio.gather(write(writers[0], "a"), write(writers[1], "b"))
    stored = await writers[0].read_all("w")
    texts = [e.data.text for e in stored]  # type: ignore[union-attr]
    assert len(texts) == len(set(texts)) == 200
    for start in range(0, 200, 5):  # every batch is contiguous and in order
        chunk = texts[start : start + 5]
        prefix = chunk[0].split(".")[0]
        assert chunk == [f"{prefix}.{i}" for i in range(5)]
    page = await writers[0].read_page("w")
    assert page.numbers == tuple(range(1, 201))


async def test_reading_before_trim_horizon_requires_resync(
    redis: Redis, log_settings: EventLogSettings
) -> None:
    log = EventLog(redis, log_settings.model_copy(update={"maxlen": 5, "approximate_trim": False}))
    stored = [await log.append(text("trim", str(i))) for i in range(10)]
    with pytest.raises(ResyncRequiredError) as info:
        await log.read_all("trim")
    assert info.value.code is ErrorCode.RESYNC_REQUIRED
    with pytest.raises(ResyncRequiredError):
        await log.read_all("trim", after=stored[2].id)
    # at the horizon itself nothing is missing
    assert len(await log.read_all("trim", after=stored[4].id)) == 5


async def test_tail_overtaken_by_trimming_requires_resync(
    redis: Redis, log_settings: EventLogSettings
) -> None:
    log = EventLog(redis, log_settings.model_copy(update={"maxlen": 2, "approximate_trim": False}))
    await log.append(text("slow", "0"))
    tail = log.tail("slow", block_ms=100)
    assert (await anext(tail)).data.text == "0"  # type: ignore[union-attr]
    # while the reader is away, five more arrive and only the last two are kept
    await log.append_batch([text("slow", str(i)) for i in range(1, 6)])
    with pytest.raises(ResyncRequiredError):
        await anext(tail)
    with contextlib.suppress(Exception):
        await tail.aclose()


async def test_minid_trims_by_age(redis: Redis, log_settings: EventLogSettings) -> None:
    log = EventLog(redis, log_settings.model_copy(update={"max_age_s": 60}))
    old = text("age", "old").model_copy(update={"id": "1000-0"})
    await log.append(old)
    await log.append(text("age", "new"))
    events = await redis.xrange(log.key("age"))
    assert [f[b"data"] for _, f in events] == [b'{"text":"new"}']


async def test_closed_session_gets_a_ttl(event_log: EventLog) -> None:
    from schemas import SessionClosed

    await event_log.append(text("ttl", "x"))
    assert await event_log.redis.ttl(event_log.key("ttl")) == -1
    await event_log.append(SessionClosed(session_id="ttl"))
    ttl = await event_log.redis.ttl(event_log.key("ttl"))
    assert 0 < ttl <= event_log.settings.closed_ttl_s  # type: ignore[operator]


async def test_feed_gets_pointers_to_selected_types(event_log: EventLog) -> None:
    from schemas import ResponseDone, ResponseDoneData

    await event_log.append_batch(
        [
            ResponseTextDelta(session_id="f", turn_id="t", data=TextDeltaData(delta="x")),
            ResponseDone(session_id="f", turn_id="t", data=ResponseDoneData(text="x")),
        ]
    )
    feed = await event_log.redis.xrange(event_log.feed_key_for("f"))
    assert [(f[b"session"], f[b"type"]) for _, f in feed] == [(b"f", b"response.done")]


async def test_batch_must_be_one_session(event_log: EventLog) -> None:
    with pytest.raises(ValueError):
        await event_log.append_batch([text("a", "1"), text("b", "2")])


async def test_cancelling_a_blocked_tail_always_ends_it(event_log: EventLog) -> None:
    """CPython 3.11's asyncio.timeout can swallow a cancel that races a read timeout;
    the tail must end anyway (it used to spin on in a 'cancelling' task)."""
    rng = random.Random(7)
    for _ in range(80):
        task = asyncio.ensure_future(anext(event_log.tail("idle", block_ms=5)))
        await asyncio.sleep(rng.random() * 0.015)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=10)
        assert done, "a cancelled tail kept running"


async def test_read_remaining_reads_past_a_trim_and_names_the_horizon(redis_url: str,
                                                                     key_prefix: str) -> None:
    from pipeline.log import create_redis
    from schemas import EventLogSettings

    redis = create_redis(redis_url)
    log = EventLog(redis, EventLogSettings(key_prefix=key_prefix, maxlen=3,
                                           approximate_trim=False))
    try:
        await log.append_batch(sample_events("rr")[:6])
        events, horizon = await log.read_remaining("rr")
        assert len(events) == 3 and horizon is not None
        assert [e.id for e in events] == [e.id for e in (await log.read_page("rr", horizon)).events]
        untouched, none = await log.read_remaining("rr", events[0].id)
        assert none is None and untouched == events[1:]
    finally:
        await redis.delete(log.key("rr"), log.feed_key_for("rr"))
        await redis.aclose()
