"""Authorization: who may act on a session, checked from the log and a token.

Whoever created a session gets a token; every later call shows it. A token is an HMAC of
the session id under a server key (:class:`SessionTokens`), so any replica can check it
without a lookup and nothing secret is written to the session's log. The key is
``VOXLINE_API__SECRET`` or, when unset, one random key created in Redis the first time
any replica starts (``SET NX``) and shared by all of them from then on.

:func:`authorize` is the check every call on a session makes: the session exists (its log
folded once; the fold is returned, so the request need not read the log again), then
the token, then that the session is open: closing a session (``session.closed``, which
``DELETE /v1/sessions/{id}`` appends) revokes its token at once, and every later call
with it (the socket, chat, the events stream, audio chunks, GET) is refused with one
status, 409 ``session_closed`` (close code 4409 on a socket). Where a request carries its
token is the transport's business (``deployments/api/_auth.py``).

:func:`check_cursor` is the check of an event id a client sends to resume from: a
well-formed Redis stream id, not after the session's last event (an id from the future
would make a reader wait for events it has already missed: ``invalid_event_id``, 400).
An id the log no longer holds although it could have issued it (after the last event but
not in the future, or between two entries) means the log lost its tail: Redis restarted
from a persistence file older than what the client saw. That is ``resync_required`` (410),
never a silent resume from a log that no longer matches what the client has.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

from redis.asyncio import Redis

from pipeline.log import EventLog, SessionState, StreamId, erased_receipt, fold
from schemas import (
    AuthError,
    ErrorCode,
    Event,
    ProtocolError,
    ResyncRequiredError,
    SessionError,
    Settings,
)

_SECRET_BYTES = 32
_ID_PART_MAX = (1 << 64) - 1  # each half of a Redis stream id is an unsigned 64-bit number


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
    log: EventLog,
    tokens: SessionTokens,
    session_id: str,
    token: str | None,
    *,
    allow_closed: bool = False,
) -> tuple[SessionState, list[Event]]:
    """The folded session and its log (what retention left), after checking that it
    exists (:class:`SessionError` ``session_not_found``, 404), then the token (401/403),
    then that it is not closed (``session_closed``, 409; ``allow_closed`` for closing it
    again, which is idempotent).

    One read of the log serves both the check and the caller (a request reads a
    session's log once): pass the state on to :meth:`pipeline.session.LiveSession.open`.
    """
    events, horizon = await log.read_remaining(session_id)
    state = fold(session_id, events, trimmed=horizon is not None)
    if not state.created:
        if await erased_receipt(log, session_id) is not None:
            raise SessionError.erased(session_id)
        raise SessionError(f"no session {session_id!r}", code=ErrorCode.SESSION_NOT_FOUND)
    tokens.verify(session_id, token)
    if state.closed and not allow_closed:
        raise closed_error(session_id)
    return state, events


def closed_error(session_id: str) -> SessionError:
    """The one answer to any call on a closed session: 409 ``session_closed``."""
    return SessionError(f"session {session_id!r} is closed", code=ErrorCode.SESSION_CLOSED,
                        http_status=409, recoverable=False)


def parse_event_id(event_id: str) -> StreamId:
    """A client's event id as a stream id, or ``invalid_event_id`` (400): ``ms-seq``,
    each part a number Redis can hold."""
    try:
        parsed = StreamId.parse(event_id)
    except ValueError:
        parsed = None
    if parsed is None or max(parsed.ms, parsed.seq) > _ID_PART_MAX:
        raise ProtocolError(f"{event_id[:64]!r} is not an event id of this session (ms-seq)",
                            code=ErrorCode.INVALID_EVENT_ID)
    return parsed


async def check_cursor(log: EventLog, state: SessionState, event_id: str) -> None:
    """Refuse an event id to resume from that is malformed or after the session's last
    event (``invalid_event_id``, 400). The fold may be a moment old: an id past it is
    checked against the log itself before it is refused."""
    cursor = parse_event_id(event_id)
    if state.last_event_id is not None and cursor <= StreamId.parse(state.last_event_id):
        if not await log.issued(state.session_id, cursor):
            raise _lost_tail(state.session_id, cursor)
        return
    # the stream's last id now, read from where the fold ended (a valid, untrimmed cursor)
    page = await log.read_page(state.session_id, state.last_event_id, count=1)
    if cursor > page.last_id:
        if cursor.ms <= time.time_ns() // 1_000_000:  # an id this log could have issued
            raise _lost_tail(state.session_id, cursor)
        raise ProtocolError(
            f"event {cursor} is after the session's last event {page.last_id}: "
            "resume from an id this session sent",
            code=ErrorCode.INVALID_EVENT_ID, last_event_id=str(page.last_id),
        )


def _lost_tail(session_id: str, cursor: StreamId) -> ResyncRequiredError:
    return ResyncRequiredError(
        f"event {cursor} is no longer in the session's log (it lost its latest events): "
        "fetch the session afresh", session_id=session_id, last_event_id=str(cursor))
