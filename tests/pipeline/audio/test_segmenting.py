"""Segmentation as a stream: endpointing over async pairs, and over audio with a detector;
push-to-talk commits in either.

Made-up probabilities and a loudness "detector", so every rule is checked exactly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np

from pipeline.audio import (
    Commit,
    SpeechEnd,
    SpeechStart,
    endpoint_stream,
    segment_speech,
)
from pipeline.engines import VoiceActivityDetector
from tests.support.frames import CONFIG, FRAME, MS, frame_at, stream_slice

Item = tuple[bytes, float] | Commit


async def items(*parts: Item | list[Item]) -> AsyncIterator[Item]:
    for part in parts:
        for item in part if isinstance(part, list) else [part]:
            yield item


def pairs(probabilities: list[float], first: int = 0) -> list[Item]:
    """Frames ``first``, ``first + 1``, ... with these probabilities."""
    return [(frame_at(first + i), p) for i, p in enumerate(probabilities)]


async def test_endpoint_stream_async_convenience() -> None:
    async def pairs() -> AsyncIterator[tuple[bytes, float]]:
        for index, probability in enumerate([0.0] * 4 + [0.9] * 8):
            yield frame_at(index), probability

    events = [e async for e in endpoint_stream(pairs(), CONFIG)]
    assert [type(e) for e in events] == [SpeechStart, SpeechEnd]
    assert events[1].reason == "flush"  # type: ignore[union-attr]


class LoudnessDetector(VoiceActivityDetector):
    """A stand-in detector: loud frames are speech. Records how frames arrive."""

    name = "loudness"

    def __init__(self) -> None:
        self.frames_seen = 0
        self.closed = False

    async def probabilities(self, frames: AsyncIterator[bytes]) -> AsyncIterator[float]:
        try:
            async for frame in frames:
                assert len(frame) == self.frame_samples * 2
                self.frames_seen += 1
                samples = np.frombuffer(frame, dtype="<i2").astype(np.float32)
                yield 1.0 if np.abs(samples).mean() > 1000 else 0.0
        finally:
            self.closed = True


async def test_segment_speech_joins_assembler_detector_and_endpointer() -> None:
    quiet = np.zeros(16000, dtype="<i2").tobytes()  # 1 s
    loud = (np.ones(8000) * 8000).astype("<i2").tobytes()  # 0.5 s
    audio = quiet + loud + quiet

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(audio), 777):
            yield audio[i : i + 777]

    detector = LoudnessDetector()
    events = [e async for e in segment_speech(chunks(), detector)]
    assert [type(e) for e in events] == [SpeechStart, SpeechEnd]
    start, end = events
    assert isinstance(start, SpeechStart) and isinstance(end, SpeechEnd)
    assert abs(start.audio_ms - 1000) <= MS
    assert abs(end.audio_ms - 1500) <= MS
    assert detector.closed


async def test_segment_speech_closes_the_detector_when_abandoned() -> None:
    async def endless() -> AsyncIterator[bytes]:
        loud = (np.ones(512) * 8000).astype("<i2").tobytes()
        while True:
            yield loud

    detector = LoudnessDetector()
    events = segment_speech(endless(), detector)
    first = await events.__anext__()
    assert isinstance(first, SpeechStart)
    await events.aclose()  # type: ignore[attr-defined]
    assert detector.closed


# --- push-to-talk commits ---------------------------------------------------------------


async def test_a_commit_ends_the_utterance_in_progress_and_comes_back() -> None:
    commit = Commit()
    source = items(pairs([0.0] * 4 + [0.9] * 8), commit, pairs([0.0] * 3 + [0.9] * 6, 12))
    events = [e async for e in endpoint_stream(source, CONFIG)]
    assert [type(e) for e in events] == [SpeechStart, SpeechEnd, Commit, SpeechStart, SpeechEnd]
    _, end, back, again, _ = events
    assert back is commit
    assert isinstance(end, SpeechEnd) and end.reason == "flush"
    assert end.audio_ms == 12 * MS and end.start_ms == 2 * MS
    assert end.audio == stream_slice(2 * FRAME, 10 * FRAME)
    assert again == SpeechStart(audio_ms=3 * MS)  # the commit restarted the stream clock


async def test_a_commit_with_no_speech_heard_takes_everything_since_the_last_one() -> None:
    first, second, third = Commit(), Commit(), Commit()
    source = items(pairs([0.0] * 6), first, pairs([0.2] * 3, 6), second, third)
    events = [e async for e in endpoint_stream(source, CONFIG)]
    assert [type(e) for e in events] == [SpeechEnd, Commit, SpeechEnd, Commit, Commit]
    one, two = events[0], events[2]
    assert isinstance(one, SpeechEnd) and isinstance(two, SpeechEnd)
    assert one.audio == stream_slice(0, 6 * FRAME) and one.reason == "flush"
    assert two.audio == stream_slice(6 * FRAME, 3 * FRAME)
    assert two.duration_s == 3 * FRAME / 16000
    assert (one.audio_ms, one.start_ms) == (0, 0)  # stamped at the restarted clock's zero
    assert events[1:] == [first, two, second, third]  # nothing since: nothing to commit


async def test_a_commit_after_the_detector_cut_an_utterance_commits_nothing() -> None:
    commit = Commit()
    source = items(pairs([0.0] * 2 + [0.9] * 6 + [0.0] * 8), commit)
    events = [e async for e in endpoint_stream(source, CONFIG)]
    assert [type(e) for e in events] == [SpeechStart, SpeechEnd, Commit]
    assert isinstance(events[1], SpeechEnd) and events[1].reason == "silence"


async def test_unheard_audio_is_kept_for_at_most_one_utterance() -> None:
    config = CONFIG.model_copy(update={"max_utterance_s": 4 * MS / 1000})
    events = [e async for e in endpoint_stream(items(pairs([0.0] * 10), Commit()), config)]
    end = events[0]
    assert isinstance(end, SpeechEnd)
    assert end.audio == stream_slice(6 * FRAME, 4 * FRAME)  # the newest 4 frames


def loud(seconds: float) -> bytes:
    return (np.ones(int(seconds * 16000)) * 8000).astype("<i2").tobytes()


def quiet(seconds: float) -> bytes:
    return bytes(2 * int(seconds * 16000))


async def test_a_commit_passes_an_idle_detector_at_once() -> None:
    queue: asyncio.Queue[bytes | Commit] = asyncio.Queue()

    async def live() -> AsyncIterator[bytes | Commit]:  # a socket: never ends by itself
        while True:
            yield await queue.get()

    detector = LoudnessDetector()
    commit = Commit()
    for item in (quiet(0.3), loud(0.5), commit):  # 25 whole frames, then the commit
        queue.put_nowait(item)
    events = segment_speech(live(), detector)
    seen = []
    async with asyncio.timeout(5):
        async for event in events:
            seen.append(event)
            if event is commit:
                break
    assert [type(e) for e in seen] == [SpeechStart, SpeechEnd, Commit]
    assert isinstance(seen[1], SpeechEnd) and seen[1].reason == "flush"
    assert detector.frames_seen == 25
    await events.aclose()
    assert detector.closed


class ReadAheadDetector(LoudnessDetector):
    """Takes two frames before it gives the first one's probability (a batching model)."""

    async def probabilities(self, frames: AsyncIterator[bytes]) -> AsyncIterator[float]:
        held: list[bytes] = []
        try:
            async for frame in frames:
                held.append(frame)
                self.frames_seen += 1
                if len(held) == 2:
                    for one in held:
                        yield loudness(one)
                    held.clear()
            for one in held:
                yield loudness(one)
        finally:
            self.closed = True


def loudness(frame: bytes) -> float:
    samples = np.frombuffer(frame, dtype="<i2").astype(np.float32)
    return 1.0 if np.abs(samples).mean() > 1000 else 0.0


async def test_a_detector_that_reads_ahead_gets_the_same_segments() -> None:
    commit = Commit()
    audio = [quiet(0.2), loud(0.4), commit, loud(0.3), quiet(0.7), loud(0.41), commit, quiet(0.1)]

    async def chunks() -> AsyncIterator[bytes | Commit]:
        for item in audio:
            yield item

    lockstep = [e async for e in segment_speech(chunks(), LoudnessDetector())]
    ahead = [e async for e in segment_speech(chunks(), ReadAheadDetector())]
    assert [type(e) for e in lockstep] == [
        SpeechStart, SpeechEnd, Commit, SpeechStart, SpeechEnd, SpeechStart, SpeechEnd, Commit,
    ]
    assert ahead == lockstep
