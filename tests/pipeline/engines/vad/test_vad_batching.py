"""The VAD's cross-session batching: the frames of many streams in one model call.

With the real batched export (``silero-vad``): each stream's probabilities and segments
are those it gets alone (batching is invisible), and the batches really held several
streams. With a stand-in ONNX session (no model): one stream's failing frame fails that
stream only, a stream cancelled while its frame is in a running batch leaves the others'
results and its own state untouched, and a batch never waits for streams that are not open.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.audio import EndpointConfig, segment_speech
from pipeline.engines import create_engine, weights
from pipeline.engines.vad.silero import SileroVoiceActivityDetector
from schemas import EngineError, ErrorCode, InvalidAudioError, ModelMissingError, Settings
from tests.support.audio_fixtures import ENGLISH_SENTENCES, compose, piper_float
from tests.support.silero_model import (
    HANG,
    Feed,
    StandIn,
    frame,
    frames_of,
    loaded_silero,
    stand_in_detector,
)

ROOT = Path(__file__).resolve().parents[4]


async def collect(detector: SileroVoiceActivityDetector, pcm: bytes) -> list[float]:
    return [p async for p in detector.probabilities(frames_of(pcm))]


# --- the real model -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def streams() -> list[bytes]:
    """Five different streams of speech and silence (different lengths and gaps)."""
    clips = [piper_float(s) for s in ENGLISH_SENTENCES[:3]]
    rng = np.random.default_rng(7)
    out = []
    for i in range(5):
        order = [clips[(i + k) % 3] for k in range(1 + i % 3)]
        gaps = [float(g) for g in rng.uniform(0.3, 1.2, len(order) + 1)]
        out.append(compose(order, gaps).pcm16)
    return out


@pytest.mark.models
async def test_each_stream_hears_what_it_hears_alone(streams: list[bytes]) -> None:
    alone = loaded_silero(model="silero-vad", batch_max_items=1)
    assert not alone.batches
    expected = [await collect(alone, pcm) for pcm in streams]

    batched = loaded_silero(model="silero-vad", batch_max_items=64, batch_wait_ms=16)
    assert batched.batches
    got = await asyncio.wait_for(asyncio.gather(*(collect(batched, pcm) for pcm in streams)), HANG)
    info = await batched.describe()
    await batched.close()

    assert info["batch"]["largest"] == len(streams)  # the streams really shared calls
    for mine, theirs in zip(got, expected, strict=True):
        assert len(mine) == len(theirs)
        assert np.allclose(mine, theirs, atol=1e-5)
        assert max(theirs) > 0.9 and min(theirs) < 0.1  # speech and silence, both


@pytest.mark.models
async def test_segments_are_the_same_batched_or_not(streams: list[bytes]) -> None:
    async def segments(detector: SileroVoiceActivityDetector, pcm: bytes) -> list[Any]:
        return [
            (type(e).__name__, e.audio_ms)
            async for e in segment_speech(frames_of(pcm), detector, EndpointConfig())
        ]

    alone = loaded_silero(model="silero-vad", batch_max_items=1)
    batched = loaded_silero(model="silero-vad", batch_wait_ms=16)
    expected = [await segments(alone, pcm) for pcm in streams]
    got = await asyncio.wait_for(asyncio.gather(*(segments(batched, pcm) for pcm in streams)), HANG)
    assert (await batched.describe())["batch"]["largest"] > 1
    await batched.close()
    assert got == expected
    assert all(len(events) >= 2 for events in expected)


@pytest.mark.models
def test_the_batched_export_is_the_default() -> None:
    detector = create_engine("vad", "silero")
    assert isinstance(detector, SileroVoiceActivityDetector)
    assert detector.options.model == "silero-vad" and detector.options.batch_max_items > 1
    try:
        detector.load_sync()
    except ModelMissingError as exc:
        pytest.skip(exc.message)
    assert detector.batches


@pytest.mark.models
def test_the_per_stream_export_never_batches() -> None:
    detector = loaded_silero(model="silero-vad-v6", batch_max_items=64)
    assert not detector.batches  # its first dimension is time: it cannot


# --- a stand-in session ---------------------------------------------------------------------


async def test_one_streams_failing_frame_fails_that_stream_only() -> None:
    session = StandIn()
    detector = stand_in_detector(session)
    feeds = [Feed() for _ in range(3)]
    outs = [detector.probabilities(f.frames()) for f in feeds]
    for feed, value in zip(feeds, (0.25, StandIn.POISON, 0.125), strict=True):
        feed.queue.put_nowait(frame(value))
    first = asyncio.gather(*(anext(o) for o in outs), return_exceptions=True)
    good, broken, other = await asyncio.wait_for(first, HANG)

    assert good == pytest.approx(0.25, abs=1e-3) and other == pytest.approx(0.125, abs=1e-3)
    assert isinstance(broken, EngineError) and broken.code == ErrorCode.VAD_FAILED
    assert session.calls == [3, 1, 1, 1]  # together, then one by one to find the culprit
    # The others go on, each with its state advanced once per frame it was answered.
    for feed in (feeds[0], feeds[2]):
        feed.queue.put_nowait(frame(0.25))
    await asyncio.wait_for(asyncio.gather(anext(outs[0]), anext(outs[2])), HANG)
    assert session.calls[-1] == 2
    for out in (outs[0], outs[2]):
        await out.aclose()


async def test_a_cancelled_stream_never_cancels_the_others_in_its_batch() -> None:
    session = StandIn(hold=True)
    detector = stand_in_detector(session, offload=True)  # the call runs in a thread
    feeds = [Feed() for _ in range(3)]
    streams: list[Any] = []
    real_stream = detector.stream

    def recorded() -> Any:
        streams.append(real_stream())
        return streams[-1]

    detector.stream = recorded  # type: ignore[method-assign]
    outs = [detector.probabilities(f.frames()) for f in feeds]
    for feed in feeds:
        feed.queue.put_nowait(frame(0.25))
    tasks = [asyncio.create_task(anext(o)) for o in outs]
    assert await asyncio.to_thread(session.entered.wait, HANG)  # the batch of 3 is running
    assert session.calls == [3]
    tasks[1].cancel()
    await asyncio.sleep(0)
    session.release.set()
    a, b, c = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), HANG)

    assert isinstance(b, asyncio.CancelledError)
    assert a == pytest.approx(0.25, abs=1e-3) and c == pytest.approx(0.25, abs=1e-3)
    # The cancelled stream's state is as if its frame was never sent; the others moved on.
    assert np.all(streams[1].state == 0)
    assert np.all(streams[0].state == 1) and np.all(streams[2].state == 1)
    for out in outs:
        await out.aclose()
    await detector.close()


async def test_a_batch_waits_only_for_streams_that_are_open() -> None:
    detector = stand_in_detector(StandIn(), batch_max_items=4)
    feeds = [Feed() for _ in range(6)]
    outs = [detector.probabilities(f.frames()) for f in feeds]
    feeds[0].queue.put_nowait(frame(0.1))
    await asyncio.wait_for(anext(outs[0]), HANG)
    assert detector._shared is not None
    batcher = detector._shared.batcher
    assert batcher.max_items == 1  # alone: its frames never wait for company
    for feed, out in zip(feeds[1:], outs[1:], strict=True):
        feed.queue.put_nowait(frame(0.1))
        await asyncio.wait_for(anext(out), HANG)
    assert batcher.max_items == 4  # six open, four at most a call
    for out in outs[2:]:
        await out.aclose()
    assert batcher.max_items == 2
    for out in outs[:2]:
        await out.aclose()
    assert batcher.max_items == 1
    await detector.close()


async def test_a_wrong_frame_fails_its_stream_before_any_batch() -> None:
    session = StandIn()
    detector = stand_in_detector(session)
    feed = Feed()
    out = detector.probabilities(feed.frames())
    feed.queue.put_nowait(b"\x00" * 1000)
    with pytest.raises(InvalidAudioError) as info:
        await asyncio.wait_for(anext(out), HANG)
    assert info.value.code == ErrorCode.INVALID_AUDIO
    assert session.calls == []


def test_settings_reach_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXLINE_VAD__BATCH_MAX_ITEMS", "1")
    monkeypatch.setenv("VOXLINE_VAD__BATCH_WAIT_MS", "2.5")
    settings = Settings()
    detector = create_engine("vad", settings.vad.engine, settings.vad.engine_options())
    assert isinstance(detector, SileroVoiceActivityDetector)
    assert detector.options.batch_max_items == 1 and detector.options.batch_wait_ms == 2.5


def test_the_batched_model_installs_without_torch() -> None:
    """The wheel declares torch; the install hint, setup and the image leave it out."""
    entry = weights.find("silero-vad")
    assert entry is not None and "--no-deps" in entry.install
    wheel = entry.install.split()[-1]
    assert wheel in (ROOT / "scripts" / "setup.sh").read_text()
    assert f'--no-deps "{wheel}"' in (ROOT / "cluster" / "Dockerfile").read_text()
