"""What the connection skeleton talks to: a client at the other end of a WebSocket or of a
WebRTC call's events channel, seen alike.

The skeleton (:mod:`deployments.api._socket`) needs three things of a connection: the
client's next message (text or binary; ``None`` once it left), sending a text frame, and
closing with a code and a reason. :class:`WebSocketPeer` gives them over Starlette's
WebSocket; :class:`pipeline.webrtc.EventsChannel` over a call's data channel. Sending to
a client that left raises a :class:`ConnectionError` (:class:`PeerGoneError` here), which
the skeleton takes as the client's leaving, never as a fault.
"""

from __future__ import annotations

import contextlib
from typing import Protocol

from fastapi import WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from schemas import VoxlineError


class Peer(Protocol):
    """A client's connection, as the skeleton sees it."""

    @property
    def connected(self) -> bool:
        """Frames can still be sent."""
        ...

    async def receive(self) -> str | bytes | None:
        """The client's next message (None: it left)."""
        ...

    async def send_text(self, text: str) -> None:
        """One text frame (a :class:`ConnectionError` when the client left)."""
        ...

    async def close(self, code: int, reason: str) -> None:
        """End the connection with a WebSocket close code and reason."""
        ...


class PeerGoneError(ConnectionError):
    """The client left: nothing more can be sent to it."""


class WebSocketPeer:
    """A WebSocket as a :class:`Peer`."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws

    @property
    def connected(self) -> bool:
        return self.ws.client_state is WebSocketState.CONNECTED

    async def receive(self) -> str | bytes | None:
        while True:
            try:
                message = await self.ws.receive()
            except (WebSocketDisconnect, RuntimeError):
                return None
            if message["type"] == "websocket.disconnect":
                return None
            if (data := message.get("bytes")) is not None:
                return bytes(data)
            if (text := message.get("text")) is not None:
                return str(text)

    async def send_text(self, text: str) -> None:
        try:
            await self.ws.send_text(text)
        except (WebSocketDisconnect, RuntimeError) as exc:  # closed, or closing
            raise PeerGoneError("the client left") from exc

    async def close(self, code: int, reason: str) -> None:
        try:
            await self.ws.close(code=code, reason=reason)
        except (WebSocketDisconnect, RuntimeError) as exc:
            raise PeerGoneError("the client left") from exc


async def refuse(peer: Peer, exc: VoxlineError, frame: str | None) -> None:
    """One frame (not in the log: the session may not even exist; ``None``: a protocol
    with no error frame), then close with 4000 + the error's HTTP status and its code as
    the reason."""
    with contextlib.suppress(Exception):
        if peer.connected:
            if frame is not None:
                await peer.send_text(frame)
            await peer.close(4000 + exc.http_status, exc.code.value)
