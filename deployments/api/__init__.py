"""Voxline's HTTP and WebSocket API (FastAPI), independent of where it is served.

:func:`create_api` builds the application around a :class:`Services`; the Serve ingress
(``deployments/ingress.py``) builds one per replica with remote engines, tests may build
one with local engines. Routes, by module: ``sessions`` (create, inspect, close),
``realtime`` (the WebSocket), ``chat`` (SSE text turns), ``events`` (SSE replay and tail,
audio chunks), ``audio`` (transcriptions, speech), ``health``.
"""

from __future__ import annotations

from fastapi import FastAPI

from deployments.api import audio, chat, events, health, realtime, sessions
from deployments.api._errors import install_error_handlers
from deployments.api._services import Services, get_services, start_services

__all__ = ["Services", "create_api", "get_services", "start_services"]

DESCRIPTION = """\
Talk or type to a voice assistant and hear the answer while it is still being written.

Create a session (`POST /v1/sessions`), then open its WebSocket, or stream text turns
over SSE. Every call on a session shows the session's token. Errors are
`{"error": {"code", "message", "transient", ...}}` with a stable `code`.
"""


def create_api(services: Services | None = None) -> FastAPI:
    app = FastAPI(title="Voxline", version="0.1.0", description=DESCRIPTION)
    app.state.services = services
    install_error_handlers(app)
    for module in (sessions, realtime, chat, events, audio, health):
        app.include_router(module.router)
    return app
