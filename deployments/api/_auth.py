"""Session tokens: whoever created a session gets a token; every later call shows it.

A token is an HMAC of the session id under a server key, so any ingress replica can
check it without a lookup and nothing secret is written to the session's log. The key
is ``VOXLINE_API__SECRET`` or, when unset, one random key created in Redis the first
time any replica starts (``SET NX``) and shared by all of them from then on.

Clients send the token as ``Authorization: Bearer <token>``, as ``X-Voxline-Token`` or
as the ``token`` query parameter (browsers cannot set headers on a WebSocket).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from redis.asyncio import Redis
from starlette.requests import HTTPConnection

from schemas import AuthError, Settings

_SECRET_BYTES = 32


class SessionTokens:
    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the token key must have at least 16 bytes")
        self._key = key

    @classmethod
    async def from_settings(cls, settings: Settings, redis: Redis) -> SessionTokens:
        if settings.api.secret is not None:
            return cls(settings.api.secret.get_secret_value().encode())
        name = f"{settings.log.key_prefix}:token-key"
        await redis.set(name, secrets.token_bytes(_SECRET_BYTES), nx=True)
        key = await redis.get(name)
        if not key:
            raise RuntimeError(f"could not read the token key {name!r} from Redis")
        return cls(key if isinstance(key, bytes) else key.encode())

    def issue(self, session_id: str) -> str:
        digest = hmac.new(self._key, session_id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def verify(self, session_id: str, token: str | None) -> None:
        """Raise :class:`AuthError` (401 without a token, 403 with a wrong one)."""
        if not token:
            raise AuthError(
                "this session needs its token: Authorization: Bearer <token>, "
                "X-Voxline-Token or ?token="
            )
        if not hmac.compare_digest(self.issue(session_id).encode(), token.encode()):
            raise AuthError.forbidden("the token does not belong to this session")


def token_of(connection: HTTPConnection) -> str | None:
    """The token a request or WebSocket carries, wherever the client put it."""
    auth = connection.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return connection.headers.get("x-voxline-token") or connection.query_params.get("token")
