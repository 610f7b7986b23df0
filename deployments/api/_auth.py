"""Where a request carries its session token, and the optional API keys.

The tokens themselves (issuing, verifying, the shared key) and the check every call makes
are :mod:`pipeline.session`'s (``SessionTokens``, ``authorize``); this is the HTTP side.
Clients send the token as ``Authorization: Bearer <token>``, as ``X-Voxline-Token`` or
as the ``token`` query parameter (browsers cannot set headers on a WebSocket).

API keys (``VOXLINE_API__KEYS``, a JSON list) are off unless set. Set, every endpoint
but ``/healthz`` and ``/readyz`` needs ``Authorization: Bearer <key>``, what OpenAI
clients send with their ``api_key``; the Bearer header then holds the key, so a session
call shows its session token as ``X-Voxline-Token`` or ``?token=`` (the token still
scopes the call to its one session). A missing or unknown key is 401 ``unauthorized``
(a socket: one error frame, closed with 4401). HTTP requests are checked by
:class:`RequireApiKey` before anything of them is read: a body that fails to parse must
not tell a caller without a key anything but that it needs one.

A browser cannot set headers on a WebSocket either, so a socket may also show its key as
the subprotocol ``openai-insecure-api-key.<key>`` (what OpenAI's browser clients send to
``/v1/realtime``; the browser page does the same), beside a protocol name of its own
(``realtime``, ``voxline``): the server accepts with that name
(:func:`accepted_subprotocol`), never with the key's.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from deployments.api._errors import error_response
from pipeline.session import Tenant
from schemas import ApiSettings, AuthError


def api_keys(connection: HTTPConnection) -> tuple[str, ...]:
    """The configured API keys (empty: keys are off), from the app's settings."""
    app = connection.scope.get("app")
    services = getattr(getattr(app, "state", None), "services", None)
    if services is None:
        return ()
    return tuple(key.get_secret_value() for key in services.settings.api.keys)


#: a WebSocket subprotocol that carries an API key (OpenAI's name for it)
KEY_SUBPROTOCOL = "openai-insecure-api-key."


def _bearer(connection: HTTPConnection) -> str | None:
    scheme, _, value = connection.headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def _offered(connection: HTTPConnection) -> list[str]:
    """The subprotocols a WebSocket client offered (none for HTTP)."""
    return list(connection.scope.get("subprotocols") or ())


def shown_key(connection: HTTPConnection) -> str | None:
    """The API key a request shows: its Bearer header, or a socket's key subprotocol."""
    offered = (p[len(KEY_SUBPROTOCOL):] for p in _offered(connection)
               if p.startswith(KEY_SUBPROTOCOL))
    return _bearer(connection) or next(offered, None) or None


def accepted_subprotocol(connection: HTTPConnection) -> str | None:
    """The subprotocol to accept a socket with: the first the client offered that is not
    a key (a browser fails the handshake if none it offered is chosen); None if none."""
    return next((p for p in _offered(connection) if not p.startswith(KEY_SUBPROTOCOL)), None)


def token_of(connection: HTTPConnection) -> str | None:
    """The token a request or WebSocket carries, wherever the client put it. A token
    named as one (``X-Voxline-Token``, ``?token=``) comes first; the Bearer header is the
    token only with API keys off (on, it holds the key)."""
    named = connection.headers.get("x-voxline-token") or connection.query_params.get("token")
    return named or (None if api_keys(connection) else _bearer(connection))


def key_digest(key: str) -> str:
    """An API key as quotas, retention and the audit name it: a digest (nothing keeps a key)."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:32]


def client_of(connection: HTTPConnection) -> str:
    """Who a request counts against, for per-client quotas and rates: the API key shown
    (its digest), else the client's address."""
    if api_keys(connection):
        return key_digest(shown_key(connection) or "")
    return "addr:" + (connection.client.host if connection.client else "unknown")


def retention_by_key(api: ApiSettings) -> dict[str, float]:
    """``key_retention_days`` by the keys' digests (as sessions record their tenant)."""
    return {key_digest(key.get_secret_value()): days
            for key, days in zip(api.keys, api.key_retention_days, strict=False)
            if days is not None}


def tenant_of(connection: HTTPConnection) -> Tenant | None:
    """The API key a session is made with: its digest (retention per key) and the
    redaction the operator requires of it (``key_redact``); ``None`` without API keys
    (an address is not kept)."""
    if not api_keys(connection):
        return None
    shown = shown_key(connection) or ""
    api: ApiSettings = connection.scope["app"].state.services.settings.api
    redact = next((kinds or () for key, kinds in zip(api.keys, api.key_redact, strict=False)
                   if hmac.compare_digest(shown.encode(), key.get_secret_value().encode())), ())
    return Tenant(key_digest(shown), redact)


def check_api_key(connection: HTTPConnection) -> None:
    """Raise 401 ``unauthorized`` unless keys are off or the request shows one of them.

    A FastAPI dependency of every router but health's (HTTP and WebSocket alike); each
    key is compared in constant time so a wrong guess says nothing of the right one.
    """
    keys = api_keys(connection)
    if not keys:
        return
    shown = shown_key(connection)
    if shown is None:
        raise AuthError("this server needs an API key: send 'Authorization: Bearer <key>' "
                        f"(a browser's WebSocket: the subprotocol '{KEY_SUBPROTOCOL}<key>')")
    if not any(hmac.compare_digest(shown.encode(), key.encode()) for key in keys):
        raise AuthError("the API key is not valid")


def is_admin(connection: HTTPConnection) -> bool:
    """Whether the request shows an admin key (``VOXLINE_API__ADMIN_KEYS``)."""
    app = connection.scope.get("app")
    services = getattr(getattr(app, "state", None), "services", None)
    shown = shown_key(connection)
    if services is None or shown is None:
        return False
    return any(hmac.compare_digest(shown.encode(), key.get_secret_value().encode())
               for key in services.settings.api.admin_keys)


class RequireApiKey:
    """ASGI middleware: an HTTP request without a valid key (when keys are set) is
    answered 401 ``unauthorized`` before routing, validation or reading its body.

    ``open_paths`` stay open (``/static/*`` opens everything under ``/static/``): the
    health probes an orchestrator calls, the browser page and the API's documentation
    (what a request needs is no secret).
    WebSockets pass through: their route checks the key and answers with an error frame
    and a close code, which a status line cannot carry.
    """

    def __init__(self, app: ASGIApp, *, open_paths: Collection[str] = ()) -> None:
        self.app = app
        self.open_paths = frozenset(p for p in open_paths if not p.endswith("/*"))
        self.open_prefixes = tuple(p[:-1] for p in open_paths if p.endswith("/*"))

    def is_open(self, path: str) -> bool:
        return path in self.open_paths or path.startswith(self.open_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.is_open(scope["path"]):
            try:
                check_api_key(HTTPConnection(scope))
            except AuthError as exc:
                await error_response(exc)(scope, receive, send)
                return
        await self.app(scope, receive, send)
