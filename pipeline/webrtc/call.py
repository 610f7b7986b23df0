"""One WebRTC call on a live session: its audio on a track both ways, its events on a
data channel.

The browser (or any WebRTC peer) sends an SDP offer with an audio track and a data
channel (``oai-events`` for OpenAI's clients, ``voxline-events`` for Voxline's page);
:meth:`WebRtcCall.answer` answers it. Then:

* the caller's audio (Opus, decoded by aiortc) goes into the session as it comes: the
  session's input is PCM16 at 48 kHz, and its VAD and turn detection hear it as they
  hear a socket's audio;
* the session's log goes out on the data channel in log order, each event written by
  the call's ``frames`` (OpenAI's server events without their audio deltas, or Voxline's
  events with the audio left out of ``response.audio.chunk``): the reply's audio (PCM16
  at 48 kHz in the log) plays on the call's audio track
  (:class:`~pipeline.webrtc.media.ReplyTrack`) instead, as OpenAI's WebRTC does;
* client messages on the data channel are handled by ``on_message``, one at a time, at
  most :data:`MAX_PENDING` waiting: a peer that sends faster has the excess dropped and
  is told so once per burst (one ``overloaded`` error until the queue has drained), so
  refusing costs less than accepting;
* a reply cancelled (by speech, by the client, by a newer turn) stops sounding at once,
  and what was heard of it is logged (``response.truncated``), as it is when speech
  comes over a reply still playing with ``immediate`` interruptions; a reply paused for
  speech over it (``confirmed`` interruptions) holds its place and plays on if resumed;
* the call ends when the peer hangs up (the connection closes or fails), when
  :meth:`hangup` is called, when the peer has sent no ICE check within
  ``ice_start_timeout_s`` (``ice_not_started``: it posted an offer and never came), or
  when ICE has not connected within ``ice_timeout_s`` (``ice_timeout``); ``on_end`` is
  called once, with why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from pipeline.aio import aclose_stream
from pipeline.session import LiveSession
from pipeline.webrtc.media import ReplyTrack, listen_in_order, microphone, on_first_check
from pipeline.webrtc.offer import unparsable
from schemas import (
    ErrorCode,
    ErrorEvent,
    Event,
    InvalidAudioError,
    OverloadedError,
    ProtocolError,
    ResponseAudioChunk,
    ResponseCancelled,
    ResponsePaused,
    ResponseResumed,
    SpeechStarted,
    VoxlineError,
)

__all__ = ["EVENTS_CHANNEL", "MAX_PENDING", "WebRtcCall"]

logger = logging.getLogger(__name__)

#: the data channel OpenAI's clients open for the events
EVENTS_CHANNEL = "oai-events"
#: client events received and not yet applied, at most
MAX_PENDING = 64


class WebRtcCall:
    """See the module docstring. One call, one session; not reusable.

    ``frames`` writes one log event as the data channel's messages (none, one or more),
    ``channel`` is the data channel's label; the peer must open it."""

    def __init__(
        self,
        session: LiveSession,
        events: AsyncIterator[Event],
        frames: Callable[[Event], list[str]],
        *,
        channel: str = EVENTS_CHANNEL,
        on_message: Callable[[str], Awaitable[list[str]]],
        on_end: Callable[[str], Awaitable[None]],
        greeting: str,
        ice_timeout_s: float = 30.0,
        ice_start_timeout_s: float = 10.0,
        max_buffer_s: float = 30.0,
        jitter_packets: int = 2,
        reply_lead_frames: int = 0,
    ) -> None:
        from aiortc import RTCPeerConnection

        self.session = session
        self._events = events
        self._frames = frames
        self._label = channel
        self._on_message = on_message
        self._on_end = on_end
        self._greeting = greeting
        self._ice_timeout_s = ice_timeout_s
        self._ice_start_timeout_s = min(ice_start_timeout_s, ice_timeout_s)
        self._jitter_packets = jitter_packets
        self.track = ReplyTrack(max_buffer_s, lead_frames=reply_lead_frames)
        self.pc: Any = RTCPeerConnection()
        self._channel: Any = None
        self._channel_open = asyncio.Event()
        self._connected = asyncio.Event()
        self._checked = asyncio.Event()  # the peer's first ICE check came
        self._refused = False  # this burst of too many client events was refused
        self._inbox: asyncio.Queue[str | bytes] = asyncio.Queue(MAX_PENDING)
        self._tasks: set[asyncio.Task[None]] = set()
        self._ended = asyncio.Event()
        self.end_reason: str | None = None

    @property
    def channel(self) -> str:
        """The label of the data channel the call's events travel on."""
        return self._label

    async def answer(self, offer_sdp: str) -> str:
        """The SDP answer to the caller's offer (one :func:`~pipeline.webrtc.bound_offer`
        passed: aiortc's own work on it is bounded); ``invalid_message`` for SDP that does
        not parse, ``unsupported_format`` for an offer with no audio this server
        decodes."""
        from aiortc import RTCSessionDescription
        from aiortc.sdp import SessionDescription

        pc = self.pc
        pc.on("track", self._on_track)
        pc.on("datachannel", self._on_datachannel)
        pc.on("connectionstatechange", self._on_state)
        try:  # aiortc's parser fails in many ways: each is the peer's SDP at fault
            SessionDescription.parse(offer_sdp)
        except Exception as exc:
            logger.info("an SDP offer does not parse: %r", exc)  # Python's words stay here
            # naming the line parses again, ~10 times: off the loop (~20 ms for 500 lines)
            raise await asyncio.to_thread(unparsable, offer_sdp,
                                          SessionDescription.parse) from None
        try:
            await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            logger.info("an SDP offer cannot be answered: %r", exc)
            raise ProtocolError("the SDP offer is not one this server can answer (its media "
                                "sections, BUNDLE group, ICE or DTLS parameters)",
                                code=ErrorCode.INVALID_MESSAGE, param="sdp") from None
        listen_in_order(pc, self._jitter_packets)
        audio = [t for t in pc.getTransceivers() if t.kind == "audio"]
        if not audio:
            raise InvalidAudioError("the offer has no audio: offer a microphone track "
                                    "(sendrecv)", code=ErrorCode.UNSUPPORTED_FORMAT)
        audio[0].sender.replaceTrack(self.track)
        audio[0].direction = "sendrecv"
        try:
            await pc.setLocalDescription(await pc.createAnswer())
        except (ValueError, KeyError) as exc:  # no codec in common, say
            logger.info("an SDP offer has no codec in common: %r", exc)
            raise InvalidAudioError("no audio codec in common with the offer (this server "
                                    "speaks Opus)", code=ErrorCode.UNSUPPORTED_FORMAT) from None
        on_first_check(pc, self._checked.set)
        sdp: str = pc.localDescription.sdp
        if "opus/48000" not in sdp.lower():  # every browser offers it; the call runs at 48 kHz
            raise InvalidAudioError("the offer has no Opus audio",
                                    code=ErrorCode.UNSUPPORTED_FORMAT)
        self._spawn(self._send_log(), "log")
        self._spawn(self._watch_ice(), "ice")
        self.session.emitter.on_unlogged.append(self._unlogged)
        return sdp

    async def hangup(self, reason: str = "hangup") -> None:
        """End the call (idempotent): the tasks stop, the peer connection closes."""
        if self._ended.is_set():
            return
        self._ended.set()
        self.end_reason = reason
        with contextlib.suppress(ValueError):  # not listening before the answer
            self.session.emitter.on_unlogged.remove(self._unlogged)
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        await asyncio.gather(*(t for t in self._tasks if t is not current),
                             return_exceptions=True)
        self.track.stop()
        with contextlib.suppress(Exception):
            await self.pc.close()
        await aclose_stream(self._events)
        await self._on_end(reason)

    async def silence(self) -> str | None:
        """Stop the reply sounding now (the peer asked): its unplayed audio is dropped and
        what was heard logged. Returns the reply's turn (None: nothing was playing)."""
        turn_id = self.track.turn_id if self.track.buffered_ms else None
        await self._cut(turn_id)
        return turn_id

    async def wait(self) -> str | None:
        await self._ended.wait()
        return self.end_reason

    # ---- peer connection events ---------------------------------------------------------

    def _on_track(self, track: Any) -> None:
        if track.kind == "audio":
            self._spawn(self._listen(track), "microphone")

    def _on_datachannel(self, channel: Any) -> None:
        if channel.label != self._label:
            return
        self._channel = channel
        channel.on("message", self._queue_message)
        channel.on("close", lambda: self._spawn(self.hangup("hangup"), "hangup"))
        if channel.readyState == "open":
            self._opened()
        else:
            channel.on("open", self._opened)

    def _opened(self) -> None:
        if self._greeting:  # none for a peer that resumes
            self._channel.send(self._greeting)
        self._channel_open.set()
        self._spawn(self._receive(), "events")

    async def _on_state(self) -> None:
        if self.pc.connectionState == "connected":
            self._connected.set()
        elif self.pc.connectionState in ("failed", "closed"):
            self._spawn(self.hangup("hangup"), "hangup")

    # ---- the call's work ------------------------------------------------------------------

    async def _listen(self, track: Any) -> None:
        async for pcm in microphone(track):
            try:
                await self.session.push_audio(pcm)
            except VoxlineError as exc:
                await self.session.reject(exc)

    def _queue_message(self, message: str | bytes) -> None:
        """Client events are applied one at a time, in order (an item, then the
        ``response.create`` that answers it); past ``MAX_PENDING`` waiting, the event is
        dropped, and the peer is told it is too fast once for the burst (the data channel
        cannot be paused: aiortc hands over every message it receives)."""
        try:
            self._inbox.put_nowait(message)
        except asyncio.QueueFull:
            if not self._refused:
                self._refused = True
                self._spawn(self.session.reject(OverloadedError(
                    f"more than {MAX_PENDING} client events wait: this one and those "
                    "after it until they are applied are dropped; slow down",
                    retry_after_ms=100)), "event")

    async def _receive(self) -> None:
        while True:
            if self._inbox.empty():
                self._refused = False  # drained: the next burst is told again
            message = await self._inbox.get()
            try:
                if isinstance(message, bytes):
                    raise ProtocolError("the events channel carries JSON text",
                                        code=ErrorCode.INVALID_MESSAGE)
                for frame in await self._on_message(message):
                    self._send(frame)
            except VoxlineError as exc:
                await self.session.reject(exc)

    async def _send_log(self) -> None:
        await self._channel_open.wait()
        async for event in self._events:
            if isinstance(event, ResponseAudioChunk):
                await self.track.play(event.turn_id, event.data.audio)
            elif isinstance(event, ResponseCancelled):
                await self._cut(event.turn_id)
            elif (isinstance(event, SpeechStarted) and self.track.buffered_ms
                  and self.session.settings.interruptions == "immediate"):
                await self._cut(self.track.turn_id)
            elif isinstance(event, ResponsePaused) and event.turn_id == self.track.turn_id:
                self.track.pause()
            elif isinstance(event, ResponseResumed) and event.turn_id == self.track.turn_id:
                self.track.resume()
            for frame in self._frames(event):
                self._send(frame)
            if event.type == "session.closed":
                self._spawn(self.hangup("closed"), "hangup")
                return

    async def _cut(self, turn_id: str | None) -> None:
        """The reply stops sounding: drop the unplayed audio, log what was heard."""
        if not self.track.buffered_ms or turn_id is None or turn_id != self.track.turn_id:
            return
        heard_ms = self.track.clear()
        try:
            await self.session.truncate_response(turn_id, heard_ms)
        except VoxlineError as exc:
            logger.info("call on %s: reply %s not truncated: %s",
                        self.session.session_id, turn_id, exc)

    async def _watch_ice(self) -> None:
        """Hang up a call whose peer sends no ICE check within ``ice_start_timeout_s``,
        or whose connection is not up within ``ice_timeout_s``."""
        started = asyncio.get_running_loop().time()
        try:
            await asyncio.wait_for(self._checked.wait(), self._ice_start_timeout_s)
        except TimeoutError:
            if not self._connected.is_set():
                self._spawn(self.hangup("ice_not_started"), "hangup")
                return
        left_s = self._ice_timeout_s - (asyncio.get_running_loop().time() - started)
        try:
            await asyncio.wait_for(self._connected.wait(), max(0.0, left_s))
        except TimeoutError:
            self._spawn(self.hangup("ice_timeout"), "hangup")

    def _unlogged(self, exc: VoxlineError) -> None:
        """A turn's end the log would not take (:meth:`SessionEmitter.unlogged`): the
        peer, reading the log on the channel, would wait for it forever; it is told, and
        the call ends (as a socket closes with 4503), to call again once the log is back."""
        for frame in self._frames(ErrorEvent(session_id=self.session.session_id,
                                             data=exc.to_payload())):
            self._send(frame)
        self._spawn(self.hangup(exc.code.value), "hangup")

    def _send(self, text: str) -> None:
        if self._channel is not None and self._channel.readyState == "open":
            self._channel.send(text)

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        if self._ended.is_set() and name != "hangup":
            work.close()  # the call is over: nothing more starts
            return
        task = asyncio.create_task(work, name=f"webrtc-{name}-{self.session.session_id}")
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("call on %s: %s failed", self.session.session_id, task.get_name(),
                         exc_info=exc)

