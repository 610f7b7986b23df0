"""One WebRTC call on a live session: its audio on a track both ways, its events on a
data channel.

The browser (or any WebRTC peer) sends an SDP offer with an audio track and a data
channel (``oai-events`` for OpenAI's clients, ``voxline-events`` for Voxline's page);
:meth:`WebRtcCall.answer` answers it. Then:

* the caller's audio (Opus, decoded by aiortc) goes into the session as it comes: the
  session's input is PCM16 at 48 kHz, and its VAD and turn detection hear it as they
  hear a socket's audio;
* the data channel is served as a socket is (``serve``, given the channel as an
  :class:`~pipeline.webrtc.channel.EventsChannel`): the session's log goes out on it in
  log order, each event written by the protocol that made the call (OpenAI's server
  events without their audio deltas, or Voxline's events with the audio left out of
  ``response.audio.chunk``), and the client's messages come in on it, one at a time and
  bounded; the reply's audio (PCM16 at 48 kHz in the log) plays on the call's audio
  track (:class:`~pipeline.webrtc.media.ReplyTrack`) instead, as OpenAI's WebRTC does:
  the server calls :meth:`WebRtcCall.follow` with each log event before it frames it;
* a reply cancelled (by speech, by the client, by a newer turn) stops sounding at once,
  and what was heard of it is logged (``response.truncated``), as it is when speech
  comes over a reply still playing with ``immediate`` interruptions; a reply paused for
  speech over it (``confirmed`` interruptions) holds its place and plays on if resumed;
* the call ends when the peer hangs up (the connection or the channel closes, or the
  connection fails), when the server closes the channel (the session closed, or a
  refusal such as a turn's end the log would not take), when :meth:`hangup` is called,
  when the peer has sent no ICE check within ``ice_start_timeout_s``
  (``ice_not_started``: it posted an offer and never came), or when ICE has not
  connected within ``ice_timeout_s`` (``ice_timeout``); ``on_end`` is called once, with
  why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from pipeline.session import LiveSession
from pipeline.webrtc.channel import MAX_PENDING, EventsChannel
from pipeline.webrtc.media import ReplyTrack, listen_in_order, microphone, on_first_check
from pipeline.webrtc.offer import unparsable
from schemas import (
    ErrorCode,
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

__all__ = ["EVENTS_CHANNEL", "WebRtcCall"]

logger = logging.getLogger(__name__)

#: the data channel OpenAI's clients open for the events
EVENTS_CHANNEL = "oai-events"
#: the close code of a channel closed because its session closed (a WebSocket's normal
#: close): the call ends as ``closed``; other codes end it with their reason
_SESSION_CLOSED = 1000


class WebRtcCall:
    """See the module docstring. One call, one session; not reusable.

    ``serve`` serves the events channel once it is open, until the channel closes or the
    call ends; ``channel`` is the data channel's label (the peer must open it)."""

    def __init__(
        self,
        session: LiveSession,
        serve: Callable[[EventsChannel], Coroutine[Any, Any, None]],
        *,
        channel: str = EVENTS_CHANNEL,
        on_end: Callable[[str], Awaitable[None]],
        ice_timeout_s: float = 30.0,
        ice_start_timeout_s: float = 10.0,
        max_buffer_s: float = 30.0,
        jitter_packets: int = 2,
        reply_lead_frames: int = 0,
        max_pending: int = MAX_PENDING,
    ) -> None:
        from aiortc import RTCPeerConnection

        self.session = session
        self._serve = serve
        self._label = channel
        self._on_end = on_end
        self._ice_timeout_s = ice_timeout_s
        self._ice_start_timeout_s = min(ice_start_timeout_s, ice_timeout_s)
        self._jitter_packets = jitter_packets
        self._max_pending = max_pending
        self.track = ReplyTrack(max_buffer_s, lead_frames=reply_lead_frames)
        self.pc: Any = RTCPeerConnection()
        self._channel: EventsChannel | None = None
        self._connected = asyncio.Event()
        self._checked = asyncio.Event()  # the peer's first ICE check came
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
        self._spawn(self._watch_ice(), "ice")
        return sdp

    async def hangup(self, reason: str = "hangup") -> None:
        """End the call (idempotent): the tasks stop, the peer connection closes."""
        if self._ended.is_set():
            return
        self._ended.set()
        self.end_reason = reason
        if self._channel is not None:
            self._channel.gone()
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        await asyncio.gather(*(t for t in self._tasks if t is not current),
                             return_exceptions=True)
        self.track.stop()
        with contextlib.suppress(Exception):
            await self.pc.close()
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
        if channel.label != self._label or self._channel is not None:
            return
        self._channel = EventsChannel(channel, on_overflow=self._overflowed,
                                      on_close=self._closed_by_server,
                                      max_pending=self._max_pending)
        channel.on("close", lambda: self._spawn(self.hangup("hangup"), "hangup"))
        if channel.readyState == "open":
            self._opened()
        else:
            channel.on("open", self._opened)

    def _opened(self) -> None:
        if self._channel is not None:
            self._spawn(self._serve(self._channel), "events")

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

    def _overflowed(self) -> None:
        self._spawn(self.session.reject(OverloadedError(
            f"more than {self._max_pending} client events wait: this one and those after it "
            "until they are applied are dropped; slow down", retry_after_ms=100)), "event")

    def _closed_by_server(self, code: int, reason: str) -> None:
        self._spawn(self.hangup("closed" if code == _SESSION_CLOSED else reason), "hangup")

    async def follow(self, event: Event) -> None:
        """What the track does for one log event, before the event is framed: play a
        reply's audio, stop at a cancel (or, with ``immediate`` interruptions, at speech
        over the reply), hold at a pause and play on at a resume."""
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

