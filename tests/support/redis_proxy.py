"""A loopback TCP proxy in front of Redis, for faults a real server does not make on cue.

* ``drop_replies = n``: the next ``n`` replies are lost with their connections. Redis ran
  the command, the client never heard back, and redis-py's Retry sends it again.
* ``cut()``: every connection is closed and connects are refused, like a network
  partition or a server that died; ``restore()`` listens again on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools

from voxline.redis_server import free_port


class RedisProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.drop_replies = 0
        self.dropped = 0
        self._server: asyncio.Server | None = None
        #: bumped by every cut: a connection accepted before a cut but handled after it
        #: (the loop was busy) is refused, never left open through the outage
        self._generation = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def restore(self) -> None:
        """Listen (again) on :attr:`port`."""
        self._server = await asyncio.start_server(
            functools.partial(self._handle, self._generation), "127.0.0.1", self.port)

    start = restore

    async def cut(self) -> None:
        """Stop listening and drop every connection. The connections go first: from
        Python 3.12 on, ``wait_closed`` waits for the server's connections to close, so
        waiting before they are dropped never returns."""
        self._generation += 1
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    close = cut

    async def _handle(self, generation: int, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        if generation != self._generation:  # cut while this connection was being set up
            writer.transport.abort()
            up_writer.transport.abort()
            return
        self._writers.update((writer, up_writer))

        async def upstream() -> None:
            with contextlib.suppress(Exception):
                while data := await reader.read(65536):
                    up_writer.write(data)
                    await up_writer.drain()

        async def downstream() -> None:
            with contextlib.suppress(Exception):
                while data := await up_reader.read(65536):
                    if self.drop_replies:
                        self.drop_replies -= 1
                        self.dropped += 1
                        return  # the command ran; its reply is lost with the connection
                    writer.write(data)
                    await writer.drain()

        tasks = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
        self._tasks.update(tasks)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
                self._tasks.discard(task)
            for w in (writer, up_writer):
                w.transport.abort()
                self._writers.discard(w)
