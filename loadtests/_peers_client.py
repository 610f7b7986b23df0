"""One voice client for bench_peers: the same turn logic and audio, whichever framework answers.

A turn streams a spoken question like a microphone (20 ms PCM16 frames at 16 kHz, paced in
real time, silence before and after it) and listens: voice-to-voice is the end of the
speech → the first message of reply audio *with sound in it* (a sample louder than
:data:`SOUND_FLOOR`); the reply is over once no sound has arrived for :data:`END_GAP_S`.
Both rules are the client's, not a framework's event, so they read both the same way
(Voxline also says ``response.done``; Pipecat's WebSocket says nothing when a reply ends).

What differs is only the wire, behind :class:`Line`, whose ``next()`` yields the closed set
:data:`Heard`:

* :class:`VoxlineLine`: Voxline's native session socket (:class:`voxline.client.SessionSocket`:
  JSON events, resume on a dropped socket), a session created per line;
* :class:`PipecatLine`: Pipecat's ``FastAPIWebsocketTransport`` with its
  ``ProtobufFrameSerializer``: each message a ``pipecat.Frame`` whose ``audio`` is an
  ``AudioRawFrame`` or whose ``message`` is RTVI's JSON. The line opens as Pipecat's own
  clients open one (:func:`rtvi_ready`: no question before the bot says it is ready, as
  none is asked of a Voxline session before it exists). The few fields the client needs
  are encoded here by hand (:func:`audio_frame`), so Voxline's venv needs neither Pipecat
  nor its generated code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import websockets

from voxline.client import SessionSocket, VoxlineClient

RATE = 16000  # what both frameworks take by default
FRAME_MS = 20
FRAME_BYTES = 2 * RATE * FRAME_MS // 1000
PAUSE_BEFORE_S, PAUSE_AFTER_S = 0.5, 2.5  # as the capacity runner speaks
#: a sample this loud (PCM16) is sound, not a codec's or a TTS's near-silence
SOUND_FLOOR = 300
#: no sound for this long after some: the reply is over (both sides paced alike)
END_GAP_S = 1.5
TURN_TIMEOUT_S = 60.0
#: messages a line buffers before its reader waits: the reader is the only producer,
#: and a turn drains it, so this bounds what a stalled turn holds
LINE_QUEUE = 4096
#: the RTVI protocol Pipecat 1.14 speaks, and how long a new connection may take to be ready
RTVI_VERSION = "2.2.0"
READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Audio:
    """Reply audio, PCM16 mono."""

    pcm: bytes


@dataclass(frozen=True)
class Failed:
    """The framework said the turn failed (its error code), or the line closed."""

    code: str


Heard = Audio | Failed


class Line(Protocol):
    """One conversation's connection: audio in, :data:`Heard` out."""

    async def send_audio(self, pcm: bytes) -> None: ...

    async def next(self) -> Heard: ...


@dataclass
class TurnOutcome:
    """What one turn came to: ``completed`` (sound heard after the speech) or why not."""

    outcome: str
    voice_to_voice_ms: float | None = None
    reply_audio_s: float = 0.0


def has_sound(pcm: bytes) -> bool:
    if len(pcm) < 2:
        return False
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2")
    return bool(np.abs(samples.astype(np.int32)).max() > SOUND_FLOOR)


async def stream(line: Line, audio: bytes) -> None:
    """``audio`` as 20 ms frames, paced like a microphone."""
    start = time.perf_counter()
    for n, offset in enumerate(range(0, len(audio), FRAME_BYTES)):
        await line.send_audio(audio[offset : offset + FRAME_BYTES])
        delay = start + (n + 1) * FRAME_MS / 1000 - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)


async def voice_turn(line: Line, speech: bytes, output_rate: int) -> TurnOutcome:
    """Say ``speech`` (PCM16 at :data:`RATE`) into ``line`` and hear the reply."""
    audio = bytes(2 * int(RATE * PAUSE_BEFORE_S)) + speech + bytes(2 * int(RATE * PAUSE_AFTER_S))
    start = time.perf_counter()
    speech_end = start + PAUSE_BEFORE_S + len(speech) / 2 / RATE
    sender = asyncio.create_task(stream(line, audio))
    first: float | None = None
    last_sound: float | None = None
    reply_bytes = 0
    result = TurnOutcome("no response")
    try:
        async with asyncio.timeout(TURN_TIMEOUT_S):
            while True:
                wait = None if last_sound is None else last_sound + END_GAP_S - time.perf_counter()
                try:
                    heard = await asyncio.wait_for(line.next(), wait)
                except TimeoutError:
                    result.outcome = "completed"  # END_GAP_S of quiet after the reply
                    break
                now = time.perf_counter()
                match heard:
                    case Audio(pcm) if now >= speech_end:
                        reply_bytes += len(pcm)
                        if has_sound(pcm):
                            first = now if first is None else first
                            last_sound = now
                    case Audio():
                        pass  # before the question ended: not an answer to it
                    case Failed(code):
                        result.outcome = code
                        break
    except TimeoutError:
        result.outcome = "timeout"
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
    if first is not None:
        result.voice_to_voice_ms = (first - speech_end) * 1000
    result.reply_audio_s = reply_bytes / 2 / output_rate
    return result


class _Queued:
    """A line's reader task filling a bounded queue of :data:`Heard`."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Heard] = asyncio.Queue(LINE_QUEUE)
        self.reader: asyncio.Task[None] | None = None

    async def next(self) -> Heard:
        return await self.queue.get()

    async def _read(self, source: AsyncIterator[Heard | None]) -> None:
        try:
            async for heard in source:
                if heard is not None:
                    await self.queue.put(heard)
            await self.queue.put(Failed("closed"))
        except Exception as exc:  # the socket dropped: the turn waiting on it fails
            await self.queue.put(Failed(f"socket: {type(exc).__name__}"))

    async def stop(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.reader


class VoxlineLine(_Queued):
    """A Voxline session over its native socket."""

    def __init__(self, socket: SessionSocket) -> None:
        super().__init__()
        self.socket = socket
        self.reader = asyncio.create_task(self._read(self._events()))

    async def _events(self) -> AsyncIterator[Heard | None]:
        async for event in self.socket.events():
            data: Any = event.data
            if event.type == "response.audio.chunk":
                yield Audio(bytes(data.audio))
            elif event.type == "error":
                yield Failed(str(data.code))
            else:
                yield None

    async def send_audio(self, pcm: bytes) -> None:
        await self.socket.send_audio(pcm)


@contextlib.asynccontextmanager
async def voxline_line(client: VoxlineClient, **settings: Any) -> AsyncIterator[VoxlineLine]:
    session = await client.create_session(input_sample_rate=RATE, **settings)
    async with client.connect(session) as socket:
        line = VoxlineLine(socket)
        try:
            yield line
        finally:
            await line.stop()


# ---- Pipecat's protobuf frames (pipecat/frames/frames.proto), the fields used here ----------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def _fields(data: bytes) -> Iterator[tuple[int, bytes | int]]:
    """(field number, value) of a message: bytes for length-delimited, int for varints."""
    at = 0
    while at < len(data):
        tag, at = _read_varint(data, at)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, at = _read_varint(data, at)
            yield number, value
        elif wire == 2:
            size, at = _read_varint(data, at)
            yield number, data[at : at + size]
            at += size
        elif wire in (1, 5):
            at += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unknown protobuf wire type {wire}")


def audio_frame(pcm: bytes, rate: int = RATE) -> bytes:
    """``Frame{audio: AudioRawFrame{audio, sample_rate, num_channels: 1}}``."""
    inner = (b"\x1a" + _varint(len(pcm)) + pcm + b"\x20" + _varint(rate) + b"\x28\x01")
    return b"\x12" + _varint(len(inner)) + inner


def message_frame(message: dict[str, Any]) -> bytes:
    """``Frame{message: MessageFrame{data: JSON}}``: how an RTVI message travels."""
    data = json.dumps(message).encode()
    inner = b"\x0a" + _varint(len(data)) + data
    return b"\x22" + _varint(len(inner)) + inner


def frame_message(message: bytes) -> dict[str, Any] | None:
    """The JSON of a ``Frame`` whose ``message`` is set; None for any other frame."""
    for number, value in _fields(message):
        if number == 4 and isinstance(value, bytes):
            data = next((v for n, v in _fields(value) if n == 1 and isinstance(v, bytes)), b"")
            parsed = json.loads(data or b"{}")
            return parsed if isinstance(parsed, dict) else None
    return None


def frame_audio(message: bytes) -> bytes | None:
    """The PCM of a ``Frame`` whose ``audio`` is set; None for any other frame."""
    for number, value in _fields(message):
        if number == 2 and isinstance(value, bytes):
            return next((v for n, v in _fields(value) if n == 3 and isinstance(v, bytes)), b"")
    return None


class PipecatLine(_Queued):
    """A Pipecat bot's WebSocket (one pipeline per connection, as its examples serve)."""

    def __init__(self, socket: Any) -> None:
        super().__init__()
        self.socket = socket
        self.reader = asyncio.create_task(self._read(self._frames()))

    async def _frames(self) -> AsyncIterator[Heard | None]:
        async for message in self.socket:
            pcm = frame_audio(message) if isinstance(message, bytes) else None
            yield None if pcm is None else Audio(pcm)

    async def send_audio(self, pcm: bytes) -> None:
        await self.socket.send(audio_frame(pcm))


async def rtvi_ready(socket: Any, timeout_s: float = READY_TIMEOUT_S) -> None:
    """What Pipecat's clients do before the microphone opens: say ``client-ready`` (RTVI,
    which ``PipelineWorker`` adds by default) and wait for ``bot-ready``, sent once the
    connection's pipeline has started (its models loaded)."""
    await socket.send(message_frame({
        "label": "rtvi-ai", "type": "client-ready", "id": uuid.uuid4().hex[:8],
        "data": {"version": RTVI_VERSION, "about": {"library": "voxline-bench-peers"}}}))
    async with asyncio.timeout(timeout_s):
        async for message in socket:
            if isinstance(message, bytes) and (frame_message(message) or {}).get(
                    "type") == "bot-ready":
                return
    raise ConnectionError("the Pipecat bot closed before it was ready")


@contextlib.asynccontextmanager
async def pipecat_line(url: str) -> AsyncIterator[PipecatLine]:
    ws_url = url.replace("http://", "ws://", 1) + "/ws"
    async with websockets.connect(ws_url, max_size=None, ping_interval=None) as socket:
        await rtvi_ready(socket)
        line = PipecatLine(socket)
        try:
            yield line
        finally:
            await line.stop()
