"""A call's events data channel as a peer a socket skeleton can serve: messages received
one at a time through a bounded inbox, frames sent as they come, a close that ends the
call.

The data channel is what a WebSocket is to the native socket and OpenAI's Realtime
socket: its messages are the client's events, and what is sent on it is the session's
log, framed by the protocol that opened it. So the same skeleton serves both
(``deployments.api._socket``): this class gives it the three things it needs of a
connection, :meth:`receive`, :meth:`send_text` and :meth:`close`. What differs is the
wire: aiortc hands over every message it receives (a data channel cannot be paused, as a
socket's reader can), so the inbox is bounded and a peer that sends faster than its
events are applied has the excess dropped and is told so once per burst (refusing costs
less than accepting); and sending never waits (SCTP buffers it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["MAX_PENDING", "ChannelClosedError", "EventsChannel"]

#: client events received and not yet applied, at most, by default
#: (``VOXLINE_WEBRTC__MAX_PENDING_EVENTS``)
MAX_PENDING = 64


class ChannelClosedError(ConnectionError):
    """The data channel is closed: nothing more can be sent on it."""


class EventsChannel:
    """One call's events channel (an aiortc ``RTCDataChannel``), seen as a peer.

    ``on_overflow`` is called once per burst of messages dropped past ``max_pending``
    waiting; ``on_close`` with the code and reason when the server closes the channel
    (the call then ends: a call has no second channel to go on with)."""

    def __init__(
        self,
        channel: Any,
        *,
        on_overflow: Callable[[], None],
        on_close: Callable[[int, str], None],
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.channel = channel
        self.max_pending = max_pending
        self._on_overflow = on_overflow
        self._on_close = on_close
        # one place past the bound: the end always fits behind what came before it
        self._inbox: asyncio.Queue[str | bytes | None] = asyncio.Queue(max_pending + 1)
        self._refused = False  # this burst of too many client events was refused
        self._gone = False
        channel.on("message", self._queued)
        channel.on("close", self.gone)

    @property
    def connected(self) -> bool:
        return not self._gone and self.channel.readyState == "open"

    def gone(self) -> None:
        """The peer closed the channel (or the call ended): :meth:`receive` says so once
        the messages before it are taken."""
        if self._gone:
            return
        self._gone = True
        self._inbox.put_nowait(None)

    async def receive(self) -> str | bytes | None:
        """The next client message, in order (None: the channel closed)."""
        if self._inbox.empty():
            self._refused = False  # drained: the next burst is told again
        return await self._inbox.get()

    async def send_text(self, text: str) -> None:
        if not self.connected:
            raise ChannelClosedError("the events channel is closed")
        self.channel.send(text)

    async def close(self, code: int, reason: str) -> None:
        """The server ends the exchange (``code`` as a WebSocket's close: 1000 when the
        session closed, 4000 + status for a refusal, ``reason`` its code): the call
        ends."""
        self.gone()
        self._on_close(code, reason)

    def _queued(self, message: str | bytes) -> None:
        if self._gone:
            return
        if self._inbox.qsize() < self.max_pending:
            self._inbox.put_nowait(message)
        elif not self._refused:
            self._refused = True
            self._on_overflow()
