"""faster-whisper's cross-request batching: invisible to each request (real tiny.en).

Utterances submitted together go through one batched CTranslate2 call (the batcher's own
promises are held by tests/pipeline/aio/test_batcher.py); here, its wiring in the engine:
the same segments with batching on and off, one request's failure or cancel is its own,
the batch bounds come from the options, and what is not a voice turn keeps the streaming
path. Batches are closed by size (``batch_max_items`` = the number submitted) or by gates,
never by the clock.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from pipeline.engines import create_engine
from pipeline.engines.stt._whisper_windows import Utterance
from pipeline.engines.stt.faster_whisper import FasterWhisperTranscriber
from schemas import (
    EngineError,
    ErrorCode,
    InvalidAudioError,
    TranscriptionRequest,
    TranscriptSegment,
)
from tests.support.audio_fixtures import piper_pcm16

pytestmark = pytest.mark.models

SENTENCES = (
    "Please send me the report before the meeting.",
    "What time does the train leave tomorrow?",
    "Turn off the lights in the kitchen.",
    "How far is the nearest station from here?",
    "Remind me to call my sister tonight.",
    "Can you play some quiet music while I read?",
)
HANG_S = 60  # bounds a hang only


def _load(**options: Any) -> Iterator[FasterWhisperTranscriber]:
    engine = create_engine(
        "stt", "faster-whisper", {"model": "whisper-tiny.en", "cpu_threads": 2, **options}
    )
    assert isinstance(engine, FasterWhisperTranscriber)
    engine.load_sync()
    yield engine
    asyncio.run(engine.close())


@pytest.fixture(scope="module")
def unbatched() -> Iterator[FasterWhisperTranscriber]:
    yield from _load(batch_max_items=1)


@pytest.fixture(scope="module")
def batched() -> Iterator[FasterWhisperTranscriber]:
    # a batch closes when it holds every utterance a test submits (or after 200 ms)
    yield from _load(batch_max_items=3, batch_wait_ms=200)


@pytest.fixture(scope="module")
def clips() -> list[bytes]:
    return [piper_pcm16(text) for text in SENTENCES]


def request(pcm: bytes, **kwargs: Any) -> TranscriptionRequest:
    return TranscriptionRequest(audio=pcm, sample_rate=16000, **kwargs)


async def segments(
    engine: FasterWhisperTranscriber, req: TranscriptionRequest
) -> list[TranscriptSegment]:
    return [s async for s in engine.transcribe(req)]


async def together(
    engine: FasterWhisperTranscriber, requests: Sequence[TranscriptionRequest]
) -> list[list[TranscriptSegment] | BaseException]:
    async with asyncio.timeout(HANG_S):
        return await asyncio.gather(
            *(segments(engine, r) for r in requests), return_exceptions=True
        )


def sizes(engine: FasterWhisperTranscriber) -> dict[int, int]:
    return dict(engine.batcher.stats.sizes) if engine.batcher else {}


async def test_batched_segments_are_the_unbatched_ones(
    unbatched: FasterWhisperTranscriber, clips: list[bytes]
) -> None:
    """Six utterances (and silence) in batches of up to six: each request's segments,
    times included, are exactly what the streaming path gives it alone."""
    engine = FasterWhisperTranscriber(
        model="whisper-tiny.en", cpu_threads=2, batch_max_items=7, batch_wait_ms=200, warmup=False
    )
    await engine.load()
    try:
        requests = [request(pcm) for pcm in clips] + [request(bytes(32000))]
        alone = [await segments(unbatched, r) for r in requests]
        assert unbatched.batcher is None  # batch_max_items=1: never batched
        assert all(alone[:-1]) and alone[-1] == []
        assert await together(engine, requests) == alone
        assert sizes(engine) == {7: 1}
        # and in batches of every size from one to six, in another order
        for n in range(1, 7):
            picked = requests[n - 1 :: -1]
            assert await together(engine, picked) == alone[n - 1 :: -1], f"batch of {n}"
    finally:
        await engine.close()


async def test_a_failing_item_fails_only_its_request(
    batched: FasterWhisperTranscriber,
    unbatched: FasterWhisperTranscriber,
    clips: list[bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected = [await segments(unbatched, request(pcm)) for pcm in clips[:2]]
    # refused before it is batched: the other two still share a call
    before = sizes(batched).get(2, 0)
    results = await together(
        batched, [request(clips[0]), request(b"\x01" * 3201), request(clips[1])]
    )
    assert isinstance(results[1], InvalidAudioError)
    assert [results[0], results[2]] == expected
    assert sizes(batched)[2] == before + 1
    # failing inside the batch (its audio cannot be converted): that item alone
    bad = b"\x02\x00" * 16000
    convert = FasterWhisperTranscriber._audio

    def audio(pcm: bytes, rate: int) -> Any:
        if pcm == bad:
            raise ValueError("cannot convert")
        return convert(pcm, rate)

    monkeypatch.setattr(batched, "_audio", audio)
    before = sizes(batched).get(3, 0)
    results = await together(batched, [request(clips[0]), request(bad), request(clips[1])])
    assert isinstance(results[1], EngineError) and results[1].code is ErrorCode.STT_FAILED
    assert [results[0], results[2]] == expected
    assert sizes(batched)[3] == before + 1
    assert batched.batcher is not None and batched.batcher.stats.split_after_failure == 0


async def test_a_failing_model_call_is_retried_one_by_one(
    batched: FasterWhisperTranscriber,
    unbatched: FasterWhisperTranscriber,
    clips: list[bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch whose model call raises is run again item by item: only the item that
    breaks the model fails."""
    expected = await segments(unbatched, request(clips[2]))
    run = FasterWhisperTranscriber._batch_sync
    bad = request(clips[3])

    def batch(items: Sequence[Utterance], *window: Any) -> Any:
        if any(item.request is bad for item in items):
            raise RuntimeError("the model broke")
        return run(batched, items, *window)

    monkeypatch.setattr(batched, "_batch_sync", batch)
    # the module's tests share the engine; its batcher is made by its first batched call,
    # which may be this test's (alone, or on a worker of its own under pytest-xdist)
    splits = batched.batcher.stats.split_after_failure if batched.batcher is not None else 0
    results = await together(batched, [request(clips[2]), bad, request(clips[2])])
    assert results[0] == results[2] == expected
    assert isinstance(results[1], EngineError) and results[1].code is ErrorCode.STT_FAILED
    assert batched.batcher is not None
    assert batched.batcher.stats.split_after_failure == splits + 1


async def test_a_cancelled_request_never_cancels_another_in_its_batch(
    batched: FasterWhisperTranscriber,
    unbatched: FasterWhisperTranscriber,
    clips: list[bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected = [await segments(unbatched, request(pcm)) for pcm in clips[:3]]
    run = FasterWhisperTranscriber._batch_sync
    entered, release = threading.Event(), threading.Event()

    def gated(items: Sequence[Utterance], *window: Any) -> Any:
        entered.set()
        assert release.wait(HANG_S)
        return run(batched, items, *window)

    monkeypatch.setattr(batched, "_batch_sync", gated)
    async with asyncio.timeout(HANG_S):
        # cancelled while its batch runs: the others get their segments
        tasks = [asyncio.create_task(segments(batched, request(pcm))) for pcm in clips[:3]]
        assert await asyncio.to_thread(entered.wait, HANG_S)
        tasks[1].cancel()
        release.set()
        assert [await tasks[0], await tasks[2]] == [expected[0], expected[2]]
        with pytest.raises(asyncio.CancelledError):
            await tasks[1]
        # cancelled while it waits for a batch (behind a running one): dropped from it
        entered.clear()
        release.clear()
        before = sizes(batched).get(2, 0)
        first = asyncio.create_task(segments(batched, request(clips[0])))
        assert await asyncio.to_thread(entered.wait, HANG_S)  # the worker is held
        waiting = [asyncio.create_task(segments(batched, request(pcm))) for pcm in clips[:3]]
        for _ in range(10_000):  # the three submit on their first steps
            if batched.batcher is not None and batched.batcher.pending == 3:
                break
            await asyncio.sleep(0)
        assert batched.batcher is not None and batched.batcher.pending == 3
        waiting[0].cancel()
        release.set()
        assert await first == expected[0]
        assert [await waiting[1], await waiting[2]] == expected[1:]
        with pytest.raises(asyncio.CancelledError):
            await waiting[0]
        assert sizes(batched)[2] == before + 1  # the cancelled one never ran
    assert not batched.busy


async def test_the_options_set_the_batch_bounds_and_a_lone_request_goes(
    clips: list[bytes],
) -> None:
    engine = FasterWhisperTranscriber(
        model="whisper-tiny.en", batch_max_items=5, batch_wait_ms=40, warmup=False
    )
    await engine.load()
    try:
        async with asyncio.timeout(HANG_S):  # waits for company 40 ms at most
            assert await segments(engine, request(clips[0]))
        assert engine.batcher is not None
        assert (engine.batcher.max_items, engine.batcher.max_wait_s) == (5, 0.04)
        assert sizes(engine) == {1: 1}
    finally:
        await engine.close()
    defaults = FasterWhisperTranscriber.Options()
    assert defaults.batch_wait_ms <= 50  # tens of ms at most: the turn's latency


async def test_what_is_not_a_voice_turn_keeps_the_streaming_path(
    batched: FasterWhisperTranscriber,
    clips: list[bytes],
) -> None:
    assert batched.batcher is not None
    items = batched.batcher.stats.items
    long_pcm = b"".join(clips) * 3  # over 30 s: more than one window
    for req in (
        request(clips[0], word_timestamps=True),
        request(clips[0], prompt="Kitchen."),
        request(clips[0], temperature=0.5),
        request(long_pcm),
    ):
        assert await segments(batched, req)
    assert batched.batcher.stats.items == items
