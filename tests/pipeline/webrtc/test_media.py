"""The audio of a WebRTC call: the reply's track (paced frames, silence, bounded buffer,
clear), the microphone's downmix, and the jitter buffer held."""

from __future__ import annotations

import asyncio
import fractions

import numpy as np
import pytest
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

from pipeline.webrtc import CALL_RATE, ReplyTrack, hold_packets, microphone

FRAME = CALL_RATE // 50


def _samples(frame: AudioFrame) -> np.ndarray:
    return frame.to_ndarray().reshape(-1)


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
