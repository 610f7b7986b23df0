"""The one connection skeleton every transport runs: a socket's, and a WebRTC call's
events channel.

A transport is a :class:`Codec`: how its client's text messages are applied, how the
session's log is written to it (a :class:`~deployments.api._log_sender.Framing`) and,
for a WebSocket (a :class:`SocketCodec`), how the socket opens (authenticate, open or
attach a session, what it greets with and from where it sends) and how it ends.
:func:`serve` is the rest, the same for every connection (:class:`~deployments.api._peer.Peer`):
greet, tail the log (:class:`~deployments.api._log_sender.LogSender`), receive until the
client leaves. :func:`serve_socket` adds a WebSocket's own part around it: accept, open
(a :class:`VoxlineError` is one refusal frame and a 4000 + status close), finish.
``/v1/sessions/{id}/ws`` (Voxline's events, :mod:`deployments.api.session_socket`),
``/v1/realtime`` (OpenAI's, :mod:`deployments.api.openai_realtime`) and
``/v1/twilio/media`` (Twilio's Media Streams, :mod:`deployments.api.twilio`) are socket
codecs; a call's events channel (``/v1/realtime/calls``, :mod:`deployments.api.webrtc`;
``/v1/sessions/{id}/calls``, :mod:`deployments.api.session_calls`) is served by the same
:func:`serve` with a codec of the same protocol once its offer is answered
(:mod:`deployments.api._calls`). The session, the log, resume, limits and back-pressure
are this code.

A server that is stopping closes every socket with 1012 (``Service Restart``, reason
``server_draining``) once running turns had their grace (``Connections.drain``): the client
reconnects, to another replica or the restarted server, and resumes from its last id.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import ClassVar

from fastapi import WebSocket

from deployments.api._auth import accepted_subprotocol
from deployments.api._connections import close_to_resume
from deployments.api._log_sender import Framing, LogSender
from deployments.api._peer import Peer, WebSocketPeer, refuse
from deployments.api._services import Services, get_services
from pipeline.session import LiveSession
from schemas import (
    ErrorCode,
    Event,
    InputTooLargeError,
    ProtocolError,
    VoxlineError,
)


async def receive(
    peer: Peer, session: LiveSession, sender: LogSender, codec: Codec, limit: int,
) -> None:
    """The client's messages until it leaves: binary ones are audio in the session's
    ``input_format`` at its input rate (checked against ``max_message_bytes``; a codec
    without ``binary_audio`` has none, and each is an ``invalid_message``), text ones go
    to the codec. A :class:`VoxlineError` either raises is answered in the log
    (``error``), and the session goes on."""
    while (message := await peer.receive()) is not None:
        try:
            if isinstance(message, bytes):
                if not codec.binary_audio:
                    raise ProtocolError(codec.binary_refusal, size=len(message))
                if len(message) > limit:
                    raise InputTooLargeError(
                        f"audio frame of {len(message)} bytes is over the limit of {limit}",
                        limit=limit, size=len(message))
                sender.go()
                await session.push_audio(message)
            else:
                await codec.on_text(message, sender)
        except VoxlineError as exc:
            try:
                if exc.code is not ErrorCode.SESSION_ERASED:
                    await session.reject(exc)
                    continue
            except VoxlineError as answered:
                exc = answered
            if exc.code is ErrorCode.SESSION_ERASED:  # erased meanwhile: nothing to go on
                await refuse(peer, exc, None)
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
    """A connection's session, once its codec (or its call) opened it."""

    session: LiveSession
    #: how log events are written to this client
    framing: Framing
    #: the log id the connection sends after (None: from the start)
    after: str | None
    #: frames sent first, not from the log (a greeting)
    greeting: list[str] = field(default_factory=list)
    #: how long the tail waits for a resume before it sends (0: at once)
    delay_s: float = 0.0
    #: what else each log event does before it is framed (a call's track plays its audio)
    follow: Callable[[Event], Awaitable[None]] | None = None


class Codec(ABC):
    """One protocol's part of a connection; one instance per connection."""

    #: whose deliveries these are (tracing's reader name)
    name: ClassVar[str]
    #: binary messages are audio in the session's input format (else each is refused)
    binary_audio: ClassVar[bool] = False
    #: what a binary message is told where there is no binary audio
    binary_refusal: ClassVar[str] = "binary frames are not part of this protocol"

    @abstractmethod
    async def on_text(self, text: str, sender: LogSender) -> None:
        """One text message from the client (what it answers: ``sender.send``)."""


class SocketCodec(Codec):
    """A WebSocket transport's codec: it also opens the socket's session and ends it."""

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

    async def closed(self, session: LiveSession, services: Services) -> None:
        """The client left: by default a running reply finishes into the log first."""
        await finish(session, services)


async def serve(peer: Peer, opened: Opened, codec: Codec, services: Services) -> None:
    """Serve an opened connection until its client leaves: the greeting, the log's tail
    out (a turn's end the log would not take closes it with 4503, so the client resumes
    once the log is back), the client's messages in."""
    session = opened.session
    sender = LogSender(peer, services.tails, session.session_id, opened.framing,
                       services.deliveries(codec.name), follow=opened.follow)
    for frame in opened.greeting:
        await sender.send(frame)
    sender.start(opened.after, delay_s=opened.delay_s)
    session.emitter.on_unlogged.append(sender.fail)
    try:
        await receive(peer, session, sender, codec, services.settings.api.max_message_bytes)
    finally:
        session.emitter.on_unlogged.remove(sender.fail)
        await sender.stop()


async def serve_socket(ws: WebSocket, codec: SocketCodec) -> None:
    """Serve one socket with ``codec``, from its handshake to its end."""
    services = get_services(ws)
    peer = WebSocketPeer(ws)
    await ws.accept(subprotocol=codec.subprotocol(ws))
    try:
        opened = await codec.open(ws, services)
    except VoxlineError as exc:
        await refuse(peer, exc, codec.refusal(exc))
        return
    if opened is None:
        return
    # the drain closes it, for its client to resume elsewhere
    services.connections.sockets[ws] = opened.session.session_id
    try:
        if services.admission.draining:  # opened as the drain closed the others
            await close_to_resume(ws)
        await serve(peer, opened, codec, services)
    finally:
        services.connections.sockets.pop(ws, None)
        await codec.closed(opened.session, services)
