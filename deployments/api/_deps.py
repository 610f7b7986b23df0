"""What several routers need: the services, access to a session or a collection, and what
the engines say of themselves.

Routers never import one another; what more than one of them uses lives here, so a
router module holds its routes and the models they answer with, nothing another needs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
from typing import Annotated, Any

from fastapi import Depends
from starlette.requests import HTTPConnection

from deployments.api._auth import client_of, token_of
from deployments.api._services import Services, get_services
from pipeline.log import SessionState, record_read
from pipeline.retrieval import CollectionStore
from pipeline.session import EngineChoices, authorize
from schemas import AuthError, ErrorCode, Event, VoxlineError

#: the services of this replica, as a route parameter
ServicesDep = Annotated[Services, Depends(get_services)]


def base_url(connection: HTTPConnection, services: Services) -> str:
    """Where clients reach this server: ``VOXLINE_API__PUBLIC_URL`` or as they asked."""
    public = services.settings.api.public_url
    return (public or str(connection.base_url)).rstrip("/")


def socket_base(base: str) -> str:
    """A base URL for sockets: ``http(s)://`` as ``ws(s)://`` (a socket's own base URL is
    one already)."""
    return "ws" + base.removeprefix("http") if base.startswith("http") else base


# -- sessions ------------------------------------------------------------------------------


async def authorized(
    session_id: str, connection: HTTPConnection, services: Services, *,
    allow_closed: bool = False,
) -> tuple[SessionState, list[Event]]:
    """:func:`pipeline.session.authorize` with the token the connection carries: a
    closed session is 409 ``session_closed`` on every path (its token is revoked). The
    read is audited (:func:`audited`)."""
    found = await authorize(services.log, services.tokens, session_id, token_of(connection),
                            allow_closed=allow_closed)
    await audited(services, session_id, connection, "session token")
    return found


async def audited(services: Services, session_id: str, connection: HTTPConnection,
                  credential: str, action: str | None = None) -> None:
    """Record who reads ``session_id`` how (:mod:`pipeline.log.audit`): the request's
    method and path, the credential it showed and its client (an API key's digest, else
    its address)."""
    method = connection.scope.get("method") or "WS"
    await record_read(services.log, session_id, action or f"{method} {connection.url.path}",
                      f"{credential} ({client_of(connection)})")


async def authorized_state(
    session_id: str, connection: HTTPConnection, services: Services, *,
    allow_closed: bool = False,
) -> SessionState:
    state, _ = await authorized(session_id, connection, services, allow_closed=allow_closed)
    return state


# -- collections ---------------------------------------------------------------------------


def store_of(services: Services) -> CollectionStore:
    if services.collections is None:
        raise VoxlineError("this server has no document collections",
                           code=ErrorCode.CONFIGURATION_ERROR, http_status=503)
    return services.collections


def collection_token(services: Services, collection: str) -> str:
    return services.tokens.issue(f"collection:{collection}")


async def check_owner(services: Services, collection: str, connection: HTTPConnection) -> None:
    """The collection exists (404 ``collection_not_found``), then its token (401/403)."""
    await store_of(services).get(collection)
    token = token_of(connection)
    if not token:
        raise AuthError("this collection needs its token: Authorization: Bearer <token>, "
                        "X-Voxline-Token or ?token=")
    if not hmac.compare_digest(token.encode(), collection_token(services, collection).encode()):
        raise AuthError.forbidden("the token does not belong to this collection")


# -- what the engines say of themselves ----------------------------------------------------


async def engine_choices(services: Services) -> EngineChoices:
    """The voices and languages the synthesizer declares (its ``describe()``; none
    checked when there is none or before it is ready), and which end-of-turn models the
    Gateway has."""
    info = await services.catalogue.describe("tts")
    choices = (EngineChoices.from_description(info) if info is not None
               and info.get("ready", False) else EngineChoices())
    return dataclasses.replace(choices, smart_turn=services.engines.turn is not None,
                               text_turn=services.engines.turn_text is not None,
                               server_tools=services.toolbox.names,
                               mcp_servers=frozenset(services.toolbox.mcp))


async def described(services: Services, stage: str) -> dict[str, Any] | None:
    """What ``stage``'s engine says of itself; ``None`` when it cannot say within 5 s."""
    try:
        return await asyncio.wait_for(services.catalogue.describe(stage), timeout=5)
    except Exception:  # a stage that cannot say what it is has nothing to offer now
        return None


def model_id(info: dict[str, Any]) -> str:
    """The id a described engine is listed under: its model, else its engine's name."""
    return str(info.get("model") or info.get("engine") or "unknown")
