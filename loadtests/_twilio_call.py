"""Twilio's side of a phone call, for the benchmarks and the tests: dial the TwiML
webhook, then drive the Media Streams socket as Twilio does.

Twilio streams the caller's line for as long as the call lasts: a 20 ms frame of μ-law
at 8 kHz every 20 ms, speech or silence. :class:`PhoneLine` does the same (a pacer sends
what :meth:`PhoneLine.say` queued, silence otherwise), echoes each ``mark`` as played the
moment it arrives, and keeps what came back with the client's time of arrival.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from pipeline.audio import encode_audio

FRAME = 160  # 20 ms at 8 kHz, a byte a sample
SILENCE = b"\xff" * FRAME  # μ-law's zero
STREAM_SID = "MZ0000000000000000000000000000test"


@dataclass(frozen=True)
class Dialled:
    """What the webhook answered: the stream's URL and its parameters."""

    url: str
    parameters: dict[str, str]


async def dial(base_url: str, *, headers: dict[str, str] | None = None,
               form: dict[str, str] | None = None) -> Dialled:
    """Call ``POST /v1/twilio/voice`` as Twilio does and read the TwiML's ``<Stream>``."""
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.post(f"{base_url}/v1/twilio/voice", headers=headers,
                                 data=form or {"CallSid": "CA1", "From": "+15550001"})
    answer.raise_for_status()
    stream = ET.fromstring(answer.text).find("./Connect/Stream")
    if stream is None:
        raise ValueError(f"no <Connect><Stream> in {answer.text[:200]!r}")
    return Dialled(stream.get("url", ""),
                   {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")})


def mulaw(pcm: bytes, rate: int) -> bytes:
    """PCM16 mono at ``rate`` as a phone line carries it."""
    return encode_audio(pcm, rate, "pcmu", output_rate=8000)


@dataclass
class PhoneLine:
    """One call's media socket, driven as Twilio drives it."""

    ws: ClientConnection
    #: every frame received, with its arrival (``time.perf_counter()``)
    received: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    _queue: bytearray = field(default_factory=bytearray)
    _drained: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, url: str, parameters: dict[str, str], *,
                   headers: dict[str, str] | None = None,
                   max_call_s: float = 600.0) -> AsyncIterator[PhoneLine]:
        """Connect, say ``connected`` and ``start``, stream the line until the block ends
        (at most ``max_call_s``), then hang up (``stop``)."""
        async with connect(url, additional_headers=headers) as ws:
            line = cls(ws)
            await line.start(parameters)
            pacer = asyncio.create_task(line._pace(int(max_call_s * 8000 / FRAME)))
            try:
                yield line
            finally:
                pacer.cancel()
                await asyncio.gather(pacer, return_exceptions=True)
                with contextlib.suppress(Exception):
                    await ws.send(json.dumps({"event": "stop", "streamSid": STREAM_SID,
                                              "stop": {"callSid": "CA1"}}))

    async def start(self, parameters: dict[str, str]) -> None:
        await self.ws.send(json.dumps({"event": "connected", "protocol": "Call",
                                       "version": "1.0.0"}))
        await self.ws.send(json.dumps({
            "event": "start", "sequenceNumber": "1", "streamSid": STREAM_SID,
            "start": {"streamSid": STREAM_SID, "callSid": "CA1", "accountSid": "AC1",
                      "tracks": ["inbound"], "customParameters": parameters,
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                      "channels": 1}}}))

    async def say(self, audio: bytes) -> float:
        """Queue μ-law ``audio`` on the line; return when its last frame went out (the
        client's clock: the end of the speech, as the caller said it)."""
        self._drained.clear()
        self._queue += audio
        await self._drained.wait()
        return time.perf_counter()

    async def until(self, event: str, timeout_s: float = 30.0) -> dict[str, Any]:
        """Read frames up to the next ``event`` (``TimeoutError`` after ``timeout_s``)."""
        async with asyncio.timeout(timeout_s):
            while True:
                frame: dict[str, Any] = json.loads(await self.ws.recv())
                self.received.append((time.perf_counter(), frame))
                if frame.get("event") == "mark":  # played at once, as Twilio reports it
                    await self.ws.send(json.dumps({"event": "mark", "streamSid": STREAM_SID,
                                                   "mark": frame["mark"]}))
                if frame.get("event") == event:
                    return frame

    async def until_played(self, timeout_s: float = 30.0) -> str:
        """Read frames up to a reply's last ``mark`` (named after its turn; the marks
        between its chunks are ``<turn>@<ms>``); return the turn's id."""
        async with asyncio.timeout(timeout_s):
            while "@" in (name := (await self.until("mark"))["mark"]["name"]):
                pass
        return str(name)

    def audio(self) -> bytes:
        """The μ-law received so far."""
        return b"".join(base64.b64decode(f["media"]["payload"])
                        for _, f in self.received if f.get("event") == "media")

    async def _pace(self, frames: int) -> None:
        start = time.perf_counter()
        for n in range(frames):
            chunk = bytes(self._queue[:FRAME]) or SILENCE
            del self._queue[:FRAME]
            await self.ws.send(json.dumps({
                "event": "media", "streamSid": STREAM_SID,
                "media": {"track": "inbound", "payload": base64.b64encode(chunk).decode()}}))
            if not self._queue:
                self._drained.set()
            delay = start + (n + 1) * FRAME / 8000 - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)


async def phone_voice_turn(base_url: str, audio: bytes, *, rate: int,
                           timeout_s: float = 90.0) -> float | None:
    """One spoken turn on a new call: ``audio`` (PCM16 mono at ``rate``, the speech and
    the silence before it) said on the line; end of the speech (client clock) → the
    first reply ``media`` received, in ms. The reply is heard to its ``mark``, then the
    call hangs up. ``None``: no reply within ``timeout_s``."""
    call = await dial(base_url)
    async with PhoneLine.open(call.url, call.parameters, max_call_s=timeout_s + 30) as line:
        speech_end = await line.say(mulaw(audio, rate))
        try:
            await line.until("media", timeout_s=timeout_s)
            first = line.received[-1][0]
            await line.until_played(timeout_s=timeout_s)
        except TimeoutError:
            return None
    return (first - speech_end) * 1000
