"""Where a request carries its session token.

The tokens themselves (issuing, verifying, the shared key) and the check every call makes
are :mod:`pipeline.session`'s (``SessionTokens``, ``authorize``); this is the HTTP side.
Clients send the token as ``Authorization: Bearer <token>``, as ``X-Voxline-Token`` or
as the ``token`` query parameter (browsers cannot set headers on a WebSocket).
"""

from __future__ import annotations

from starlette.requests import HTTPConnection


def token_of(connection: HTTPConnection) -> str | None:
    """The token a request or WebSocket carries, wherever the client put it."""
    auth = connection.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return connection.headers.get("x-voxline-token") or connection.query_params.get("token")
