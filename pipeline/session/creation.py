"""Session creation: a new id and ``session.created`` in its log (and the ids of turns).

A session exists once its log holds ``session.created``; nothing else is written
anywhere, so any replica can serve it from then on. The settings must already be merged
and validated (:func:`pipeline.session.merge_settings`).
"""

from __future__ import annotations

import uuid

from pipeline.log import EventLog
from schemas import SessionCreated, SessionCreatedData, SessionSettings


def new_session_id() -> str:
    """``sess_`` and 32 random hex digits: unguessable, though the token is what guards it."""
    return f"sess_{uuid.uuid4().hex}"


def new_turn_id() -> str:
    """``turn_`` and 12 random hex digits: unique within a session."""
    return f"turn_{uuid.uuid4().hex[:12]}"


async def create_session(log: EventLog, settings: SessionSettings,
                         tenant: str | None = None) -> str:
    """Start a session with ``settings`` (``tenant``: the API key's digest it was made
    with, for retention per key); returns its id."""
    session_id = new_session_id()
    await log.append(SessionCreated(session_id=session_id, data=SessionCreatedData(
        settings=settings, tenant=tenant)))
    return session_id
