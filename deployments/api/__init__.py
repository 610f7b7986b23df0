"""Voxline's HTTP and WebSocket API (FastAPI), independent of where it is served.

:func:`create_api` builds the application around a :class:`Services`; the Serve ingress
(``deployments/ingress.py``) builds one per replica with remote engines, tests may build
one with local engines. Routes, by module: ``sessions`` (create, inspect, close),
``session_socket`` (the native socket), ``chat`` (SSE text turns), ``events`` (SSE
replay and tail, audio chunks), ``audio`` (transcriptions, speech), ``completions`` and
``models`` (OpenAI's chat completions and model list), ``openai_realtime`` (OpenAI's
Realtime API over the same sessions), ``webrtc`` (the same over WebRTC calls),
``twilio`` (phone calls: the TwiML webhook, Media Streams), ``collections`` and
``threads`` (documents for grounded replies, a session's messages), ``health``, ``web``
(the browser page at ``/``, the documentation
pages) and ``fallback`` (unknown WebSocket paths). With ``VOXLINE_API__KEYS`` set, all
but ``health``, ``web`` and the docs need an API key (``_auth``). Sockets and requests
that change something from a web page elsewhere are refused (``_origin``); every answer
carries security headers, every page its content security policy (``_headers``). What
several routers use lives in private modules (``_deps``: the services, session and
collection access, what the engines say of themselves; ``_socket``: the one socket
skeleton, of which ``session_socket``, ``openai_realtime`` and ``twilio`` are codecs;
``_sse`` ...): a
router never imports another router (an import contract says so).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import APIRoute

from deployments.api import (
    audio,
    chat,
    collections,
    completions,
    events,
    fallback,
    health,
    models,
    openai_realtime,
    session_calls,
    session_socket,
    sessions,
    threads,
    twilio,
    web,
    webrtc,
)
from deployments.api._auth import RequireApiKey
from deployments.api._errors import error_responses, install_error_handlers
from deployments.api._headers import SecurityHeaders
from deployments.api._origin import OriginGuard
from deployments.api._server import WS_PROTOCOL, ApiServer
from deployments.api._services import Services, get_services, start_services

__all__ = ["WS_PROTOCOL", "ApiServer", "Services", "create_api", "get_services",
           "start_services"]

DESCRIPTION = """\
Talk or type to a voice assistant and hear the answer while it is still being written.

Create a session (`POST /v1/sessions`), then open its WebSocket, or stream text turns
over SSE. Every call on a session shows the session's token. Errors are
`{"error": {"code", "message", "transient", ...}}` with a stable `code`.

OpenAI clients may use `/v1/chat/completions`, `/v1/models` and `/v1/audio/*`. When the
server has API keys, send `Authorization: Bearer <key>` everywhere, and a session's token
as `X-Voxline-Token` (or `?token=`).
"""


def create_api(services: Services | None = None) -> FastAPI:
    # docs_url/redoc_url: FastAPI's own pages load their assets from a CDN; web serves both
    app = FastAPI(title="Voxline", version="0.1.0", description=DESCRIPTION,
                  docs_url=None, redoc_url=None)
    app.state.services = services
    install_error_handlers(app)
    for module in (sessions, session_calls, chat, events, audio, completions, models,
                   collections, threads, webrtc):
        # every route may answer 401 when keys are set: the spec says so
        app.include_router(module.router, responses=error_responses(401))
    for module in (session_socket, openai_realtime, health):
        app.include_router(module.router)
    # Twilio signs its calls (and sends no API key): the route checks the signature
    app.include_router(twilio.router)
    public = web.install(app)  # the browser page at /, /docs and /redoc, packaged assets
    app.include_router(fallback.router)  # last: it takes every WebSocket path left
    # keys are checked before a request is read (the socket checks its own: it answers
    # with an error frame, not a status); the probes, the page and the docs stay open
    public += [r.path for r in health.router.routes if isinstance(r, APIRoute)]
    public += [r.path for r in twilio.router.routes if isinstance(r, APIRoute)]
    app.add_middleware(RequireApiKey, open_paths=[*public, app.openapi_url or ""])
    # outside the key check (added later = runs first): a page from elsewhere is refused
    # before anything else is said, and every answer, a refusal too, carries the headers
    app.add_middleware(OriginGuard)
    app.add_middleware(SecurityHeaders, static_prefix=f"{web.STATIC_URL}/")
    return app
