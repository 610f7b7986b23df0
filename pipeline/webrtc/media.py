"""The audio of a WebRTC call: what the browser's microphone sends, what the reply plays.

aiortc decodes the caller's Opus to 20 ms frames of 48 kHz PCM16 (stereo, interleaved);
:func:`microphone` turns them into mono PCM16 chunks for the session (its input rate is
48 kHz). :class:`ReplyTrack` is the track the reply is played on: aiortc asks it for a
20 ms frame at a time and encodes it to Opus; it answers from a bounded buffer the
session's audio chunks are written into, paced at real time, with silence when the
reply is not speaking: 200 ms of it after a reply, then one frame every 400 ms, as Opus
DTX sends (the RTP timestamps say how much time passed: receivers play the gap as
silence); a reply that starts while the track is idle goes out at once, not at the next
tick, and with a lead its first frames go together, ahead of real time, to fill the
caller's jitter buffer (it holds a few packets before it plays: that wait is taken off
the reply's first audio). :meth:`ReplyTrack.clear`
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
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

__all__ = ["CALL_RATE", "InOrderBuffer", "ReplyTrack", "hold_packets", "listen_in_order",
           "microphone", "use_host_addresses"]

#: Opus's clock: the rate the call's audio has both ways
CALL_RATE = 48000
_FRAME = CALL_RATE // 50  # 20 ms, aiortc's packetization
_TIME_BASE = fractions.Fraction(1, CALL_RATE)
#: an idle track goes quiet after this many frames of silence (200 ms: the end of a
#: reply fades out as Opus would encode it) ...
QUIET_AFTER_FRAMES = 10
#: ... and then sends one silence frame this often, not fifty a second: as Opus DTX
#: does (400 ms), which every WebRTC receiver plays as silence, its clock carried on by
#: the RTP timestamps. Each frame is encoded, encrypted and sent, and an idle call
#: spent most of its media path's CPU on the silence it sent
QUIET_EVERY_S = 0.4


def use_host_addresses(addresses: Sequence[str]) -> None:
    """Gather ICE host candidates on ``addresses`` only (process-wide: aioice reads the
    machine's interfaces in one module function, and leaves loopback out)."""
    import aioice.ice

    chosen = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses


def on_first_check(pc: Any, heard: Callable[[], None]) -> None:
    """Call ``heard`` at each authenticated ICE check the peer sends to any transport of
    ``pc`` (call after its descriptions are set): from the first on, the caller is really
    connecting, not just a posted offer.

    aioice keeps its connection in aiortc's private ``_connection`` and says nothing when
    a check arrives, so its ``check_incoming`` is wrapped; if a new aiortc or aioice moves
    either, this raises and the tests say so, rather than hanging up every call."""
    transports = {t.receiver.transport.transport for t in pc.getTransceivers()
                  if t.receiver.transport is not None}
    if pc.sctp is not None:
        transports.add(pc.sctp.transport.transport)
    for ice in transports:
        connection: Any = getattr(ice, "_connection", None)
        incoming = getattr(connection, "check_incoming", None)
        if connection is None or incoming is None:
            raise RuntimeError("aiortc's ICE transport has no aioice connection where expected")

        def check_incoming(*args: Any, _incoming: Any = incoming) -> Any:
            heard()
            return _incoming(*args)

        connection.check_incoming = check_incoming


def hold_packets(pc: Any, packets: int) -> None:
    """Let the audio receivers of ``pc`` hold ``packets`` (20 ms each) before they play:
    a player's jitter buffer (the test callers', as a browser's).

    aiortc's receivers hold 4 (80 ms) for the network's jitter, a fixed figure with no
    setting: on loopback or a LAN that is 80 ms added to every turn for nothing.
    """
    from aiortc.jitterbuffer import JitterBuffer

    _replace_buffers(pc, lambda: JitterBuffer(capacity=16, prefetch=packets))


def listen_in_order(pc: Any, wait_packets: int) -> None:
    """Give the audio receivers of ``pc`` an :class:`InOrderBuffer`: what a listener that
    does not play needs (the session's VAD and STT take audio as it comes)."""
    _replace_buffers(pc, lambda: InOrderBuffer(wait_packets))


def _replace_buffers(pc: Any, make: Any) -> None:
    """aiortc's receiver keeps its buffer in a private attribute; if a new aiortc renames
    it this raises, and the tests say so, rather than silently holding 4 packets."""
    for transceiver in pc.getTransceivers():
        if transceiver.kind == "audio":
            receiver = transceiver.receiver
            if not hasattr(receiver, "_RTCRtpReceiver__jitter_buffer"):
                raise RuntimeError("aiortc's receiver has no jitter buffer where expected")
            receiver._RTCRtpReceiver__jitter_buffer = make()


class InOrderBuffer:
    """The caller's audio packets in order, each handed on as soon as it can be.

    aiortc's buffer is a player's: it holds a fixed number of packets so that playback
    never runs dry, 20 ms of delay each, on every packet, even on loopback. The session is
    no player: its VAD and STT take audio whenever it comes, so nothing needs holding but
    order. A packet that comes in order goes on at once; a gap (a packet lost or late)
    is waited for up to ``wait_packets`` packets, then skipped. aiortc's receiver takes
    one frame per packet that arrives, so the packets that came during a wait would stay
    queued behind each new one for the rest of the call: the oldest of them are dropped
    instead (at most ``wait_packets``, 20 ms each, once per gap), and the audio is
    current again. Implements aiortc's ``JitterBuffer.add``.
    """

    def __init__(self, wait_packets: int) -> None:
        self._wait = max(wait_packets, 0)
        self._next: int | None = None  # the sequence number due next
        self._held: dict[int, Any] = {}
        #: packets skipped (lost or too late) and dropped (to catch up), for the tests
        self.skipped = 0
        self.dropped = 0

    def _after_next(self, sequence: int) -> int:
        """How far ``sequence`` is past the one due (negative: before it)."""
        assert self._next is not None
        delta = (sequence - self._next) % 65536
        return delta - 65536 if delta >= 32768 else delta

    def add(self, packet: Any) -> tuple[bool, Any]:
        """Take one packet; the frame to decode now, if any (never a picture loss)."""
        from aiortc.jitterbuffer import JitterFrame

        if self._next is None:
            self._next = packet.sequence_number
        if self._after_next(packet.sequence_number) < 0:
            return False, None  # already skipped: too late
        self._held[packet.sequence_number] = packet
        if self._next not in self._held:
            if len(self._held) <= self._wait:
                return False, None  # the gap may yet be filled
            self._next = min(self._held, key=self._after_next)
            self.skipped += 1
        while len(self._held) > 1 and (self._next + 1) % 65536 in self._held:
            del self._held[self._next]  # behind: drop the oldest to be current
            self._next = (self._next + 1) % 65536
            self.dropped += 1
        ready = self._held.pop(self._next)
        self._next = (self._next + 1) % 65536
        return False, JitterFrame(data=ready._data, timestamp=ready.timestamp)


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
    writer reads the log no faster than the call can play it). ``lead_frames``: when a
    reply starts on an idle track, its first ``lead_frames`` + 1 frames are sent at once
    and the rest follow at real time that far ahead, until the track is idle again (the
    lead is taken once per start, never added up). :attr:`played_ms` counts what was
    sent, the lead with it.
    """

    kind = "audio"

    def __init__(self, max_buffer_s: float = 30.0, *, lead_frames: int = 0) -> None:
        super().__init__()
        self._lead_s = max(lead_frames, 0) * _FRAME / CALL_RATE
        self._buffer = bytearray()
        self._limit = int(max_buffer_s * CALL_RATE) * 2
        self._room = asyncio.Event()
        self._room.set()
        self._start: float | None = None
        self._sent = 0  # samples handed to aiortc
        self._turn: str | None = None
        self._played = 0  # bytes of the current reply played
        self._paused = False
        self._sound = asyncio.Event()  # audio came: an idle track sends it at once
        self._silent = 0  # silence frames sent since the last with sound

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
        self._sound.set()

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
        """Play on from where :meth:`pause` held the reply (at the clock it kept: the
        pause's silence is no idle track's, so no lead is taken again)."""
        self._paused = False
        self._silent = 0

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        wait = self._start + self._sent / CALL_RATE - now
        if self._buffer and self._silent and not self._paused:
            # a reply that came while aiortc was busy with the last silence frame starts
            # now as well, not up to a frame later at the old clock's next tick
            self._skip_to(now, True)
        elif self._buffer or self._paused:
            if wait > 0:
                await asyncio.sleep(wait)
        else:  # idle: a reply that starts now is sent now, not at the next tick
            quiet = self._silent >= QUIET_AFTER_FRAMES
            if quiet:  # the next silence frame waits for the next keep-alive
                wait += QUIET_EVERY_S - _FRAME / CALL_RATE
            heard = False
            if wait > 0:
                self._sound.clear()
                try:
                    async with asyncio.timeout(wait):  # no task per frame: a timer only
                        heard = await self._sound.wait()
                except TimeoutError:
                    pass
            if heard or quiet:
                self._skip_to(time.monotonic(), heard)
        chunk = b"" if self._paused else bytes(self._buffer[:2 * _FRAME])
        del self._buffer[:len(chunk)]
        self._played += len(chunk)
        self._silent = 0 if chunk else self._silent + 1
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

    def _skip_to(self, now: float, heard: bool) -> None:
        """After a quiet wait, the frames not sent are skipped: the clock (and the RTP
        timestamp with it, as after Opus DTX) moves on to ``now``. A reply ``heard``
        starting moves it to this frame, less the lead: its next ones follow it."""
        assert self._start is not None
        due = int((now - self._start) * CALL_RATE) // _FRAME * _FRAME
        self._sent = max(self._sent, due)
        if heard:
            self._start = now - self._sent / CALL_RATE - self._lead_s
