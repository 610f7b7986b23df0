"""Which web pages may drive this server from a visitor's browser: the ``Host`` and
``Origin`` checks.

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

"The server's own origin" is only as good as ``Host``. DNS rebinding breaks it: a page at
``rebind.attacker.example`` has its name re-resolve to ``127.0.0.1``, and its requests
then reach this server *as that page's own origin* (``Host`` and ``Origin`` both say
``rebind.attacker.example``), answers readable. So every request, HTTP or WebSocket,
reading or not, first has its ``Host`` checked (Django's ``ALLOWED_HOSTS``), and a name
this server does not answer for is ``421 host_not_allowed``. Allowed hosts:

* no ``Host`` (HTTP/1.0: not a browser) and an IP address (a rebinding page has a name:
  a browser sends the name it resolved, never the address it reached);
* loopback names: ``localhost`` and ``*.localhost`` (browsers resolve them themselves);
* the hosts of ``public_url`` and of ``VOXLINE_API__ALLOWED_ORIGINS``;
* each name of ``VOXLINE_API__ALLOWED_HOSTS`` (a JSON list; ``.example.com`` also allows
  its subdomains, ``"*"`` any host: for a proxy that checks ``Host`` itself).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
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


def is_loopback_host(host: str | None) -> bool:
    """``localhost``, ``*.localhost`` or a loopback address."""
    if host is None:
        return False
    host = host.lower()
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
    if is_loopback_host(key[1]) or (host_header and _same_host(key, host_header)):
        return True
    return key in _trusted(allowed, public_url)


def host_allowed(
    host_header: str | None, allowed_hosts: Iterable[str] = (),
    allowed_origins: Iterable[str] = (), public_url: str | None = None,
) -> bool:
    """Whether a request with this ``Host`` (None: no header) may go on."""
    if host_header is None:
        return True
    try:
        host = urlsplit(f"//{host_header.strip()}").hostname
    except ValueError:
        return False
    if not host:
        return False
    host = host.rstrip(".")
    try:
        ipaddress.ip_address(host)
        return True  # an address, not a name: nothing to rebind
    except ValueError:
        pass
    if is_loopback_host(host):
        return True
    allowed_hosts = tuple(allowed_hosts)
    if "*" in allowed_hosts:
        return True
    for name in allowed_hosts:
        name = name.strip().lower().removeprefix("*")
        if host == name or (name.startswith(".") and (host.endswith(name)
                                                      or host == name[1:])):
            return True
    return any(key is not None and key[1] == host
               for key in _trusted(allowed_origins, public_url))


def _trusted(
    allowed_origins: Iterable[str], public_url: str | None
) -> Iterator[tuple[str, str, int] | None]:
    """The origins the settings name (None for one that is no http(s) origin)."""
    for value in (*allowed_origins, *([public_url] if public_url else [])):
        yield _origin_key(value)


def _settings_of(scope: Scope) -> tuple[tuple[str, ...], tuple[str, ...], str | None]:
    services = getattr(getattr(scope.get("app"), "state", None), "services", None)
    if services is None:  # starting: the defaults only
        return (), (), None
    api = services.settings.api
    return tuple(api.allowed_hosts), tuple(api.allowed_origins), api.public_url


def host_refusal(host: str) -> ProtocolError:
    return ProtocolError(
        f"this server does not answer for the host \"{host[:100]}\"; allow it with "
        "VOXLINE_API__ALLOWED_HOSTS or VOXLINE_API__PUBLIC_URL",
        code=ErrorCode.HOST_NOT_ALLOWED, http_status=421, host=host[:100])


def refusal(origin: str) -> ProtocolError:
    return ProtocolError(
        f"a page from {origin} may not use this server; allow it with "
        "VOXLINE_API__ALLOWED_ORIGINS", code=ErrorCode.ORIGIN_NOT_ALLOWED, http_status=403,
        origin=origin)


class OriginGuard:
    """ASGI middleware: a request whose ``Host`` is not allowed gets ``421
    host_not_allowed``; WebSocket upgrades and non-reading HTTP requests from a page whose
    ``Origin`` is not allowed get ``403 origin_not_allowed`` (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        host = connection.headers.get("host")
        hosts, origins, public_url = _settings_of(scope)
        if not host_allowed(host, hosts, origins, public_url):
            assert host is not None
            await self._refuse(scope, receive, send, host_refusal(host))
            return
        if scope["type"] == "websocket" or scope["method"] not in SAFE_METHODS:
            origin = connection.headers.get("origin")
            if not origin_allowed(origin, host, origins, public_url):
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
            await send({"type": "websocket.http.response.start", "status": exc.http_status,
                        "headers": response.raw_headers})
            await send({"type": "websocket.http.response.body", "body": response.body})
            return
        # no denial responses: a close before accept, which the server answers with 403
        await send({"type": "websocket.close", "code": 1008, "reason": exc.code.value})
