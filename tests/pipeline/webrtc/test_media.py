"""The audio of a WebRTC call: the reply's track (paced frames, silence, bounded buffer,
clear, pause), the microphone's downmix, the jitter buffer held (a player's) and the
caller's packets in order (the server's)."""

from __future__ import annotations

import asyncio
import fractions
from types import SimpleNamespace

import numpy as np
import pytest
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

from pipeline.webrtc import (
    CALL_RATE,
    InOrderBuffer,
    ReplyTrack,
    hold_packets,
    listen_in_order,
    microphone,
)

FRAME = CALL_RATE // 50


def _samples(frame: AudioFrame) -> np.ndarray:
    return frame.to_ndarray().reshape(-1)


def _track_clock(monkeypatch: pytest.MonkeyPatch) -> tuple[list[float], list[float]]:
    """The track's own clock (from 100.0) and its pacing sleeps, which move that clock and
    are noted (rounded to µs); the event loop's stay real, so its timeouts run."""
    from pipeline.webrtc import media

    clock = [100.0]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(round(seconds, 6))
        clock[0] += seconds

    monkeypatch.setattr(media, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    monkeypatch.setattr(media, "asyncio", SimpleNamespace(
        sleep=sleep, timeout=asyncio.timeout, Event=asyncio.Event))
    return clock, waits


async def test_the_reply_track_plays_what_it_is_given_then_silence() -> None:
    track = ReplyTrack()
    pcm = (np.arange(FRAME * 3) % 1000 + 1).astype("<i2").tobytes()
    await track.play("t1", pcm[: FRAME * 2 * 2])
    first, second, third = [await track.recv() for _ in range(3)]
    assert (first.sample_rate, first.samples, first.pts) == (CALL_RATE, FRAME, 0)
    assert second.pts == FRAME and first.time_base == fractions.Fraction(1, CALL_RATE)
    assert _samples(first).tobytes() == pcm[: FRAME * 2]
    assert not _samples(third).any()  # nothing queued: silence, never a pause
    assert track.turn_id == "t1" and track.played_ms == 40
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()


async def test_clear_drops_what_did_not_play_and_says_what_did() -> None:
    track = ReplyTrack()
    await track.play("t1", bytes(2 * FRAME * 10))  # 200 ms
    await track.recv()
    assert track.buffered_ms == 180
    assert track.clear() == 20 and track.buffered_ms == 0
    await track.play("t2", bytes(2 * FRAME))
    assert track.turn_id == "t2" and track.played_ms == 0  # a new reply starts at 0


async def test_a_paused_reply_holds_its_place_and_plays_on_when_resumed() -> None:
    track = ReplyTrack()
    pcm = (np.arange(FRAME * 2) % 1000 + 1).astype("<i2").tobytes()
    await track.play("t1", pcm)
    await track.recv()
    track.pause()
    held = await track.recv()
    assert not _samples(held).any() and track.buffered_ms == 20 and track.played_ms == 20
    track.resume()
    assert _samples(await track.recv()).tobytes() == pcm[FRAME * 2:]
    track.pause()
    track.clear()  # a cut ends the pause: the next reply plays at once
    await track.play("t2", pcm[: FRAME * 2])
    assert _samples(await track.recv()).any()


async def test_a_full_buffer_makes_the_writer_wait() -> None:
    track = ReplyTrack(max_buffer_s=1.0)
    await track.play("t1", bytes(2 * CALL_RATE))  # a second: full
    waiting = asyncio.ensure_future(track.play("t1", bytes(2 * FRAME)))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await track.recv()  # a frame played: room again
    await asyncio.wait_for(waiting, 1)


class _Stereo(MediaStreamTrack):
    kind = "audio"

    def __init__(self, frames: int) -> None:
        super().__init__()
        self.left = frames

    async def recv(self) -> AudioFrame:
        if not self.left:
            raise MediaStreamError
        self.left -= 1
        lr = np.stack([np.full(FRAME, 100), np.full(FRAME, 300)], axis=1).astype("<i2")
        frame = AudioFrame.from_ndarray(lr.reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = CALL_RATE
        return frame


async def test_the_microphone_is_mono_at_the_call_rate_until_the_track_ends() -> None:
    chunks = [chunk async for chunk in microphone(_Stereo(3))]
    assert len(chunks) == 3
    assert np.frombuffer(chunks[0], "<i2").tolist() == [200] * FRAME  # the channels' mean


async def test_the_receivers_hold_the_packets_asked_for() -> None:
    pc = RTCPeerConnection()
    try:
        pc.addTrack(ReplyTrack())
        hold_packets(pc, 1)  # raises if aiortc moved its jitter buffer
        [transceiver] = pc.getTransceivers()
        assert transceiver.receiver._RTCRtpReceiver__jitter_buffer._prefetch == 1
    finally:
        await pc.close()


class _Packet:
    def __init__(self, sequence_number: int) -> None:
        self.sequence_number = sequence_number
        self.timestamp = sequence_number * FRAME
        self._data = sequence_number.to_bytes(2, "big")


def _feed(buffer: InOrderBuffer, order: list[int]) -> list[int | None]:
    """What the buffer hands on as each packet comes (None: nothing)."""
    out: list[int | None] = []
    for seq in order:
        pli, frame = buffer.add(_Packet(seq))
        assert not pli
        out.append(None if frame is None else int.from_bytes(frame.data, "big"))
    return out


def test_packets_in_order_go_on_at_once_across_the_wrap() -> None:
    buffer = InOrderBuffer(2)
    order = [65533, 65534, 65535, 0, 1]
    assert _feed(buffer, order) == order
    assert buffer.skipped == buffer.dropped == 0


def test_a_late_packet_is_waited_for_then_the_audio_is_current_again() -> None:
    buffer = InOrderBuffer(2)
    # 3 comes after 4: the wait ends with 3; then 4 is what is current
    assert _feed(buffer, [1, 2, 4, 3, 5, 6]) == [1, 2, None, 4, 5, 6]
    assert buffer.dropped == 1 and buffer.skipped == 0


def test_a_lost_packet_is_skipped_after_the_wait_and_nothing_lags_after() -> None:
    buffer = InOrderBuffer(2)
    assert _feed(buffer, [1, 3, 4, 5, 6, 2]) == [1, None, None, 5, 6, None]
    assert buffer.skipped == 1 and buffer.dropped == 2  # 2 came too late: ignored
    no_wait = InOrderBuffer(0)
    assert _feed(no_wait, [1, 3, 4]) == [1, 3, 4]


async def test_calls_listen_in_order() -> None:
    pc = RTCPeerConnection()
    try:
        pc.addTrack(ReplyTrack())
        listen_in_order(pc, 3)  # raises if aiortc moved its jitter buffer
        [transceiver] = pc.getTransceivers()
        assert isinstance(transceiver.receiver._RTCRtpReceiver__jitter_buffer, InOrderBuffer)
    finally:
        await pc.close()


async def test_an_idle_track_sends_a_starting_reply_at_once_not_at_its_next_tick() -> None:
    track = ReplyTrack()
    await track.recv()  # the clock starts
    track._sent += 250 * FRAME  # the next tick 5 s away (private: the pacing's state)
    waiting = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0.01)
    assert not waiting.done()  # silence waits for its tick
    pcm = (np.arange(FRAME) % 1000 + 1).astype("<i2").tobytes()
    await track.play("t1", pcm)
    frame = await asyncio.wait_for(waiting, 1.0)  # woken by the reply, not the tick
    assert _samples(frame).tobytes() == pcm


async def test_a_reply_that_comes_between_two_frames_starts_at_once_too(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """aiortc encodes and sends each frame between two calls of ``recv``: a reply played
    then finds no wait to wake. It goes out at once all the same, with its lead, not at
    the old clock's next tick (up to a frame later, and the rest of the reply with it)."""
    clock, waits = _track_clock(monkeypatch)
    track = ReplyTrack(lead_frames=1)
    assert (await track.recv()).pts == 0  # silence: the clock starts at 100.0
    clock[0] += 0.005  # 5 ms into the next frame's wait, aiortc still sending the last
    pcm = (np.arange(3 * FRAME) % 1000 + 1).astype("<i2").tobytes()
    await track.play("t1", pcm)
    frames = [await track.recv() for _ in range(3)]
    assert b"".join(_samples(f).tobytes() for f in frames) == pcm
    # the first two (the lead) at once, the third a frame on: 55 ms at the old tick
    assert sum(waits) == pytest.approx(0.02)
    assert [f.pts for f in frames] == [FRAME, 2 * FRAME, 3 * FRAME]
    track.pause()  # a pause's silence keeps the clock: resuming takes no lead again
    await track.play("t1", pcm)
    paused = await track.recv()
    assert not _samples(paused).any()
    track.resume()
    waits.clear()
    [await track.recv() for _ in range(2)]
    assert waits == [0.02, 0.02]


async def test_a_starting_reply_sends_its_lead_at_once_then_keeps_real_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """On a clock that stands still, the waits the track asks for are its pacing: none
    for the lead, then a frame's worth each, as without a lead."""
    from pipeline.webrtc import media

    monkeypatch.setattr(media.time, "monotonic", lambda: 100.0)
    waits: list[float] = []
    yield_once = asyncio.sleep

    async def sleep(seconds: float) -> None:
        waits.append(round(seconds, 6))

    track = ReplyTrack(lead_frames=2)
    await track.recv()  # the clock starts at 100.0
    waiting = asyncio.ensure_future(track.recv())  # idle: waits for sound (a timer)
    await asyncio.sleep(0)
    pcm = (np.arange(6 * FRAME) % 1000 + 1).astype("<i2").tobytes()
    await track.play("t1", pcm)
    monkeypatch.setattr(media.asyncio, "sleep", sleep)
    frames = [await asyncio.wait_for(waiting, 1.0), *[await track.recv() for _ in range(5)]]
    assert b"".join(_samples(f).tobytes() for f in frames) == pcm
    assert waits == [0.02, 0.04, 0.06]  # three frames at once, then one per 20 ms
    plain = ReplyTrack()  # no lead: the starting frame at once, then each at its tick
    await plain.recv()
    waiting = asyncio.ensure_future(plain.recv())
    await yield_once(0)  # the real one: the track starts waiting for sound
    await plain.play("t1", pcm)
    waits.clear()
    [await asyncio.wait_for(waiting, 1.0), *[await plain.recv() for _ in range(5)]]
    assert waits == [0.02, 0.04, 0.06, 0.08, 0.1]


async def test_an_idle_track_goes_quiet_and_its_clock_keeps_real_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """After a reply, 200 ms of silence at real time, then one silence frame per
    QUIET_EVERY_S; the frames not sent are skipped, so each pts says when it was sent. A
    reply starting during a quiet wait goes out at once, at its own time's pts."""
    from pipeline.webrtc import media

    real_sleep = asyncio.sleep
    clock, waits = _track_clock(monkeypatch)
    track = ReplyTrack()
    pcm = (np.arange(FRAME) % 1000 + 1).astype("<i2").tobytes()
    await track.play("t1", pcm)
    assert (await track.recv()).pts == 0  # the reply's one frame
    for n in range(media.QUIET_AFTER_FRAMES):  # its fade-out: each at its tick
        clock[0] += 0.02
        frame = await track.recv()
        assert frame.pts == (n + 1) * FRAME and not _samples(frame).any()
    clock[0] += 0.02
    waiting = asyncio.ensure_future(track.recv())  # quiet: waits for sound or 400 ms
    await real_sleep(0.05)  # real time passes; the track's clock does not
    assert not waiting.done()
    clock[0] += 0.31  # 310 ms into the quiet wait, a reply starts
    await track.play("t2", pcm * 2)
    frame = await asyncio.wait_for(waiting, 1.0)
    assert _samples(frame).tobytes() == pcm
    assert frame.pts == 26 * FRAME  # 530 ms in: the 15 frames never sent are skipped
    assert _samples(await track.recv()).tobytes() == pcm and waits == [0.02]
    waiting = asyncio.ensure_future(track.recv())
    await real_sleep(0)
    clock[0] += 0.02
    quiet = await asyncio.wait_for(waiting, 1.0)  # the real timeout: not quiet yet
    assert not _samples(quiet).any()
