"""A held redis-py connection whose replies are read by a protocol of ours, not by redis-py.

Why: redis-py reads a reply in a coroutine per reply, through asyncio's stream reader (a
future, a wake-up and a buffer copy each). A connection that only ever receives (pushed
appends) or whose replies each answer a waiting call (direct appends) needs none of it:
:meth:`RespProtocol.take_over` puts a protocol in place of redis-py's on the connection's
transport once redis-py has connected it (authenticated, database and name set), and
hiredis parses each reply as its bytes arrive (RESP2 or RESP3 alike). On the log bench
the pushes' reads through redis-py were a sixth of a reader's CPU.

Writes still go out on the same transport. A connection taken over is never read by
redis-py again: nothing may send on it through redis-py (its health check would wait for
a reply that comes here), only :meth:`RespProtocol.write`. Closing it (redis-py's
``disconnect``, the client's ``aclose``) still works: the close reaches redis-py's own
protocol through this one.
"""

from __future__ import annotations

import asyncio
from typing import Any

import hiredis
from redis._parsers.base import BaseParser
from redis.exceptions import InvalidResponse

_MORE = object()  # hiredis: no whole reply yet


class RespProtocol(asyncio.Protocol):
    """Each whole reply of the connection to :meth:`replied`, in order; its end, once, to
    :meth:`lost`. A reply that is an error arrives as the exception redis-py would raise."""

    def __init__(self) -> None:
        self._parser = hiredis.Reader(protocolError=InvalidResponse,
                                      replyError=BaseParser.parse_error, notEnoughData=_MORE)
        #: redis-py's protocol of the connection: told of the close too, so that the
        #: connection's own disconnect ends
        self._stream_protocol: asyncio.BaseProtocol | None = None
        self.transport: asyncio.WriteTransport | None = None
        self.closed = False
        #: the send buffer is over its high-water mark: send no more here for now
        self.paused = False

    def take_over(self, connection: Any) -> None:
        """Read ``connection``'s replies here from now on (it is connected, and no reply
        is due to redis-py)."""
        transport: asyncio.Transport = connection._writer.transport
        self._stream_protocol = transport.get_protocol()
        transport.set_protocol(self)
        self.connection_made(transport)

    def write(self, packed: list[bytes]) -> None:
        """Send commands packed by the connection (``pack_command``).

        A transport that is closing (the server's end of file, a close of redis-py's) takes
        nothing more: the connection is over here at once, not a tick later when
        ``connection_lost`` comes (``writelines`` of Python 3.12 and 3.13 on such a
        transport raised ``TypeError: 'NoneType' object is not callable``; 3.11 dropped the
        bytes unsaid)."""
        assert self.transport is not None
        if self.transport.is_closing():
            self._end("the connection is closing")
            return
        self.transport.writelines(packed)

    def close(self, why: str) -> None:
        """Stop using the connection: :meth:`lost` at once, and the socket aborted."""
        if self.transport is not None and not self.closed:
            self.transport.abort()  # connection_lost follows
        self._end(why)

    # ---- for subclasses ----------------------------------------------------------------

    def replied(self, reply: Any) -> None:
        raise NotImplementedError

    def lost(self, why: str) -> None:
        """The connection ended (closed, lost, or a reply that made no sense)."""
        raise NotImplementedError

    # ---- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        parser.feed(data)
        try:
            while (reply := parser.gets()) is not _MORE:
                self.replied(reply)
        except (InvalidResponse, IndexError):  # garbled, or a reply nobody asked for
            self.close("the server sent a reply that matches no command")

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    def eof_received(self) -> bool:
        self._end("the server closed the connection")  # over now: nothing more is sent here
        return False  # the transport closes itself; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._end("the connection was closed" if exc is None else f"connection lost: {exc}")
        if self._stream_protocol is not None:
            self._stream_protocol.connection_lost(exc)

    def _end(self, why: str) -> None:
        if not self.closed:
            self.closed = True
            self.lost(why)
