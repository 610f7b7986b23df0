"""A session's speech input on its own: resampling, the bounded frame queue, push-to-talk
commits that wait for their utterance, the detector's failure, closing.

A loudness "detector" stands in for Silero; the callbacks record what the session would
be told.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import numpy as np
import pytest

from pipeline.audio import EndpointConfig, SpeechEnd
from pipeline.engines import VoiceActivityDetector
from pipeline.session import FRAME_QUEUE, SpeechInput, endpoint_config

HANG = 5.0  # seconds; only reached when the code under test hangs


class Loudness(VoiceActivityDetector):
    """Loud frames are speech; can be held (a gate) or made to fail on frame ``fail_at``."""

    name = "loudness"

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at = fail_at
        self.gate = asyncio.Event()
        self.gate.set()
        self.frames = 0
        self.received = 0  # frames taken from the input, the one waiting at the gate too
        self.closed = False

    async def probabilities(self, frames: AsyncIterator[bytes]) -> AsyncIterator[float]:
        try:
            async for frame in frames:
                self.received += 1
                await self.gate.wait()
                if self.frames == self.fail_at:
                    raise RuntimeError("the detector broke")
                self.frames += 1
                samples = np.frombuffer(frame, dtype="<i2").astype(np.float32)
                yield 1.0 if np.abs(samples).mean() > 1000 else 0.0
        finally:
            self.closed = True


class Heard:
    """The callbacks: what the session is told, in order."""

    def __init__(self, slow_s: float = 0.0, fail: int = 0) -> None:
        self.slow_s = slow_s
        self.fail = fail  # utterances to refuse first, as a log that is down would
        self.events: list[tuple[str, object]] = []
        self.spoke = asyncio.Event()

    async def speech(self, audio_ms: int) -> None:
        self.events.append(("speech", audio_ms))
        self.spoke.set()

    async def utterance(self, end: SpeechEnd, rate: int) -> None:
        await asyncio.sleep(self.slow_s)  # a session appends and starts a response here
        if self.fail:
            self.fail -= 1
            raise ConnectionError("the log is down")
        self.events.append(("utterance", (end, rate)))

    def utterances(self) -> list[tuple[SpeechEnd, int]]:
        return [u for kind, u in self.events if kind == "utterance"]  # type: ignore[misc]


def tone(seconds: float, loud: bool, rate: int = 16000) -> bytes:
    n = int(seconds * rate)
    return (np.ones(n) * (8000 if loud else 0)).astype("<i2").tobytes()


def speech_input(
    vad: Loudness, heard: Heard, *, rate: int = 16000, silence_ms: int = 500
) -> SpeechInput:
    return SpeechInput(vad, endpoint_config(EndpointConfig(), silence_ms), sample_rate=rate,
                       on_speech=heard.speech, on_utterance=heard.utterance)


async def push_all(audio: SpeechInput, pcm: bytes, chunk: int = 640) -> None:
    for start in range(0, len(pcm), chunk):
        await audio.push(pcm[start : start + chunk])


def test_the_session_sets_the_silence_and_caps_the_padding_by_it() -> None:
    config = endpoint_config(EndpointConfig(post_padding_ms=200), 150)
    assert (config.min_silence_ms, config.post_padding_ms) == (150, 150)
    assert endpoint_config(EndpointConfig(post_padding_ms=200), 900).post_padding_ms == 200


async def test_audio_at_the_session_rate_is_endpointed_at_the_detectors() -> None:
    heard = Heard()
    audio = speech_input(Loudness(), heard, rate=48000)
    await push_all(audio, tone(0.3, False, 48000) + tone(1.0, True, 48000)
                   + tone(0.8, False, 48000), chunk=1920)
    await audio.commit()  # every frame pushed so far endpointed: the VAD cut is in
    [(kind, _), (_, (end, rate))] = heard.events  # type: ignore[misc]
    assert kind == "speech" and rate == 16000
    assert isinstance(end, SpeechEnd) and end.reason == "silence"
    assert 1.0 <= end.duration_s <= 1.6
    await audio.close()


async def test_a_phone_lines_8_khz_reaches_the_detector_without_being_held_back() -> None:
    """Upsampled input is not held back for a filter's look-ahead (soxr's HQ kept ~60 ms of
    8 kHz audio back): the detector has every whole frame of what was pushed, so a pause is
    heard when it happens."""
    vad = Loudness()
    vad.gate.clear()  # frames stay queued: the queue shows what the resampler let through
    audio = speech_input(vad, Heard(), rate=8000)
    await push_all(audio, tone(1.0, True, 8000), chunk=320)  # 20 ms at a time, as a call
    assert audio.queued + vad.received == 16000 // 512  # 31 of 32 ms: all but the last
    await audio.close()


async def test_commit_returns_once_its_utterance_is_handled() -> None:
    heard = Heard(slow_s=0.05)
    audio = speech_input(Loudness(), heard)
    await push_all(audio, tone(0.5, False))  # nothing heard: the commit takes it all
    await audio.commit()
    [(end, rate)] = heard.utterances()
    assert end.reason == "flush" and rate == 16000
    assert len(end.audio) == 0.5 * 16000 * 2 // 1024 * 1024  # whole frames only
    await audio.commit()  # nothing since: nothing to commit
    assert len(heard.utterances()) == 1
    await audio.close()


async def test_a_full_queue_holds_the_pusher_back() -> None:
    vad = Loudness()
    vad.gate.clear()  # the detector stalls on its first frame
    audio = speech_input(vad, Heard())
    frame = tone(512 / 16000, False)
    pusher = asyncio.create_task(push_all(audio, frame * (FRAME_QUEUE + 20), chunk=len(frame)))
    await asyncio.sleep(0.05)
    assert not pusher.done()
    assert audio.queued == FRAME_QUEUE  # bounded: the rest waits in push()
    vad.gate.set()
    async with asyncio.timeout(HANG):
        await pusher
        await audio.commit()
    assert vad.frames == FRAME_QUEUE + 20
    await audio.close()


async def test_the_detectors_failure_surfaces_on_the_next_push_and_commit() -> None:
    vad = Loudness(fail_at=3)
    audio = speech_input(vad, Heard())
    await push_all(audio, tone(0.5, False))
    async with asyncio.timeout(HANG):  # a commit does not wait for a dead detector
        with pytest.raises(RuntimeError, match="the detector broke"):
            await audio.commit()
    with pytest.raises(RuntimeError, match="the detector broke"):
        await audio.push(tone(0.1, False))
    assert vad.closed
    await audio.close()


async def test_a_failed_utterance_is_raised_once_and_the_input_goes_on() -> None:
    heard = Heard(fail=2)
    audio = speech_input(Loudness(), heard)
    await push_all(audio, tone(0.3, False))
    with pytest.raises(ConnectionError):  # this commit's utterance could not be handled
        await audio.commit()
    await push_all(audio, tone(0.6, True) + tone(0.8, False))  # cut by the detector: fails
    with pytest.raises(ConnectionError):  # ...and the next call says so, once
        await audio.commit()
    await audio.commit()
    await push_all(audio, tone(0.6, True) + tone(0.8, False))
    await audio.commit()
    assert len(heard.utterances()) == 1  # still listening
    await audio.close()


async def test_close_stops_the_detector_mid_stream() -> None:
    vad = Loudness()
    heard = Heard()
    audio = speech_input(vad, heard)
    await push_all(audio, tone(0.5, True))
    async with asyncio.timeout(HANG):
        await heard.spoke.wait()  # the detector is running
    vad.gate.clear()
    await push_all(audio, tone(0.2, True))  # queued, and the detector held on it
    await audio.close()
    assert vad.closed and [kind for kind, _ in heard.events] == ["speech"]


class SwallowsCancel(Heard):
    """An utterance callback that swallows the cancel it is waiting in, as a log append can
    (redis-py's reads on CPython 3.11: see :func:`pipeline.aio.reraise_lost_cancel`)."""

    def __init__(self) -> None:
        super().__init__()
        self.appending = asyncio.Event()

    async def utterance(self, end: SpeechEnd, rate: int) -> None:
        self.appending.set()
        # an append that only the cancel ends, and the cancel lost there (the task still
        # counts the request: Task.cancelling())
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        self.events.append(("utterance", (end, rate)))


async def test_close_returns_when_a_callback_lost_its_cancel() -> None:
    heard = SwallowsCancel()
    audio = speech_input(Loudness(), heard)
    await push_all(audio, tone(0.3, False) + tone(0.6, True) + tone(0.8, False))
    async with asyncio.timeout(HANG):
        await heard.appending.wait()
    # not under a timeout: close() must not be the one cancelled
    closing = asyncio.ensure_future(audio.close())
    done, _ = await asyncio.wait({closing}, timeout=HANG)
    assert done, "close() waited for frames that never come"
    assert len(heard.utterances()) == 1


async def test_close_is_cancelled_with_its_caller() -> None:
    vad = Loudness()
    vad.gate.clear()  # the detector holds its frame: stopping it takes a moment
    heard = SwallowsCancel()
    audio = speech_input(vad, heard)
    await push_all(audio, tone(0.3, True))
    closing = asyncio.ensure_future(audio.close())
    await asyncio.sleep(0)
    closing.cancel()  # the session closing this input is itself cancelled
    with pytest.raises(asyncio.CancelledError):
        await closing
