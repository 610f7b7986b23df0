"""The VAD's silence gate: quiet frames after a settled run skip the model.

With a stand-in ONNX session (counting its calls): the model hears the first
``silence_gate_frames`` quiet frames and no more until a louder one, the skipped frames
repeat the last probability, the stream's state is kept across them, and a gated stream
holds no other stream's batch. With the real model: speech segments are the same with the
gate on and off, over digital silence and a faint noise floor, with fewer model steps.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from pipeline.audio import EndpointConfig, segment_speech
from pipeline.engines.vad._silero_stream import _SilenceGate
from pipeline.engines.vad.silero import SileroVoiceActivityDetector
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

SILENCE = bytes(1024)


async def answers(detector: SileroVoiceActivityDetector, frames: list[bytes]) -> list[float]:
    async def feed() -> Any:
        for item in frames:
            yield item

    return [p async for p in detector.probabilities(feed())]


@pytest.mark.parametrize("batch_max_items", [1, 8])
async def test_quiet_frames_skip_the_model_once_it_settled(batch_max_items: int) -> None:
    session = StandIn()
    detector = stand_in_detector(session, batch_max_items=batch_max_items,
                                 silence_gate_frames=4)
    faint = frame(0.0002)  # -74 dBFS: the stand-in's "probability" 0.0002, not 0
    frames = [frame(0.25)] * 3 + [faint] * 10 + [frame(0.125)] + [faint] * 2
    got = await asyncio.wait_for(answers(detector, frames), HANG)

    # 3 loud, 4 quiet to settle, the loud one, then 2 quiet (a new run: heard again)
    assert len(session.calls) == 3 + 4 + 1 + 2
    assert len(got) == len(frames)
    assert got[:3] == pytest.approx([0.25] * 3, abs=1e-3)
    assert got[3:7] == pytest.approx([0.0002] * 4, abs=1e-4)  # heard by the model
    assert got[7:13] == [0.0] * 6  # skipped: silence, never speech
    assert got[13] == pytest.approx(0.125, abs=1e-3)
    assert got[14:] == pytest.approx([0.0002] * 2, abs=1e-4)


async def test_a_skipped_frame_keeps_the_state_and_moves_the_context() -> None:
    detector = stand_in_detector(StandIn(), batch_max_items=1, silence_gate_frames=1)
    stream = detector.stream()
    gate = _SilenceGate(-60.0, 1)
    assert not gate.skips(frame(0.25))
    assert not gate.skips(SILENCE)  # the one quiet frame the model still hears
    quiet = (np.arange(512) % 3).astype("<i2").tobytes()  # about -85 dBFS, not zeros
    assert gate.skips(quiet)
    before = stream.state.copy()
    stream.hold(quiet)
    assert np.array_equal(stream.state, before)
    assert np.allclose(stream.context * 32768, np.arange(448, 512) % 3)
    assert gate.skips(SILENCE)  # digital silence: quiet, whatever the floor
    stream.hold(SILENCE)
    assert np.array_equal(stream.state, before) and not stream.context.any()
    stream.hold(quiet)  # the zero context is shared, never written: the next is its own
    assert np.allclose(stream.context * 32768, np.arange(448, 512) % 3)


def test_the_floor_is_an_rms_in_dbfs() -> None:
    def tone(dbfs: float) -> bytes:
        wave = np.sin(np.arange(512) * 0.3) * np.sqrt(2) * 32768 * 10 ** (dbfs / 20)
        return np.rint(wave).astype("<i2").tobytes()

    gate = _SilenceGate(-60.0, 0)
    assert gate.skips(tone(-66.0))
    assert not gate.skips(tone(-54.0))
    assert not _SilenceGate(None, 0).skips(SILENCE)  # off: every frame is heard


async def test_no_gate_hears_every_frame() -> None:
    session = StandIn()
    detector = stand_in_detector(session, batch_max_items=1, silence_gate=False)
    await asyncio.wait_for(answers(detector, [SILENCE] * 20), HANG)
    assert len(session.calls) == 20


async def test_a_gated_stream_holds_no_batch() -> None:
    detector = stand_in_detector(StandIn(), batch_max_items=8, silence_gate_frames=2)
    quiet, talking = Feed(), Feed()
    quiet_out = detector.probabilities(quiet.frames())
    talking_out = detector.probabilities(talking.frames())
    talking.queue.put_nowait(frame(0.25))
    quiet.queue.put_nowait(frame(0.25))
    await asyncio.wait_for(asyncio.gather(anext(quiet_out), anext(talking_out)), HANG)
    assert detector._shared is not None
    batcher = detector._shared.batcher
    assert batcher.max_items == 2
    for _ in range(3):  # two quiet frames settle it, the third is skipped
        quiet.queue.put_nowait(SILENCE)
        await asyncio.wait_for(anext(quiet_out), HANG)
    assert batcher.max_items == 1  # the talking stream's frames wait for nobody
    quiet.queue.put_nowait(frame(0.25))  # loud again: counted again
    await asyncio.wait_for(anext(quiet_out), HANG)
    assert batcher.max_items == 2
    for _ in range(3):
        quiet.queue.put_nowait(SILENCE)
        await asyncio.wait_for(anext(quiet_out), HANG)
    await quiet_out.aclose()  # closed while gated: counted out once, not twice
    assert batcher.max_items == 1
    await talking_out.aclose()
    assert detector._shared.open == 0
    await detector.close()


# --- the real model -------------------------------------------------------------------------


def _speech(noise_dbfs: float | None) -> bytes:
    clips = [piper_float(s) for s in ENGLISH_SENTENCES[:3]]
    return compose(clips, [1.5, 0.8, 1.2, 2.0], noise_dbfs=noise_dbfs).pcm16


@pytest.mark.models
@pytest.mark.parametrize("noise_dbfs", [None, -70.0, -60.0])
async def test_speech_is_segmented_the_same_with_the_gate(noise_dbfs: float | None) -> None:
    pcm = _speech(noise_dbfs)

    async def segments(detector: SileroVoiceActivityDetector) -> list[Any]:
        events = [(type(e).__name__, e.audio_ms)
                  async for e in segment_speech(frames_of(pcm), detector, EndpointConfig())]
        info = await detector.describe()
        await detector.close()
        return [events, info["batch"]["frames"]]

    heard, steps_heard = await segments(loaded_silero(silence_gate=False))
    gated, steps_gated = await segments(loaded_silero())
    assert gated == heard
    assert len(heard) == 6  # three utterances, each started and stopped
    if noise_dbfs is None or noise_dbfs < -65:  # under the floor: the silences mostly skipped
        assert steps_gated < 0.7 * steps_heard
    else:  # at the floor, some quiet runs settle and some do not: never more steps
        assert steps_gated <= steps_heard
