"""The protocol that reads a held connection's replies: each reply in order, its end once,
and nothing written on a connection that is closing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pipeline.log._resp import RespProtocol
from tests.support.waiting import until


class Recording(RespProtocol):
    def __init__(self) -> None:
        super().__init__()
        self.replies: list[Any] = []
        self.ends: list[str] = []

    def replied(self, reply: Any) -> None:
        self.replies.append(reply)

    def lost(self, why: str) -> None:
        self.ends.append(why)


class Peer:
    """A loopback server of ours that answers each line with ``+PONG`` and closes when told."""

    def __init__(self) -> None:
        self.writers: list[asyncio.StreamWriter] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        while await reader.readline():
            writer.write(b"+PONG\r\n")

    def close_all(self) -> None:
        for writer in self.writers:
            writer.close()


@pytest.fixture
async def connected() -> AsyncIterator[tuple[Peer, Recording]]:
    peer = Peer()
    server = await asyncio.start_server(peer.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, protocol = await asyncio.get_running_loop().create_connection(
        Recording, "127.0.0.1", port)
    try:
        yield peer, protocol
    finally:
        protocol.close("the test is over")
        peer.close_all()
        for writer in peer.writers:
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        server.close()
        await server.wait_closed()


async def test_replies_arrive_in_order(connected: tuple[Peer, Recording]) -> None:
    _, protocol = connected
    protocol.write([b"PING\r\n", b"PING\r\n"])
    await until(lambda: len(protocol.replies) == 2, "two replies")
    assert protocol.replies == [b"PONG", b"PONG"] and not protocol.closed


async def test_a_write_on_a_closing_transport_ends_the_connection_at_once(
        connected: tuple[Peer, Recording]) -> None:
    # the server's end of file closes the transport a tick before connection_lost: a
    # write in that tick raised TypeError on Python 3.12 and 3.13 (CI's fast tests) and
    # was dropped on 3.11
    _, protocol = connected
    assert protocol.transport is not None
    protocol.transport.close()
    protocol.write([b"PING\r\n"])
    assert protocol.closed and protocol.ends == ["the connection is closing"]
    await asyncio.sleep(0.01)  # connection_lost comes, and ends nothing twice
    assert protocol.ends == ["the connection is closing"]


async def test_the_servers_end_of_file_ends_the_connection_once(
        connected: tuple[Peer, Recording]) -> None:
    peer, protocol = connected
    protocol.write([b"PING\r\n"])
    await until(lambda: bool(protocol.replies), "a reply")
    peer.close_all()
    await until(lambda: protocol.closed, "the end of the connection")
    assert protocol.ends == ["the server closed the connection"]
    await asyncio.sleep(0.01)
    assert protocol.ends == ["the server closed the connection"]
