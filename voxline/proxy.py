"""The HTTP servers in front of the app: a WebSocket handshake that answers a bad head.

uvicorn's default WebSocket protocol (``websockets-sansio``) says nothing when the
``websockets`` parser refuses a request head — a request line or header over its 8 KiB
limit, too many headers — and leaves the connection open until the client gives up
(15–20 s in issue #11). :class:`HandshakeGuard` answers ``400`` and closes instead, and
counts an upgrade the app refused with an HTTP answer (``403 origin_not_allowed``) as
answered (uvicorn would log each as an error).

Plain uvicorn takes it as ``ws=WS_PROTOCOL`` (``tests/api_harness.py``). Ray Serve's HTTP
proxy builds its uvicorn config itself, with ``ws="auto"``; :func:`serve_proxy_callback`,
named by ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` (set by :func:`voxline.server.start_ray`,
and in the cluster's environment), points ``auto`` at the guard inside the proxy process
before its server starts, and adds no middleware.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

#: import path of :class:`HandshakeGuard`, for ``uvicorn.Config(ws=...)``
WS_PROTOCOL = "voxline.proxy:HandshakeGuard"
#: value of ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``
PROXY_CALLBACK = "voxline.proxy:serve_proxy_callback"

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


def serve_proxy_callback() -> list[Any]:
    """Ray Serve's proxy calls this before it starts its uvicorn server: use the guard
    for ``ws="auto"``. Returns the middlewares to add (none)."""
    from uvicorn import config

    config.WS_PROTOCOLS["auto"] = WS_PROTOCOL
    return []
