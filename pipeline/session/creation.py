"""Session creation: a new id and ``session.created`` in its log (and the ids of turns).

A session exists once its log holds ``session.created``; nothing else is written
anywhere, so any replica can serve it from then on. The settings must already be merged
and validated (:func:`pipeline.session.merge_settings`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from pipeline.log import EventLog
from schemas import RedactKind, SessionCreated, SessionCreatedData, SessionSettings, redact_union


@dataclass(frozen=True)
class Tenant:
    """The API key a session is made with, as the session keeps it: the key's digest
    (retention per key; the key itself is kept nowhere) and the redaction the operator
    requires of the key's sessions (``VOXLINE_API__KEY_REDACT``)."""

    digest: str
    redact: tuple[RedactKind, ...] = ()


def created_data(settings: SessionSettings, tenant: Tenant | None) -> SessionCreatedData:
    """``session.created``'s data: ``settings`` with the tenant's required redaction
    added (a session may redact more, never less), the tenant's digest recorded."""
    if tenant is None:
        return SessionCreatedData(settings=settings)
    return SessionCreatedData(settings=with_redaction(settings, tenant.redact),
                              tenant=tenant.digest, redact_required=tenant.redact)


def with_redaction(settings: SessionSettings,
                   required: tuple[RedactKind, ...]) -> SessionSettings:
    """``settings`` redacting at least ``required`` (an API key's kinds: a session's own
    settings, at creation or in an update, add to them and never remove them)."""
    redact = redact_union(settings.redact, required)
    return settings if redact == settings.redact else settings.model_copy(
        update={"redact": redact})


def new_session_id() -> str:
    """``sess_`` and 32 random hex digits: unguessable, though the token is what guards it."""
    return f"sess_{uuid.uuid4().hex}"


def new_turn_id() -> str:
    """``turn_`` and 12 random hex digits: unique within a session."""
    return f"turn_{uuid.uuid4().hex[:12]}"


async def create_session(log: EventLog, settings: SessionSettings,
                         tenant: Tenant | None = None) -> str:
    """Start a session with ``settings`` (``tenant``: the API key it was made with);
    returns its id."""
    session_id = new_session_id()
    await log.append(SessionCreated(session_id=session_id, data=created_data(settings, tenant)))
    return session_id
