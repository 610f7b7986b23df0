"""Auto-play narration: exactly one complete narration per text-only response, even when the
worker dies half-way or two workers race for the same turn (real Redis, scripted TTS)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from redis.asyncio import Redis

from pipeline.log import Delivery, EventLog, fold
from pipeline.workers import LeaseBusy, NarrationWorker, narration_pieces
from schemas import (
    AudioFormat,
    EngineError,
    ErrorCode,
    ErrorEvent,
    Event,
    EventBase,
    EventLogSettings,
    NarrationReady,
    ResponseAudioChunk,
    ResponseDone,
    SessionCreated,
    SessionCreatedData,
    SessionSettings,
    SessionUpdated,
    SessionUpdatedData,
)
from tests.support.engines import ScriptedTTS, scripted_audio
from tests.support.feeds import every_delivery
from tests.support.heap import harness_heap_frozen
from tests.support.text_turns import text_turn_events


@pytest.fixture
def redis_url(both_redis_urls: str) -> str:
    """The event-log contract holds on a standalone Redis and on a Redis Cluster."""
    return both_redis_urls

pytestmark = pytest.mark.redis

TEXT = (
    "The weather today is sunny and warm across the whole region. Tomorrow brings clouds "
    "and some rain in the afternoon. On the weekend it clears up again, with mild "
    "temperatures. Enjoy it!"
)
RATE = 16000
AUTO = SessionSettings(auto_play=True, realtime_tts=False, output_sample_rate=RATE)


def tts(**options: object) -> ScriptedTTS:
    return ScriptedTTS(sample_rate=RATE, chunks_per_piece=2, **options)  # type: ignore[arg-type]


def expected_audio(text: str = TEXT, settings: SessionSettings = AUTO) -> bytes:
    return b"".join(
        scripted_audio(piece, k) for piece in narration_pieces(text, settings) for k in range(2)
    )


async def text_turn(
    log: EventLog,
    session_id: str,
    *,
    settings: SessionSettings | None = AUTO,
    turn_id: str = "t1",
    text: str = TEXT,
    ending: str = "completed",
    with_audio: bool = False,
) -> None:
    """Append a session (when ``settings`` is given) and one finished text turn."""
    events: list[EventBase] = []
    if settings is not None:
        events.append(
            SessionCreated(session_id=session_id, data=SessionCreatedData(settings=settings))
        )
    events += text_turn_events(session_id, text, turn_id=turn_id, ending=ending,
                               with_audio=with_audio, rate=RATE)
    await log.append_batch(events)


async def deliveries(worker: NarrationWorker) -> list[Delivery]:
    """Every response.done on the feeds, oldest first."""
    found = await every_delivery(worker.reader)
    return [d for d in found if d.fields[b"type"] == b"response.done"]


async def handle_all(worker: NarrationWorker) -> None:
    for delivery in await deliveries(worker):
        await worker.handle(delivery)
        await worker.reader.ack(delivery)


def narration(
    events: list[Event], turn_id: str = "t1"
) -> tuple[list[ResponseAudioChunk], list[NarrationReady]]:
    done = next(
        i for i, e in enumerate(events) if isinstance(e, ResponseDone) and e.turn_id == turn_id
    )
    after = [e for e in events[done + 1 :] if e.turn_id == turn_id]
    chunks = [e for e in after if isinstance(e, ResponseAudioChunk)]
    ready = [e for e in after if isinstance(e, NarrationReady)]
    return chunks, ready


def assert_one_complete_narration(
    events: list[Event], text: str = TEXT, settings: SessionSettings = AUTO
) -> None:
    chunks, ready = narration(events)
    pieces = narration_pieces(text, settings)
    assert len(ready) == 1 and ready[0].data.chunk_count == len(chunks)
    assert [c.data.chunk_index for c in chunks] == list(range(len(chunks)))
    # each piece's chunks once, in piece order
    assert [c.data.sentence_index for c in chunks] == [
        i for i in range(len(pieces)) for _ in (0, 1)
    ]
    assert b"".join(c.data.audio for c in chunks) == expected_audio(text, settings)
    assert events.index(ready[0]) > events.index(chunks[-1])
    state = fold(events[0].session_id, events)
    assert state.turns["t1"].narrated


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(1000):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_text_turn_is_narrated(event_log: EventLog) -> None:
    await text_turn(event_log, "s1")
    synth = tts()
    worker = NarrationWorker(event_log, synth, consumer="a")
    await handle_all(worker)

    events = await event_log.read_all("s1")
    assert_one_complete_narration(events)
    chunks, _ = narration(events)
    assert {c.data.format for c in chunks} == {AudioFormat.PCM16}
    assert {c.data.sample_rate for c in chunks} == {RATE}
    assert [r.label for r in synth.records] == narration_pieces(TEXT, AUTO)


async def test_narration_is_encoded_in_the_session_format(event_log: EventLog) -> None:
    settings = AUTO.model_copy(
        update={"output_format": AudioFormat.WAV, "output_sample_rate": 16000}
    )
    await text_turn(event_log, "s1", settings=settings)
    await handle_all(NarrationWorker(event_log, tts(), consumer="a"))

    chunks, ready = narration(await event_log.read_all("s1"))
    assert ready[0].data.chunk_count == len(chunks) > 2
    assert {c.data.format for c in chunks} == {AudioFormat.WAV}
    body = b"".join(c.data.audio for c in chunks)
    assert body[:4] == b"RIFF" and body[44:] == expected_audio(settings=settings)
    assert not any(c.data.audio.startswith(b"RIFF") for c in chunks[1:])  # one header


@pytest.mark.parametrize(
    "case",
    ["no_auto_play", "had_audio", "cancelled", "failed"],
)
async def test_nothing_to_narrate(event_log: EventLog, case: str) -> None:
    settings = AUTO.model_copy(update={"auto_play": case != "no_auto_play"})
    ending = case if case in ("cancelled", "failed") else "completed"
    await text_turn(
        event_log, "s1", settings=settings, ending=ending, with_audio=case == "had_audio"
    )
    synth = tts()
    before = await event_log.read_all("s1")
    worker = NarrationWorker(event_log, synth, consumer="a")
    handled = await every_delivery(worker.reader)
    assert handled  # session.created, and response.done unless cancelled
    for delivery in handled:
        await worker.handle(delivery)
    assert await event_log.read_all("s1") == before
    assert synth.records == []


async def test_redelivery_after_completion_is_a_noop(event_log: EventLog) -> None:
    await text_turn(event_log, "s1")
    worker = NarrationWorker(event_log, tts(), consumer="a")
    [delivery] = await deliveries(worker)
    await worker.handle(delivery)
    after_first = await event_log.read_all("s1")

    again = tts()
    for other in (worker, NarrationWorker(event_log, again, consumer="b")):
        await other.handle(delivery)
    assert await event_log.read_all("s1") == after_first
    assert again.records == []
    assert_one_complete_narration(after_first)


async def test_settings_are_those_of_the_response(event_log: EventLog) -> None:
    """auto_play switched off after the response does not cancel its narration."""
    await text_turn(event_log, "s1")
    later = AUTO.model_copy(update={"auto_play": False, "output_format": AudioFormat.MP3})
    await event_log.append(
        SessionUpdated(
            session_id="s1", data=SessionUpdatedData(settings=later, changed=("auto_play",))
        )
    )
    await handle_all(NarrationWorker(event_log, tts(), consumer="a"))
    assert_one_complete_narration(await event_log.read_all("s1"))


async def test_worker_killed_mid_narration_is_taken_over(
    redis: Redis, log_settings: EventLogSettings
) -> None:
    log = EventLog(redis, log_settings.model_copy(update={"claim_idle_ms": 50}))
    pieces = narration_pieces(TEXT, AUTO)
    assert len(pieces) >= 4
    await text_turn(log, "s1")

    first_tts = tts(gated=True)
    assert first_tts.gate is not None
    first = NarrationWorker(log, first_tts, consumer="a", block_ms=20)
    first_tts.gate.release()
    first_tts.gate.release()  # two pieces go through, the third waits at the gate
    first.start()

    async def two_pieces_in() -> bool:
        chunks, _ = narration(await log.read_all("s1"))
        return len(chunks) == 4 and len(first_tts.records) == 3

    await eventually(two_pieces_in, "the first worker's two pieces")
    await first.stop()  # killed while synthesizing the third piece
    assert first_tts.records[2].interrupted
    pending = await redis.xpending(log.feed_key_for("s1"), "autoplay")
    assert pending["pending"] == 1
    assert not await redis.exists(first.lease_key("s1", "turn:t1"))  # released on the way out

    second_tts = tts()
    second = NarrationWorker(log, second_tts, consumer="b", block_ms=20)
    second.start()

    async def finished() -> bool:
        _, ready = narration(await log.read_all("s1"))
        idle = (await redis.xpending(log.feed_key_for("s1"), "autoplay"))["pending"] == 0
        return bool(ready) and idle

    try:
        await eventually(finished, "the second worker to take over")
    finally:
        await second.stop()
    events = await log.read_all("s1")
    assert_one_complete_narration(events)
    assert [r.label for r in second_tts.records] == pieces[2:]  # only what was missing
    chunks, _ = narration(events)
    assert {c.data.sentence_index for c in chunks[:4]} == {0, 1}


@pytest.mark.parametrize("fmt", [AudioFormat.PCM16, AudioFormat.WAV, AudioFormat.MP3])
async def test_resumed_narration_equals_an_uninterrupted_one(
    event_log: EventLog, fmt: AudioFormat
) -> None:
    settings = AUTO.model_copy(update={"output_format": fmt, "output_sample_rate": 24000})
    for session_id in ("whole", "resumed"):
        await text_turn(event_log, session_id, settings=settings)
    worker = NarrationWorker(event_log, tts(), consumer="a")
    dying_tts = tts(gated=True)
    dying = NarrationWorker(event_log, dying_tts, consumer="b")
    assert dying_tts.gate is not None
    whole, resumed = await deliveries(worker)
    await worker.handle(whole)

    dying_tts.gate.release()
    task = asyncio.create_task(dying.handle(resumed))

    async def one_piece_in() -> bool:
        chunks, _ = narration(await event_log.read_all("resumed"))
        return bool(chunks) and len(dying_tts.records) == 2

    await eventually(one_piece_in, "the first piece")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await worker.handle(resumed)

    audio = {}
    for session_id in ("whole", "resumed"):
        chunks, ready = narration(await event_log.read_all(session_id))
        assert len(ready) == 1 and ready[0].data.chunk_count == len(chunks)
        assert [c.data.chunk_index for c in chunks] == list(range(len(chunks)))
        audio[session_id] = b"".join(c.data.audio for c in chunks)
    assert audio["whole"] == audio["resumed"]


async def test_a_dead_holders_lease_blocks_until_it_expires(
    event_log: EventLog, redis: Redis
) -> None:
    await text_turn(event_log, "s1")
    worker = NarrationWorker(event_log, tts(), consumer="b")
    [delivery] = await deliveries(worker)
    key = worker.lease_key("s1", "turn:t1")
    # A lease long enough that no slow machine sees it lapse before the
    # refusal; shortened afterwards, as the dead holder's time running out.
    await redis.set(key, "a-worker-that-died", px=60_000)
    before = await event_log.read_all("s1")
    with pytest.raises(LeaseBusy):
        await worker.handle(delivery)
    assert await event_log.read_all("s1") == before
    await redis.pexpire(key, 50)

    async def expired() -> bool:
        return not bool(await redis.exists(key))

    await eventually(expired, "the lease to expire")
    await worker.handle(delivery)
    assert_one_complete_narration(await event_log.read_all("s1"))


async def test_two_workers_racing_one_delivery_narrate_once(
    event_log: EventLog, redis: Redis
) -> None:
    await text_turn(event_log, "s1")
    slow_tts = tts(gated=True)
    assert slow_tts.gate is not None
    slow = NarrationWorker(event_log, slow_tts, consumer="a")
    fast_tts = tts()
    fast = NarrationWorker(event_log, fast_tts, consumer="b")
    [delivery] = await deliveries(slow)
    task = asyncio.create_task(slow.handle(delivery))

    async def leased() -> bool:
        return bool(await redis.exists(slow.lease_key("s1", "turn:t1")))

    await eventually(leased, "the first worker's lease")
    with pytest.raises(LeaseBusy):
        await fast.handle(delivery)
    for _ in narration_pieces(TEXT, AUTO):
        slow_tts.gate.release()
    await task
    await fast.handle(delivery)  # the entry comes back to it later: nothing left to do
    assert fast_tts.records == []
    assert_one_complete_narration(await event_log.read_all("s1"))


async def test_racing_worker_loops_narrate_every_turn_once(
    redis: Redis, log_settings: EventLogSettings
) -> None:
    """Two running workers steal each other's entries all the time (claim_idle_ms=1)."""
    log = EventLog(
        redis, log_settings.model_copy(update={"claim_idle_ms": 1, "max_deliveries": 10_000})
    )
    sessions = [f"s{i}" for i in range(4)]
    workers = [
        NarrationWorker(log, tts(delay=0.002), consumer=name, lease_ms=60, block_ms=5)
        for name in ("a", "b")
    ]
    for worker in workers:
        worker.start()
    try:
        for session_id in sessions:
            await text_turn(log, session_id)

        async def all_done() -> bool:
            for session_id in sessions:
                if not narration(await log.read_all(session_id))[1]:
                    return False
            for feed in log.feed_keys:
                if (await redis.xpending(feed, "autoplay"))["pending"]:
                    return False
            return True

        await eventually(all_done, "every narration")
    finally:
        for worker in workers:
            await worker.stop()
    for session_id in sessions:
        assert_one_complete_narration(await log.read_all(session_id))


async def test_a_refused_piece_is_reported_and_skipped(event_log: EventLog) -> None:
    await text_turn(event_log, "s1")
    worker = NarrationWorker(event_log, tts(fail_on={1}), consumer="a")
    [delivery] = await deliveries(worker)
    await worker.handle(delivery)
    await worker.handle(delivery)  # redelivered: the failed piece is not tried again

    events = await event_log.read_all("s1")
    chunks, ready = narration(events)
    errors = [e for e in events if isinstance(e, ErrorEvent)]
    assert len(errors) == 1 and errors[0].data.details == {"sentence_index": 1, "narration": True}
    assert errors[0].data.code == ErrorCode.TTS_FAILED and errors[0].turn_id == "t1"
    pieces = narration_pieces(TEXT, AUTO)
    assert [c.data.sentence_index for c in chunks] == [
        i for i in range(len(pieces)) if i != 1 for _ in (0, 1)
    ]
    assert ready[0].data.chunk_count == len(chunks) == [c.data.chunk_index for c in chunks][-1] + 1


async def test_a_transient_failure_is_retried_from_where_it_stopped(event_log: EventLog) -> None:
    await text_turn(event_log, "s1")
    flaky = tts(
        fail_on={2},
        error=EngineError("overloaded", code=ErrorCode.ENGINE_OVERLOADED, transient=True),
    )
    worker = NarrationWorker(event_log, flaky, consumer="a")
    [delivery] = await deliveries(worker)
    with pytest.raises(EngineError):
        await worker.handle(delivery)  # left pending
    assert len(narration(await event_log.read_all("s1"))[0]) == 4

    retry_tts = tts()
    await NarrationWorker(event_log, retry_tts, consumer="b").handle(delivery)
    assert [r.label for r in retry_tts.records] == narration_pieces(TEXT, AUTO)[2:]
    assert_one_complete_narration(await event_log.read_all("s1"))


async def test_a_reply_with_nothing_to_say_gets_an_empty_narration(event_log: EventLog) -> None:
    await text_turn(event_log, "s1", text="")
    synth = tts()
    await handle_all(NarrationWorker(event_log, synth, consumer="a"))
    chunks, ready = narration(await event_log.read_all("s1"))
    assert chunks == [] and [r.data.chunk_count for r in ready] == [0]
    assert synth.records == []


async def test_a_live_worker_keeps_its_entry(event_log: EventLog, redis: Redis) -> None:
    """While it works, the holder renews its lease and re-takes its entry (XCLAIM JUSTID:
    idle time reset, no delivery counted), so others do not claim it or dead-letter it."""
    await text_turn(event_log, "s1")
    slow_tts = tts(gated=True)
    assert slow_tts.gate is not None
    # renewed every 200 ms: a lease of 30 ms expired between renewals on a loaded machine
    # (two test workers on two cores, the cluster's extra hops); the one of 600 ms once,
    # late in a full run, where a full collection of pytest's own heap takes ~0.5 s
    worker = NarrationWorker(event_log, slow_tts, consumer="a", lease_ms=600)
    [delivery] = await deliveries(worker)
    task = asyncio.create_task(worker.handle(delivery))
    feed = event_log.feed_key_for("s1")
    with harness_heap_frozen():
        try:
            await eventually(lambda: _exists(redis, worker.lease_key("s1", "turn:t1")), "the lease")
            await redis.xclaim(feed, "autoplay", "thief", 0, [delivery.entry_id], justid=True)

            async def owned_by_worker() -> bool:
                eid = delivery.entry_id
                [entry] = await redis.xpending_range(feed, "autoplay", eid, eid, 1)
                return bool(entry["consumer"] == b"a" and entry["times_delivered"] == 1)

            await eventually(owned_by_worker, "the heartbeat")
            token = await redis.get(worker.lease_key("s1", "turn:t1"))
            assert token is not None and token.startswith(b"a:")
        finally:
            for _ in narration_pieces(TEXT, AUTO):
                slow_tts.gate.release()
            await task
    assert_one_complete_narration(await event_log.read_all("s1"))
    assert not await redis.exists(worker.lease_key("s1", "turn:t1"))


async def _exists(redis: Redis, key: str) -> bool:
    return bool(await redis.exists(key))
