"""Voxline's HTTP and WebSocket API (FastAPI), independent of where it is served.

:func:`create_api` builds the application around a :class:`Services`; the Serve ingress
(``deployments/ingress.py``) builds one per replica with remote engines, tests may build
one with local engines. Routes, by module: ``sessions`` (create, inspect, close),
``realtime`` (the WebSocket), ``chat`` (SSE text turns), ``events`` (SSE replay and tail,
audio chunks), ``audio`` (transcriptions, speech), ``completions`` and ``models``
(OpenAI's chat completions and model list), ``health``. With ``VOXLINE_API__KEYS`` set,
all but ``health`` need an API key (``_auth``).
"""

from __future__ import annotations

from fastapi import Depends, FastAPI

from deployments.api import audio, chat, completions, events, health, models, realtime, sessions
from deployments.api._auth import check_api_key
from deployments.api._errors import error_responses, install_error_handlers
from deployments.api._services import Services, get_services, start_services

__all__ = ["Services", "create_api", "get_services", "start_services"]

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
    app = FastAPI(title="Voxline", version="0.1.0", description=DESCRIPTION)
    app.state.services = services
    install_error_handlers(app)
    # the socket checks its key itself: it answers with an error frame, not a status
    for module in (sessions, chat, events, audio, completions, models):
        # every route may answer 401 when keys are set: the spec says so
        app.include_router(module.router, dependencies=[Depends(check_api_key)],
                           responses=error_responses(401))
    for module in (realtime, health):
        app.include_router(module.router)
    return app
