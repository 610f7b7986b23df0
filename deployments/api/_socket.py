"""The one socket skeleton every WebSocket transport runs, and what they share: the log's
tail as the outgoing side, the receive loop, refusing a socket, and finishing a session
when its client leaves.

A transport is a :class:`SocketCodec`: how its socket opens (authenticate, open or attach
a session, what it greets with and from where it sends), how it writes a log event
(a :class:`Framing`) and reads a text frame, and how it ends. :func:`serve_socket` is the
rest, the same for all: accept, open (a :class:`VoxlineError` is one refusal frame and a
4000 + status close), greet, tail the log (:class:`LogSender`), receive until the client
leaves, finish. ``/v1/sessions/{id}/ws`` (Voxline's events,
:mod:`deployments.api.session_socket`), ``/v1/realtime`` (OpenAI's,
:mod:`deployments.api.openai_realtime`) and ``/v1/twilio/media`` (Twilio's Media Streams,
:mod:`deployments.api.twilio`) are codecs; the session, the log, resume, limits and
back-pressure are this code. (WebRTC's data channel is not a WebSocket: its call,
:mod:`pipeline.webrtc`, takes the same kind of framing and message handler.)

A server that is stopping closes every socket with 1012 (``Service Restart``, reason
``server_draining``) once running turns had their grace (``Connections.drain``): the client
reconnects, to another replica or the restarted server, and resumes from its last id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from fastapi import WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from deployments.api._auth import accepted_subprotocol
from deployments.api._connections import close_to_resume
from deployments.api._services import Services, get_services
from deployments.api._sse import resync_required
from pipeline.aio import aclose_stream, reraise_lost_cancel
from pipeline.log import LogFanout
from pipeline.session import LiveSession
from pipeline.tracing import DeliverySpans
from schemas import (
    ErrorCode,
    ErrorEvent,
    Event,
    InputTooLargeError,
    ProtocolError,
    ResyncRequiredError,
    VoxlineError,
)


class Framing(Protocol):
    """How one socket writes what it sends."""

    def frames(self, event: Event) -> list[str]:
        """The text frames for one log event (none, one or several)."""
        ...

    def refusal(self, session_id: str, exc: VoxlineError) -> str | None:
        """The frame sent before the socket is closed for ``exc`` (None: none)."""
        ...


class Translator(Protocol):
    """Log events as another protocol's messages (JSON objects)."""

    def frames(self, event: Event) -> list[dict[str, Any]]: ...


class JsonFraming:
    """A translator's messages as JSON text frames (OpenAI's events, Twilio's messages).
    A refusal sends no frame (the close code and reason say it) unless a subclass writes
    one."""

    def __init__(self, translator: Translator) -> None:
        self.translator = translator

    def frames(self, event: Event) -> list[str]:
        return [json.dumps(frame) for frame in self.translator.frames(event)]

    def refusal(self, session_id: str, exc: VoxlineError) -> str | None:
        return None


class NativeFraming:
    """Voxline's own protocol: each event as it is in the log."""

    def frames(self, event: Event) -> list[str]:
        return [event.model_dump_json()]

    def refusal(self, session_id: str, exc: VoxlineError) -> str:
        frame = (resync_required(session_id, exc) if isinstance(exc, ResyncRequiredError)
                 else ErrorEvent(session_id=session_id, data=exc.to_payload()))
        return frame.model_dump_json()


class LogSender:
    """Sends the session's log from a cursor on, at once or after a window for resume.

    It reads through the replica's shared reader (:class:`pipeline.log.LogFanout`): an
    idle socket holds no Redis connection. A client too slow to take what the log holds
    for it is closed with 4503 ``overloaded`` (``details.last_event_id``), to reconnect
    with that id; nothing is lost, the log has it. Frames not from the log (greetings,
    acknowledgements) go through :meth:`send`, never interleaved with the tail's.
    """

    def __init__(
        self, ws: WebSocket, tails: LogFanout, session_id: str, framing: Framing,
        deliveries: DeliverySpans | None = None,
    ) -> None:
        self.ws = ws
        self.tails = tails
        self.session_id = session_id
        self.framing = framing
        #: tracing on: what a listener waits for becomes a span once it is sent
        self.deliveries = deliveries
        self.task: asyncio.Task[None] | None = None
        self.sent = 0
        self._go = asyncio.Event()
        self._lock = asyncio.Lock()
        self._failing: asyncio.Task[None] | None = None

    def start(self, after: str | None, *, delay_s: float = 0.0) -> None:
        if delay_s <= 0:
            self._go.set()
        self.task = asyncio.create_task(self._run(after, delay_s),
                                        name=f"ws-send-{self.session_id}")

    def go(self) -> None:
        """The client spoke: start sending now if still waiting for a resume."""
        self._go.set()

    async def send(self, text: str) -> None:
        """One frame that is not from the log (a client that left is not an error)."""
        async with self._lock:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                await self.ws.send_text(text)

    def fail(self, exc: VoxlineError) -> None:
        """The session could not log how a turn ended (the log unavailable past its
        grace): stop the tail and close with ``exc`` (4503), so the client resumes from
        its last event once the log is back, instead of waiting on a log that will never
        say (:meth:`pipeline.session.SessionEmitter.unlogged`)."""
        if self._failing is None:
            self._failing = asyncio.create_task(self._fail(exc),
                                                name=f"ws-fail-{self.session_id}")

    async def _fail(self, exc: VoxlineError) -> None:
        await self.stop()
        async with self._lock:
            await refuse(self.ws, exc, self.framing.refusal(self.session_id, exc))

    async def resume(self, after: str) -> None:
        if self.sent:
            raise ProtocolError(
                "session.resume must come before the socket has sent events; "
                "reconnect with ?last_event_id= instead",
                code=ErrorCode.INVALID_MESSAGE,
            )
        await self.stop()
        self.start(after)

    async def stop(self) -> None:
        """Cancel the sending task (waiting at most a second for it to end)."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.wait({self.task}, timeout=1.0)
            self.task = None

    async def _run(self, after: str | None, delay_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._go.wait(), delay_s or None)
        reraise_lost_cancel()
        tail = self.tails.tail(self.session_id, after)
        try:
            async for event in tail:
                for frame in self.framing.frames(event):
                    async with self._lock:
                        await self.ws.send_text(frame)
                if self.deliveries is not None:
                    self.deliveries.delivered(event)
                self.sent += 1
                if event.type == "session.closed":
                    await self.ws.close(code=1000, reason="session closed")
                    return
        except VoxlineError as exc:  # trimmed, the log unavailable, or the client fell behind
            await refuse(self.ws, exc, self.framing.refusal(self.session_id, exc))
        except (WebSocketDisconnect, RuntimeError):  # the client is gone
            return
        finally:  # leave the shared reader now, not when the generator is collected
            await aclose_stream(tail)


async def refuse(ws: WebSocket, exc: VoxlineError, frame: str | None) -> None:
    """One frame (not in the log: the session may not even exist; ``None``: a protocol
    with no error frame), then close with 4000 + the error's HTTP status and its code as
    the reason."""
    with contextlib.suppress(Exception):
        if ws.client_state is WebSocketState.CONNECTED:
            if frame is not None:
                await ws.send_text(frame)
            await ws.close(code=4000 + exc.http_status, reason=exc.code.value)


async def receive(
    ws: WebSocket,
    session: LiveSession,
    sender: LogSender,
    services: Services,
    on_text: Callable[[str], Awaitable[None]],
    *,
    binary_audio: bool = True,
) -> None:
    """The client's frames until it leaves: binary frames are audio in the session's
    ``input_format`` at its input rate (checked against ``max_message_bytes``; without
    ``binary_audio`` the protocol has none and each is an ``invalid_message``), text
    frames go to ``on_text``. A :class:`VoxlineError` either raises is answered in the
    log (``error``), and the session goes on."""
    limit = services.settings.api.max_message_bytes
    services.connections.sockets[ws] = session.session_id  # the drain closes it: resume elsewhere
    try:
        if services.admission.draining:  # opened as the drain closed the others
            await close_to_resume(ws)
        await _receive(ws, session, sender, limit, on_text, binary_audio)
    finally:
        services.connections.sockets.pop(ws, None)


async def _receive(
    ws: WebSocket, session: LiveSession, sender: LogSender, limit: int,
    on_text: Callable[[str], Awaitable[None]], binary_audio: bool,
) -> None:
    while True:
        try:
            message = await ws.receive()
        except (WebSocketDisconnect, RuntimeError):
            return
        if message["type"] == "websocket.disconnect":
            return
        try:
            if (data := message.get("bytes")) is not None:
                if not binary_audio:
                    raise ProtocolError(
                        "binary frames are not part of this protocol; send audio as "
                        "input_audio_buffer.append (base64) in a text frame", size=len(data))
                if len(data) > limit:
                    raise InputTooLargeError(
                        f"audio frame of {len(data)} bytes is over the limit of {limit}",
                        limit=limit, size=len(data))
                sender.go()
                await session.push_audio(data)
            elif (text := message.get("text")) is not None:
                await on_text(text)
        except VoxlineError as exc:
            try:
                if exc.code is not ErrorCode.SESSION_ERASED:
                    await session.reject(exc)
                    continue
            except VoxlineError as answered:
                exc = answered
            if exc.code is ErrorCode.SESSION_ERASED:  # erased meanwhile: nothing to go on
                await refuse(ws, exc, None)
                return
            raise


async def finish(session: LiveSession, services: Services) -> None:
    """The client left: let a running reply finish into the log (bounded), then stop.
    A server that is stopping gave running replies their grace already."""
    wait_s = 0.0 if services.admission.draining else services.settings.api.drain_s
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(session.wait_response()), wait_s)
    await services.connections.release(session)


@dataclass
class Opened:
    """A socket's session, once its codec opened it."""

    session: LiveSession
    #: how log events are written to this client
    framing: Framing
    #: the log id the socket sends after (None: from the start)
    after: str | None
    #: frames sent first, not from the log (a greeting)
    greeting: list[str] = field(default_factory=list)
    #: how long the tail waits for a resume before it sends (0: at once)
    delay_s: float = 0.0


class SocketCodec(ABC):
    """One transport's part of a socket; one instance per connection."""

    #: whose deliveries these are (tracing's reader name)
    name: ClassVar[str]
    #: binary frames are audio in the session's input format (else each is refused)
    binary_audio: ClassVar[bool] = False

    def subprotocol(self, ws: WebSocket) -> str | None:
        """The subprotocol the socket is accepted with."""
        return accepted_subprotocol(ws)

    def refusal(self, exc: VoxlineError) -> str | None:
        """The frame sent before a socket that could not open is closed (None: none)."""
        return None

    @abstractmethod
    async def open(self, ws: WebSocket, services: Services) -> Opened | None:
        """Authenticate and open the session (raise a :class:`VoxlineError` to refuse;
        None: the client left before there was anything to open)."""

    @abstractmethod
    async def on_text(self, text: str, sender: LogSender) -> None:
        """One text frame from the client."""

    async def closed(self, session: LiveSession, services: Services) -> None:
        """The client left: by default a running reply finishes into the log first."""
        await finish(session, services)


async def serve_socket(ws: WebSocket, codec: SocketCodec) -> None:
    """Serve one socket with ``codec``, from its handshake to its end."""
    services = get_services(ws)
    await ws.accept(subprotocol=codec.subprotocol(ws))
    try:
        opened = await codec.open(ws, services)
    except VoxlineError as exc:
        await refuse(ws, exc, codec.refusal(exc))
        return
    if opened is None:
        return
    session = opened.session
    sender = LogSender(ws, services.tails, session.session_id, opened.framing,
                       services.deliveries(codec.name))
    for frame in opened.greeting:
        await sender.send(frame)
    sender.start(opened.after, delay_s=opened.delay_s)

    async def on_text(text: str) -> None:
        await codec.on_text(text, sender)

    session.emitter.on_unlogged.append(sender.fail)
    try:
        await receive(ws, session, sender, services, on_text, binary_audio=codec.binary_audio)
    finally:
        session.emitter.on_unlogged.remove(sender.fail)
        await sender.stop()
        await codec.closed(session, services)
