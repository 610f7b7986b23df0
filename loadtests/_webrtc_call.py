"""An OpenAI-style WebRTC caller, for the benchmarks and the tests: an aiortc peer with a
microphone track and the ``oai-events`` data channel, as the Agents SDK's browser
transport makes it, calling ``POST /v1/realtime/calls`` on loopback (its ICE candidates too).

The microphone is a :class:`Microphone` (a :class:`pipeline.webrtc.ReplyTrack`): it says
what it is given, in real time, and silence otherwise, as a live microphone does, and
notes when each frame went out. What comes back is kept: the events, and when each frame
of the reply's audio with sound in it arrived.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from pipeline.audio import resample_pcm16
from pipeline.webrtc import (
    CALL_RATE,
    EVENTS_CHANNEL,
    ReplyTrack,
    hold_packets,
    use_host_addresses,
)

#: what it holds for jitter, as a browser on loopback would (its buffer adapts: tens of
#: ms); aiortc's own 4 packets would add 80 ms no browser adds here
JITTER_PACKETS = 2
#: a frame whose loudest sample is above this has sound in it: the server's track sends
#: digital silence while no reply plays, which Opus gives back as exact zeros, and a
#: voice's first frames can be quiet (a fade-in decodes to tens), so any sample counts:
#: the first such frame is the reply's first audio, as the native client's first chunk
LOUD = 0


#: where OpenAI's clients post their offers
REALTIME_CALLS = "/v1/realtime/calls"


async def offer(url: str, pc: RTCPeerConnection, path: str = REALTIME_CALLS,
                session: dict[str, Any] | None = None, **headers: str) -> httpx.Response:
    """Post ``pc``'s offer as OpenAI's clients do: ``application/sdp``, or with ``session``
    (a ``session.update``'s ``session``) a multipart form of ``sdp`` and ``session``."""
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    async with httpx.AsyncClient(timeout=30) as http:
        if session is not None:  # text parts, no file names: what a browser's FormData sends
            return await http.post(f"{url}{path}", headers=headers, files={
                "sdp": (None, sdp), "session": (None, json.dumps(session))})
        return await http.post(f"{url}{path}", content=sdp,
                               headers={"Content-Type": "application/sdp", **headers})


class Microphone(ReplyTrack):
    """The caller's microphone: what it is given in real time, silence otherwise, noting
    when each frame went out (aiortc asked for it). A frame goes out at the start of the
    20 ms it holds, as the native client sends its frames; when a frame went out is when
    what it holds was said, not when it was due."""

    def __init__(self) -> None:
        super().__init__()
        #: (``time.perf_counter()``, ms played through that frame) for each frame of audio
        self.sent: list[tuple[float, int]] = []

    async def recv(self) -> Any:
        before = self.played_ms
        frame = await super().recv()
        if self.played_ms > before:
            self.sent.append((time.perf_counter(), self.played_ms))
        return frame

    def said_at(self, played_ms: float) -> float | None:
        """When (client clock) the audio ``played_ms`` in went out: the frame that held it
        went out at its start; None before it did."""
        for at, through in self.sent:
            if through >= played_ms:
                return at + (played_ms - (through - 20)) / 1000
        return None


class WebRtcCaller:
    """One caller; :meth:`call` dials, :meth:`close` hangs up by closing the peer. Its
    data channel is ``channel`` (OpenAI's by default; ``voxline-events`` for a session's
    call, as Voxline's page makes it)."""

    def __init__(self, *, record: bool = False, channel: str = EVENTS_CHANNEL) -> None:
        use_host_addresses(["127.0.0.1"])  # it dials this machine only
        self.pc = RTCPeerConnection()
        #: with ``record``: the reply track's audio from its first sound on (mono PCM16
        #: at 48 kHz)
        self.recording = bytearray() if record else None
        self.mic = Microphone()
        self.pc.addTrack(self.mic)
        self.channel = self.pc.createDataChannel(channel)
        self.events: list[dict[str, Any]] = []
        #: arrival (``time.perf_counter()``) of each reply frame with sound in it
        self.loud: list[float] = []
        self.location: str | None = None
        self._said_from = 0  # the microphone's ms played when the last say began
        self._new = asyncio.Event()
        self._sound = asyncio.Event()  # a frame with sound came
        self.channel.on("message", self._on_message)
        self.pc.on("track", lambda track: asyncio.ensure_future(self._listen(track)))

    async def call(self, url: str, path: str = REALTIME_CALLS,
                   session: dict[str, Any] | None = None, **headers: str) -> httpx.Response:
        answer = await offer(url, self.pc, path, session, **headers)
        if answer.status_code == 201:
            hold_packets(self.pc, JITTER_PACKETS)
            self.location = answer.headers["location"]
            await self.pc.setRemoteDescription(RTCSessionDescription(answer.text, "answer"))
        return answer

    async def close(self) -> None:
        await self.pc.close()

    async def until(self, kind: str, timeout_s: float = 30.0) -> dict[str, Any]:
        """The next event of type ``kind`` (looking at those received since the last
        :meth:`clear` too)."""
        seen = 0
        async with asyncio.timeout(timeout_s):
            while True:
                for event in self.events[seen:]:
                    if event["type"] == kind:
                        return event
                seen = len(self.events)
                self._new.clear()
                await self._new.wait()

    async def quiet(self, for_s: float = 1.0, timeout_s: float = 60.0) -> None:
        """Wait until the reply's track has had no sound for ``for_s`` (it has played)."""
        async with asyncio.timeout(timeout_s):
            while True:
                self._sound.clear()
                try:
                    await asyncio.wait_for(self._sound.wait(), for_s)
                except TimeoutError:
                    if self.loud:
                        return

    def clear(self) -> None:
        self.events.clear()

    def send(self, **event: Any) -> None:
        self.channel.send(json.dumps(event))

    def ask(self, text: str) -> None:
        """A typed turn: the item, then ``response.create``."""
        self.send(type="conversation.item.create", item={
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": text}]})
        self.send(type="response.create")

    async def say(self, pcm: bytes, rate: int) -> None:
        """Say PCM16 mono at ``rate`` into the microphone, after what it is saying still
        (:meth:`said_at` tells when each part went out)."""
        audio = resample_pcm16(pcm, rate, CALL_RATE)
        self._said_from = self.mic.played_ms + self.mic.buffered_ms
        await self.mic.play(None, audio)

    def said_at(self, position_s: float) -> float | None:
        """When (client clock) the microphone sent ``position_s`` into the last
        :meth:`say`: the frame holding it went out at its start, as the native client
        sends (the track may start a frame late: aiortc sends a frame between two asks)."""
        return self.mic.said_at(self._said_from + position_s * 1000)

    def _on_message(self, message: str) -> None:
        self.events.append(json.loads(message))
        self._new.set()

    async def _listen(self, track: Any) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            samples = frame.to_ndarray().reshape(-1, len(frame.layout.channels)).mean(axis=1)
            if np.abs(samples).max() > LOUD:
                self.loud.append(time.perf_counter())
                self._sound.set()
            if self.recording is not None and self.loud:
                self.recording += samples.astype("<i2").tobytes()


async def webrtc_voice_turn(base_url: str, audio: bytes, *, rate: int, speech_s: float,
                            session: dict[str, Any] | None = None,
                            timeout_s: float = 90.0) -> float | None:
    """One spoken turn on a new call (configured with ``session``, OpenAI's shape, when
    given): ``audio`` (PCM16 at ``rate``, whose speech ends at ``speech_s``) said into the
    microphone; end of the speech (client clock) → the first reply frame with sound, in
    ms, once the reply is done. ``None``: no reply in time."""
    caller = WebRtcCaller()
    try:
        answer = await caller.call(base_url, session=session)
        answer.raise_for_status()
        await caller.until("session.created", timeout_s)
        await caller.say(audio, rate)
        await caller.until("response.done", timeout_s)
        await caller.quiet(0.5, timeout_s)  # the reply was written: now it is heard
        speech_end = caller.said_at(speech_s)
        if speech_end is None:
            return None
        heard = [t for t in caller.loud if t > speech_end]
        return (heard[0] - speech_end) * 1000 if heard else None
    except TimeoutError:
        return None
    finally:
        await caller.close()
