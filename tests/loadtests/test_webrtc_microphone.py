"""The benchmark caller's microphone says when what it was given went out: the start of
the frame that held it, however late aiortc asked for that frame."""

from __future__ import annotations

import asyncio

import pytest

from loadtests._webrtc_call import Microphone, WebRtcCaller
from pipeline.webrtc import CALL_RATE

FRAME = CALL_RATE // 50


async def test_what_was_said_is_timed_by_the_frames_that_went_out(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from loadtests import _webrtc_call

    clock = [10.0]
    monkeypatch.setattr(_webrtc_call.time, "perf_counter", lambda: clock[0])
    mic = Microphone()
    await mic.recv()  # silence: nothing said, nothing noted
    assert mic.sent == [] and mic.said_at(0) is None
    await mic.play(None, b"\1\0" * (3 * FRAME))  # 60 ms
    for n in range(3):
        clock[0] = 10.5 + 0.02 * n  # each frame asked for half a second late
        await mic.recv()
    assert mic.sent == [(10.5, 20), (10.52, 40), (10.54, 60)]
    assert mic.said_at(0) == pytest.approx(10.5)
    assert mic.said_at(30) == pytest.approx(10.53)  # 10 ms into the second frame
    assert mic.said_at(61) is None  # not said yet
    mic.stop()


async def test_a_caller_times_its_last_say_from_where_it_began() -> None:
    caller = WebRtcCaller()
    try:
        await caller.mic.play(None, b"\1\0" * FRAME)  # something said before
        await caller.mic.recv()
        await caller.say(b"\1\0" * (2 * FRAME), CALL_RATE)
        await asyncio.wait_for(caller.mic.recv(), 1.0)
        _, (second_at, _) = caller.mic.sent
        assert caller.said_at(0) == pytest.approx(second_at)  # this say's first frame
        assert caller.said_at(0.01) == pytest.approx(second_at + 0.01)
    finally:
        await caller.close()
