"""Which web pages may drive this server from a visitor's browser: the ``Origin`` check.

A browser lets any page open a WebSocket to any host, and sends a form-like ``POST``
anywhere, with no consent: only the ``Origin`` header it adds says whose page asks. So a
page a user happens to visit could open ``/v1/realtime`` on the Voxline listening on that
user's machine (a sessionless socket even creates a session). :class:`OriginGuard` refuses
that before anything else runs: a WebSocket upgrade, or an HTTP request that changes
something (any method but ``GET``, ``HEAD``, ``OPTIONS``), whose ``Origin`` is not allowed
is answered ``403`` ``origin_not_allowed``: for a socket, before the upgrade (the HTTP
denial response where the server supports it, else a close before accept, which servers
answer with a bare 403).

Allowed (Django's ``CSRF_TRUSTED_ORIGINS`` and the ``websockets`` library's ``origins``
are the same idea):

* no ``Origin`` at all: not a browser (the Python SDK, ``websockets``, curl, OpenAI's SDK);
* the server's own origin: the ``Host`` the request came to, and ``public_url`` if set;
* loopback pages: ``http(s)://localhost``, ``*.localhost``, ``127.0.0.0/8``, ``[::1]``, on
  any port (a developer's own tools);
* each origin of ``VOXLINE_API__ALLOWED_ORIGINS`` (a JSON list; ``"*"`` allows any).

The opaque origin ``null`` (sandboxed frames, ``file:`` pages) is refused unless listed.
There is no CORS: a page elsewhere cannot read an answer, and reading ones stay open.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from deployments.api._errors import error_response
from schemas import ErrorCode, ProtocolError

#: methods that only read: a cross-site page may send them, it cannot read the answer
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _origin_key(value: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an origin or base URL, lowercased, the port made
    explicit; None if it is not an http(s) origin."""
    try:
        parts = urlsplit(value.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
    return scheme, host.lower(), port or _DEFAULT_PORTS[scheme]


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _same_host(origin: tuple[str, str, int], host_header: str) -> bool:
    """The origin names the host and port the request came to (``Host``). The scheme is
    not compared: behind a TLS terminator the page is ``https`` and the request plain."""
    key = _origin_key(f"{origin[0]}://{host_header}")
    if key is None:
        return False
    explicit_port = urlsplit(f"//{host_header}").port is not None
    return key[1] == origin[1] and (key[2] == origin[2] if explicit_port
                                    else origin[2] == _DEFAULT_PORTS[origin[0]])


def origin_allowed(
    origin: str | None, host_header: str | None, allowed: Iterable[str] = (),
    public_url: str | None = None,
) -> bool:
    """Whether a request with this ``Origin`` (None: no header) may go on."""
    if origin is None:
        return True
    allowed = tuple(allowed)
    if "*" in allowed or origin in allowed:  # "null" only if listed as such
        return True
    key = _origin_key(origin)
    if key is None:
        return False
    if _is_loopback(key[1]) or (host_header and _same_host(key, host_header)):
        return True
    trusted = (_origin_key(value) for value in (*allowed, *([public_url] if public_url else [])))
    return key in trusted


def _settings_of(scope: Scope) -> tuple[tuple[str, ...], str | None]:
    services = getattr(getattr(scope.get("app"), "state", None), "services", None)
    if services is None:  # starting: the defaults only
        return (), None
    api = services.settings.api
    return tuple(api.allowed_origins), api.public_url


def refusal(origin: str) -> ProtocolError:
    return ProtocolError(
        f"a page from {origin} may not use this server; allow it with "
        "VOXLINE_API__ALLOWED_ORIGINS", code=ErrorCode.ORIGIN_NOT_ALLOWED, http_status=403,
        origin=origin)


class OriginGuard:
    """ASGI middleware: WebSocket upgrades and non-reading HTTP requests from a page whose
    ``Origin`` is not allowed get ``403 origin_not_allowed`` (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" or (
                scope["type"] == "http" and scope["method"] not in SAFE_METHODS):
            connection = HTTPConnection(scope)
            origin = connection.headers.get("origin")
            allowed, public_url = _settings_of(scope)
            if not origin_allowed(origin, connection.headers.get("host"), allowed, public_url):
                assert origin is not None
                await self._refuse(scope, receive, send, refusal(origin))
                return
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, exc: ProtocolError) -> None:
        response = error_response(exc)
        if scope["type"] == "http":
            await response(scope, receive, send)
            return
        await receive()  # websocket.connect: the handshake, not yet answered
        if "websocket.http.response" in (scope.get("extensions") or {}):
            await send({"type": "websocket.http.response.start", "status": 403,
                        "headers": response.raw_headers})
            await send({"type": "websocket.http.response.body", "body": response.body})
            return
        # no denial responses: a close before accept, which the server answers with 403
        await send({"type": "websocket.close", "code": 1008, "reason": exc.code.value})
