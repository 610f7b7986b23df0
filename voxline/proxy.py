"""The HTTP servers in front of the app: a WebSocket handshake that answers a bad head.

uvicorn's default WebSocket protocol (``websockets-sansio``) says nothing when the
``websockets`` parser refuses a request head — a request line or header over its 8 KiB
limit, too many headers — and leaves the connection open until the client gives up
(15–20 s, measured). :class:`HandshakeGuard` answers ``400`` and closes instead, and
counts an upgrade the app refused with an HTTP answer (``403 origin_not_allowed``) as
answered (uvicorn would log each as an error).

Plain uvicorn takes it as ``ws=WS_PROTOCOL`` (``tests/support/api_harness.py``). Ray Serve's HTTP
proxy, and with direct ingress (:mod:`voxline.ingress`) the Gateway replica, build their
uvicorn config themselves, with ``ws="auto"``; :func:`serve_proxy_callback`, named by
``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` (set by :func:`voxline.server.start_ray`,
and in the cluster's environment), points ``auto`` at the guard inside that process
before its server starts, and adds no middleware.
"""

from __future__ import annotations

import sys
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
    """Ray Serve calls this before it starts a uvicorn server, its proxy's or (direct
    ingress, :mod:`voxline.ingress`) the Gateway replica's: use the guard for
    ``ws="auto"``; in the replica, also bind as the proxy does
    (:func:`reuse_direct_ingress_port`) and leave a socket's disconnect to the app as the
    proxy does (:class:`SocketsOwnTheirDisconnects`). Returns the middlewares to add."""
    from uvicorn import config

    config.WS_PROTOCOLS["auto"] = WS_PROTOCOL
    if not _in_serve_replica():
        return []
    from starlette.middleware import Middleware

    reuse_direct_ingress_port()
    return [Middleware(SocketsOwnTheirDisconnects)]


def _in_serve_replica() -> bool:
    """In a Serve replica's process (not its proxy's, nor a plain one)."""
    try:
        from ray import serve

        serve.get_replica_context()
    except Exception:  # Serve raises its own type outside a replica
        return False
    return True


class SocketsOwnTheirDisconnects:
    """ASGI middleware: a WebSocket's disconnect reaches the app, it never cancels it.

    Serve's proxy stops watching a WebSocket for its client's disconnect once it is
    accepted (the app handles ``websocket.disconnect`` itself); its direct ingress does
    not, and cancels the socket's handler when the client goes. The Gateway's handler
    outlives its client on purpose: a reply still running when a socket drops finishes
    into the log (``VOXLINE_API__DRAIN_S``), for the client that resumes. The request
    header with which Serve lets a caller turn its watching off
    (``x-request-disconnect-disabled: ?1``) is added to every WebSocket's scope.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            scope = {**scope, "headers": [*scope["headers"], _KEEP_SOCKET_ON_DISCONNECT]}
        await self.app(scope, receive, send)


#: Serve's header (``SERVE_HTTP_REQUEST_DISCONNECT_DISABLED_HEADER``) and its "yes"
_KEEP_SOCKET_ON_DISCONNECT = (b"x-request-disconnect-disabled", b"?1")


def reuse_direct_ingress_port() -> None:
    """Serve's proxy binds with ``SO_REUSEPORT``; its direct ingress binds the ingress
    replica's socket without it. A Gateway that died (or an app stopped a moment ago)
    leaves its connections in TIME_WAIT on the port for a minute, and without the option
    the new replica's bind fails: Serve then blocks the port for good, and with the
    one-port range :mod:`voxline.ingress` gives it, the Gateway never comes back. So the
    replica's server is started as the proxy's is (once, however often this runs)."""
    replica = sys.modules.get("ray.serve._private.replica")
    if replica is None or getattr(replica.start_asgi_http_server, "reuses_port", False):
        return
    start = replica.start_asgi_http_server

    async def start_reusing_port(app: Any, http_options: Any, *, event_loop: Any,
                                 enable_so_reuseport: bool = False) -> Any:
        return await start(app, http_options, event_loop=event_loop, enable_so_reuseport=True)

    start_reusing_port.reuses_port = True  # type: ignore[attr-defined]
    setattr(replica, "start_asgi_http_server", start_reusing_port)  # noqa: B010
