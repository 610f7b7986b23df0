"""``/v1/sessions``: create a session, look at it, close it, erase it.

Creating a session appends ``session.created`` and returns the token every later call
on the session must show, with the URLs of its native socket and its event stream.
Creation, authorization and settings merging are :mod:`pipeline.session`'s; this module
is their HTTP face.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from deployments.api._auth import is_admin, tenant_of, token_of
from deployments.api._deps import (
    ServicesDep,
    audited,
    authorized_state,
    base_url,
    engine_choices,
    socket_base,
)
from deployments.api._erasure import erase
from deployments.api._errors import error_responses
from pipeline.log import audit_entries
from pipeline.session import create_session, known_or_erased, merge_settings
from schemas import (
    AuthError,
    ErasureReceipt,
    SessionClosed,
    SessionClosedData,
    SessionSettings,
)

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])


class CreateSessionRequest(BaseModel):
    settings: dict[str, Any] = Field(
        default_factory=dict, description="session settings; unset fields take defaults"
    )


class SessionCreatedResponse(BaseModel):
    session_id: str
    token: str = Field(description="show it on every later call: Bearer, X-Voxline-Token, ?token=")
    ws_url: str
    events_url: str
    settings: SessionSettings


class SessionSummary(BaseModel):
    session_id: str
    settings: SessionSettings
    turns: int
    closed: bool
    last_event_id: str | None


@router.post("", status_code=201, response_model=SessionCreatedResponse,
             responses=error_responses(400, 413, 415, 422, 503))
async def create(
    request: Request, services: ServicesDep, body: CreateSessionRequest | None = None
) -> SessionCreatedResponse:
    """Start a session; bad settings → 400 ``invalid_settings`` / ``unsupported_sample_rate``
    / ``unknown_voice`` / ``unsupported_language``; 503 ``server_draining`` while the
    server stops."""
    services.admission.check_draining()
    settings = merge_settings(SessionSettings(), (body or CreateSessionRequest()).settings,
                              await engine_choices(services))
    session_id = await create_session(services.log, settings, tenant_of(request))
    base = base_url(request, services)
    ws_base = socket_base(base)
    return SessionCreatedResponse(
        session_id=session_id,
        token=services.tokens.issue(session_id),
        ws_url=f"{ws_base}/v1/sessions/{session_id}/ws",
        events_url=f"{base}/v1/sessions/{session_id}/events",
        settings=settings,
    )


@router.get("/{session_id}", response_model=SessionSummary,
            responses=error_responses(401, 403, 404, 409, 422, 503))
async def summary(session_id: str, request: Request, services: ServicesDep) -> SessionSummary:
    state = await authorized_state(session_id, request, services)
    return SessionSummary(
        session_id=session_id,
        settings=state.settings,
        turns=len(state.turns),
        closed=state.closed,
        last_event_id=state.last_event_id,
    )


@router.delete("/{session_id}", responses=error_responses(401, 403, 404, 422, 503))
async def erase_route(session_id: str, request: Request,
                      services: ServicesDep) -> ErasureReceipt:
    """Erase the session everywhere: its events and audio, every pointer to them, its
    collection grants, its live sockets here (closed 4404 ``session_erased``) and on other
    replicas (at their next write). Answers the receipt (what was removed, where); every
    later call on it is 404 ``session_erased``; erasing again returns the same receipt
    (``already``). Its token, or an admin key (``VOXLINE_API__ADMIN_KEYS``) for any
    session. Until 2026-11-27 this call only closed the session: closing is
    ``POST /v1/sessions/{id}/close`` now."""
    if is_admin(request):
        by = "admin key"
    else:
        services.tokens.verify(session_id, token_of(request))
        by = "session token"
    await known_or_erased(services.log, session_id)
    await audited(services, session_id, request, by, "erase")
    return await erase(services, session_id, by=by)


@router.get("/{session_id}/audit", responses=error_responses(401, 403, 422, 503))
async def audit(session_id: str, request: Request, services: ServicesDep,
                limit: int = 1000) -> list[dict[str, Any]]:
    """Who read the session, how and when (every read through the API and the CLI, each
    erasure), oldest first. An admin key only (``VOXLINE_API__ADMIN_KEYS``): it outlives
    the session, erased too."""
    if not is_admin(request):
        raise AuthError.forbidden("the audit is read with an admin key")
    return await audit_entries(services.log, session_id, count=max(1, min(limit, 10_000)))


@router.post("/{session_id}/close", status_code=204,
             responses=error_responses(401, 403, 404, 422, 503))
async def close(session_id: str, request: Request, services: ServicesDep) -> None:
    """End the session (``session.closed``); its log expires after the retention TTL.

    Its token is revoked at once: every later call with it is 409 ``session_closed``.
    Closing a closed session again is a no-op (204)."""
    state = await authorized_state(session_id, request, services, allow_closed=True)
    if not state.closed:
        await services.log.append(
            SessionClosed(session_id=session_id, data=SessionClosedData(reason="client"))
        )
