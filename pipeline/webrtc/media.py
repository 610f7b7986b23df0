"""The audio of a WebRTC call: what the browser's microphone sends, what the reply plays.

aiortc decodes the caller's Opus to 20 ms frames of 48 kHz PCM16 (stereo, interleaved);
:func:`microphone` turns them into mono PCM16 chunks for the session (its input rate is
48 kHz). :class:`ReplyTrack` is the track the reply is played on: aiortc asks it for a
20 ms frame at a time and encodes it to Opus; it answers from a bounded buffer the
session's audio chunks are written into, paced at real time, with silence when the
reply is not speaking (a WebRTC audio track never pauses). :meth:`ReplyTrack.clear`
drops what has not played yet (barge-in), :meth:`ReplyTrack.pause` holds it (silence
until :meth:`ReplyTrack.resume`), and :attr:`ReplyTrack.played_ms` says how far the
current reply was heard.

aioice gathers candidates on every interface but loopback: :func:`use_host_addresses`
chooses them instead (``["127.0.0.1"]`` for the one-machine mode, a pod's address on a
cluster).
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

__all__ = ["CALL_RATE", "ReplyTrack", "hold_packets", "microphone", "use_host_addresses"]

#: Opus's clock: the rate the call's audio has both ways
CALL_RATE = 48000
_FRAME = CALL_RATE // 50  # 20 ms, aiortc's packetization
_TIME_BASE = fractions.Fraction(1, CALL_RATE)


def use_host_addresses(addresses: Sequence[str]) -> None:
    """Gather ICE host candidates on ``addresses`` only (process-wide: aioice reads the
    machine's interfaces in one module function, and leaves loopback out)."""
    import aioice.ice

    chosen = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses


def hold_packets(pc: Any, packets: int) -> None:
    """Let the audio receivers of ``pc`` hold ``packets`` (20 ms each) before they play.

    aiortc's receivers hold 4 (80 ms) for the network's jitter, a fixed figure with no
    setting: on loopback or a LAN that is 80 ms added to every turn for nothing. Its
    receiver keeps the buffer in a private attribute; if a new aiortc renames it this
    raises, and the tests say so, rather than silently holding 4.
    """
    from aiortc.jitterbuffer import JitterBuffer

    for transceiver in pc.getTransceivers():
        if transceiver.kind == "audio":
            receiver = transceiver.receiver
            if not hasattr(receiver, "_RTCRtpReceiver__jitter_buffer"):
                raise RuntimeError("aiortc's receiver has no jitter buffer where expected")
            receiver._RTCRtpReceiver__jitter_buffer = JitterBuffer(capacity=16,
                                                                   prefetch=packets)


async def microphone(track: MediaStreamTrack) -> AsyncIterator[bytes]:
    """Mono PCM16 at 48 kHz, a chunk per frame the caller's track delivers, until it ends."""
    while True:
        try:
            frame: Any = await track.recv()
        except MediaStreamError:  # the call ended
            return
        samples = frame.to_ndarray().reshape(-1)
        channels = len(frame.layout.channels)
        if channels > 1:  # packed: L R L R ...
            samples = samples.reshape(-1, channels).mean(axis=1)
        if frame.sample_rate != CALL_RATE:  # aiortc's Opus decoder says 48 kHz
            raise ValueError(f"the caller's audio is at {frame.sample_rate} Hz")
        yield samples.astype("<i2").tobytes()


class ReplyTrack(MediaStreamTrack):
    """The reply's audio, played in real time (see the module docstring).

    ``max_buffer_s`` bounds what waits to play: :meth:`play` waits for room (the reply's
    writer reads the log no faster than the call can play it).
    """

    kind = "audio"

    def __init__(self, max_buffer_s: float = 30.0) -> None:
        super().__init__()
        self._buffer = bytearray()
        self._limit = int(max_buffer_s * CALL_RATE) * 2
        self._room = asyncio.Event()
        self._room.set()
        self._start: float | None = None
        self._sent = 0  # samples handed to aiortc
        self._turn: str | None = None
        self._played = 0  # bytes of the current reply played
        self._paused = False

    @property
    def turn_id(self) -> str | None:
        """The reply playing (or played last)."""
        return self._turn

    @property
    def played_ms(self) -> int:
        """How much of the current reply has played."""
        return self._played * 1000 // (2 * CALL_RATE)

    @property
    def buffered_ms(self) -> int:
        return len(self._buffer) * 1000 // (2 * CALL_RATE)

    async def play(self, turn_id: str | None, pcm: bytes) -> None:
        """Queue PCM16 mono at 48 kHz of reply ``turn_id`` (waits while the buffer is full)."""
        if turn_id != self._turn:
            self._turn, self._played = turn_id, 0
        while len(self._buffer) >= self._limit:
            self._room.clear()
            await self._room.wait()
        self._buffer += pcm

    def clear(self) -> int:
        """Drop what has not played; return how much of the current reply had (ms)."""
        self._buffer.clear()
        self._paused = False
        self._room.set()
        return self.played_ms

    def pause(self) -> None:
        """Play silence, keeping what waits (the listener spoke over the reply)."""
        self._paused = True

    def resume(self) -> None:
        """Play on from where :meth:`pause` held the reply."""
        self._paused = False

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        wait = self._start + self._sent / CALL_RATE - now
        if wait > 0:
            await asyncio.sleep(wait)
        chunk = b"" if self._paused else bytes(self._buffer[:2 * _FRAME])
        del self._buffer[:len(chunk)]
        self._played += len(chunk)
        if len(self._buffer) < self._limit:
            self._room.set()
        chunk = chunk.ljust(2 * _FRAME, b"\0")  # silence where the reply has none
        frame = AudioFrame.from_ndarray(np.frombuffer(chunk, "<i2").reshape(1, -1),
                                        format="s16", layout="mono")
        frame.sample_rate = CALL_RATE
        frame.pts = self._sent
        frame.time_base = _TIME_BASE
        self._sent += _FRAME
        return frame
