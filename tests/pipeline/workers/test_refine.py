"""Re-transcription in the background: one transcript.refined per utterance in whisperx mode."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from redis.asyncio import Redis

from pipeline.log import EventLog, fold
from pipeline.workers import RefineWorker
from schemas import (
    EngineError,
    ErrorCode,
    ErrorEvent,
    Event,
    EventBase,
    InputAudio,
    InputAudioData,
    InvalidAudioError,
    SessionCreated,
    SessionCreatedData,
    SessionSettings,
    SttMode,
    TranscriptFinal,
    TranscriptionRequest,
    TranscriptRefined,
    TranscriptSegment,
)
from tests.support.engines import ScriptedSTT
from tests.support.feeds import every_delivery

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_url(both_redis_urls: str) -> str:
    """Refinement on a standalone Redis and on the cluster (feeds per partition there)."""
    return both_redis_urls

WHISPERX = SessionSettings(stt_mode=SttMode.WHISPERX, language="de")


def words(audio: bytes) -> str:
    return f"utterance {hashlib.sha256(audio).hexdigest()[:8]}"


class HashingSTT(ScriptedSTT):
    """Two segments per request, named after the audio (so each utterance's refined text
    is its own); optional failures. Local: only the refinement tests need the text to
    follow the audio."""

    def __init__(self, error: Exception | None = None) -> None:
        super().__init__(error=error)

    def segments(self, request: TranscriptionRequest, call: int) -> list[TranscriptSegment]:
        first, second = words(request.audio).split()
        return [TranscriptSegment(text=f" {first}", start_s=0.0, end_s=0.5),
                TranscriptSegment(text=f"{second} ", start_s=0.5, end_s=1.0)]


def utterance(session_id: str, turn_id: str, seed: int) -> InputAudio:
    audio = bytes([seed, 1]) * 800
    data = InputAudioData(sample_rate=16000, duration_ms=50, audio=audio)
    return InputAudio(session_id=session_id, turn_id=turn_id, data=data)


async def session(log: EventLog, session_id: str, settings: SessionSettings, n: int) -> None:
    events: list[EventBase] = [
        SessionCreated(session_id=session_id, data=SessionCreatedData(settings=settings))
    ]
    events += [utterance(session_id, f"t{i}", i) for i in range(n)]
    await log.append_batch(events)


async def handle_all(worker: RefineWorker) -> int:
    """Handle and acknowledge every feed entry there is."""
    found = await every_delivery(worker.reader)
    for delivery in found:
        await worker.handle(delivery)
        await worker.reader.ack(delivery)
    return len(found)


def refined(events: list[Event]) -> list[TranscriptRefined]:
    return [e for e in events if isinstance(e, TranscriptRefined)]


async def test_one_refined_transcript_per_utterance(event_log: EventLog) -> None:
    await session(event_log, "s1", WHISPERX, 3)
    stt = HashingSTT()
    worker = RefineWorker(event_log, stt, consumer="a")
    assert await handle_all(worker) == 4

    events = await event_log.read_all("s1")
    inputs = [e for e in events if isinstance(e, InputAudio)]
    out = refined(events)
    assert [r.data.source_event_id for r in out] == [e.id for e in inputs]
    assert [r.turn_id for r in out] == [e.turn_id for e in inputs]
    assert [r.data.text for r in out] == [words(e.data.audio) for e in inputs]
    assert {r.data.language for r in out} == {"de"}
    assert [(q.sample_rate, q.language) for q in stt.requests] == [(16000, "de")] * 3
    state = fold("s1", events)
    assert [state.turns[f"t{i}"].user_text for i in range(3)] == [r.data.text for r in out]


async def test_redelivery_is_idempotent(event_log: EventLog) -> None:
    await session(event_log, "s1", WHISPERX, 2)
    worker = RefineWorker(event_log, HashingSTT(), consumer="a")
    handled = await every_delivery(worker.reader)
    for delivery in handled:
        await worker.handle(delivery)
    first = await event_log.read_all("s1")

    again = HashingSTT()
    other = RefineWorker(event_log, again, consumer="b")
    for delivery in handled:  # redelivered, to this worker and to another one
        await worker.handle(delivery)
        await other.handle(delivery)
    assert await event_log.read_all("s1") == first
    assert again.requests == []
    assert len(refined(first)) == 2


async def test_nothing_in_realtime_mode(event_log: EventLog) -> None:
    await session(event_log, "s1", SessionSettings(), 2)
    stt = HashingSTT()
    before = await event_log.read_all("s1")
    await handle_all(RefineWorker(event_log, stt, consumer="a"))
    assert await event_log.read_all("s1") == before
    assert stt.requests == []


async def test_unusable_audio_is_reported_once(event_log: EventLog) -> None:
    await session(event_log, "s1", WHISPERX, 1)
    stt = HashingSTT(InvalidAudioError("garbled", code=ErrorCode.INVALID_AUDIO))
    worker = RefineWorker(event_log, stt, consumer="a")
    handled = await every_delivery(worker.reader)
    for _ in range(2):
        for delivery in handled:
            await worker.handle(delivery)
    events = await event_log.read_all("s1")
    [error] = [e for e in events if isinstance(e, ErrorEvent)]
    assert error.data.stage == "stt" and error.data.code == ErrorCode.INVALID_AUDIO
    assert error.data.details == {"source_event_id": events[1].id, "refine": True}
    assert refined(events) == [] and len(stt.requests) == 1


async def test_a_transient_failure_is_retried(event_log: EventLog) -> None:
    await session(event_log, "s1", WHISPERX, 1)
    down = HashingSTT(EngineError("replica died", code=ErrorCode.STT_FAILED, transient=True))
    worker = RefineWorker(event_log, down, consumer="a")
    [_, delivery] = await every_delivery(worker.reader)
    with pytest.raises(EngineError):
        await worker.handle(delivery)
    assert refined(await event_log.read_all("s1")) == []
    await RefineWorker(event_log, HashingSTT(), consumer="b").handle(delivery)
    assert len(refined(await event_log.read_all("s1"))) == 1


async def test_running_worker_refines_live_utterances(event_log: EventLog, redis: Redis) -> None:
    """The worker loop: utterances appended while it runs are refined, entries acked."""
    await session(event_log, "s1", WHISPERX, 0)
    worker = RefineWorker(event_log, HashingSTT(), consumer="a", block_ms=20)
    # the group the worker creates as it starts, there before the first look at it
    # (on a busy machine the worker's task may not have run yet)
    await worker.reader.ensure_group()
    worker.start()
    try:
        for i in range(3):
            await event_log.append(utterance("s1", f"t{i}", i))
            await event_log.append(
                TranscriptFinal.model_validate(
                    {"session_id": "s1", "turn_id": f"t{i}", "data": {"text": "realtime"}}
                )
            )
        for _ in range(1000):
            done = len(refined(await event_log.read_all("s1"))) == 3
            pending = await redis.xpending(event_log.feed_key_for("s1"), "refine")
            if done and pending["pending"] == 0:
                break
            await asyncio.sleep(0.01)
    finally:
        await worker.stop()
    events = await event_log.read_all("s1")
    assert len(refined(events)) == 3
    assert (await redis.xpending(event_log.feed_key_for("s1"), "refine"))["pending"] == 0
