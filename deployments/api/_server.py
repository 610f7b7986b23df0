"""The API on its own uvicorn server, and the WebSocket handshake every server of it uses.

**The handshake guard.** uvicorn's default WebSocket protocol (``websockets-sansio``) says
nothing when the ``websockets`` parser refuses a request head — a request line or header
over its 8 KiB limit, too many headers — and leaves the connection open until the client
gives up (15–20 s, measured). :class:`HandshakeGuard` answers ``400`` and closes instead,
and counts an upgrade the app refused with an HTTP answer (``403 origin_not_allowed``) as
answered (uvicorn would log each as an error). A server built here takes it as
``ws=WS_PROTOCOL``; Ray Serve's proxy gets it through ``voxline.proxy``.

**The server.** :class:`ApiServer` serves an app on uvicorn in the running event loop,
on a socket bound here (so a port that cannot be had is an :class:`OSError` to the
caller, where uvicorn itself would exit the process). On one machine the Gateway replica
serves its API this way on the server's port (``VOXLINE_INGRESS=direct``): no Serve proxy
between it and its clients, and every request handled in the loop that runs the sessions.
Tests and benchmarks serve the API the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

__all__ = ["WS_PROTOCOL", "ApiServer", "HandshakeGuard", "api_config"]

#: import path of :class:`HandshakeGuard`, for ``uvicorn.Config(ws=...)``
WS_PROTOCOL = "deployments.api._server:HandshakeGuard"
#: a WebSocket frame uvicorn takes at most (the API bounds a message far lower itself:
#: ``VOXLINE_API__MAX_MESSAGE_BYTES``, answered with a code)
WS_MAX_SIZE = 16 << 20
#: how long an idle HTTP/1.1 connection is kept open for the next request. Longer than
#: the common clients' own idle expiry (HTTPX 5 s, Node's 4–5 s, aiohttp 15 s), so the
#: client always drops an idle connection first: at uvicorn's default, 5 s like HTTPX's,
#: the server's close could cross a client's reuse of the same connection, and that
#: request failed with a read error (seen in CI, after a 300-socket test's pause)
KEEP_ALIVE_S = 30

_BODY = b"invalid request head: a line over 8 KiB, too many headers, or malformed\n"
_REFUSAL = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: " + str(len(_BODY)).encode() + b"\r\nConnection: close\r\n\r\n" + _BODY
)


class HandshakeGuard(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol, answering a refused head with ``400``."""

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if (not self.handshake_initiated and not self.close_sent
                and self.conn.handshake_exc is not None):
            self.handshake_initiated = self.handshake_complete = self.close_sent = True
            self.transport.write(_REFUSAL)
            self.transport.close()

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body"):
            # an upgrade refused with an HTTP answer (the app's denial response) is
            # answered: uvicorn would log "returned without completing handshake"
            self.handshake_complete = True


def api_config(app: Any, host: str, port: int,
               limit_concurrency: int | None = None) -> uvicorn.Config:
    """uvicorn's configuration for the API: the handshake guard, no lifespan (the
    services are started and stopped by whoever owns them), warnings only, the process's
    logging left as it is (a Serve replica's is Serve's), and idle connections kept
    past the clients' own expiry (:data:`KEEP_ALIVE_S`). A request that would
    pass ``limit_concurrency`` open connections is answered ``503`` (uvicorn lets a
    WebSocket upgrade through: the app bounds its sessions, ``max_sessions``)."""
    return uvicorn.Config(app, host=host, port=port, log_level="warning", log_config=None,
                          lifespan="off", ws_max_size=WS_MAX_SIZE, ws=WS_PROTOCOL,
                          limit_concurrency=limit_concurrency,
                          timeout_keep_alive=KEEP_ALIVE_S)


def _listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``. ``SO_REUSEADDR``, as servers do: a server started
    a moment after another stopped (a replica restarted) binds while that one's closed
    connections are still in TIME_WAIT."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(False)
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handlers: whoever starts an :class:`ApiServer`
    owns the process's signals (a Serve replica's are Ray's, the run command's drain)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ApiServer:
    """``app`` on uvicorn in the running loop, on ``host:port``, from :meth:`start` to
    :meth:`stop`: a request past ``limit_concurrency`` open connections is answered
    ``503`` (:func:`api_config`), and a port another server listens on is tried again for
    ``bind_wait_s``."""

    def __init__(self, app: Any, host: str, port: int, *, bind_wait_s: float = 0.0,
                 limit_concurrency: int | None = None) -> None:
        self.host, self.port = host, port
        self.bind_wait_s = bind_wait_s
        self._server = _Server(api_config(app, host, port, limit_concurrency))
        self._task: asyncio.Task[None] | None = None

    async def _bind(self) -> socket.socket:
        """The listening socket; a port another server still listens on is tried again
        for ``bind_wait_s`` (a replica's predecessor may still be stopping)."""
        deadline = asyncio.get_running_loop().time() + self.bind_wait_s
        while True:
            try:
                return _listening_socket(self.host, self.port)
            except OSError as exc:
                if (exc.errno != errno.EADDRINUSE
                        or asyncio.get_running_loop().time() >= deadline):
                    raise
            await asyncio.sleep(0.25)

    async def start(self) -> None:
        """Bind (an :class:`OSError` when the port cannot be had) and serve; returns once
        the server accepts connections."""
        sock = await self._bind()
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]),
                                         name=f"api server {self.host}:{self.port}")
        while not self._server.started:
            if self._task.done():  # failed to start: say why
                self._task.result()
                raise RuntimeError(f"the API server on {self.host}:{self.port} stopped")
            await asyncio.sleep(0.01)

    @property
    def serving(self) -> bool:
        """Started, and its server still running (not stopped, not crashed)."""
        return self._task is not None and not self._task.done()

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Stop listening, close idle connections, give the others ``timeout_s`` to end
        (the sockets are the caller's to close first: a drain does), then cut them."""
        if self._task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except TimeoutError:
            self._server.force_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 2.0)
        self._task = None
