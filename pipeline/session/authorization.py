"""Authorization: who may act on a session, checked from the log and a token.

Whoever created a session gets a token; every later call shows it. A token is an HMAC of
the session id under a server key (:class:`SessionTokens`), so any replica can check it
without a lookup and nothing secret is written to the session's log. The key is
``VOXLINE_API__SECRET`` or, when unset, one random key created in Redis the first time
any replica starts (``SET NX``) and shared by all of them from then on.

:func:`authorize` is the check every call on a session makes: the session exists (its log
folded once; the fold is returned, so the request need not read the log again), then
the token. Where a request carries its token is the transport's business
(``deployments/api/_auth.py``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from redis.asyncio import Redis

from pipeline.log import EventLog, SessionState, fold
from schemas import AuthError, ErrorCode, Event, SessionError, Settings

_SECRET_BYTES = 32


class SessionTokens:
    """Issues and verifies session tokens under one key."""

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


async def authorize(
    log: EventLog, tokens: SessionTokens, session_id: str, token: str | None
) -> tuple[SessionState, list[Event]]:
    """The folded session and its log (what retention left), after checking that it
    exists (:class:`SessionError` ``session_not_found``, 404), then the token (401/403).

    One read of the log serves both the check and the caller (a request reads a
    session's log once): pass the state on to :meth:`pipeline.session.LiveSession.open`.
    """
    events, horizon = await log.read_remaining(session_id)
    state = fold(session_id, events, trimmed=horizon is not None)
    if not state.created:
        raise SessionError(f"no session {session_id!r}", code=ErrorCode.SESSION_NOT_FOUND)
    tokens.verify(session_id, token)
    return state, events
