"""Ray Serve's HTTP proxy, given the API's WebSocket handshake guard.

Serve's proxy builds its uvicorn config itself, with ``ws="auto"``;
:func:`serve_proxy_callback`, named by ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` (set by
:func:`voxline.server.start_ray`, and in the cluster's environment), points ``auto`` at
:class:`deployments.api.HandshakeGuard <deployments.api._server.HandshakeGuard>` inside the
proxy process before its server starts (a request head the parser refuses is answered
``400`` at once, not left hanging), and adds no middleware. A server of the API's own
(``deployments.api.ApiServer``: the Gateway on one machine, tests, benchmarks) takes the
guard as ``ws=WS_PROTOCOL``.
"""

from __future__ import annotations

from typing import Any

from deployments.api import WS_PROTOCOL

__all__ = ["PROXY_CALLBACK", "serve_proxy_callback"]

#: value of ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``
PROXY_CALLBACK = "voxline.proxy:serve_proxy_callback"


def serve_proxy_callback() -> list[Any]:
    """Ray Serve's proxy calls this before it starts its uvicorn server: use the guard
    for ``ws="auto"``. Returns the middlewares to add (none)."""
    from uvicorn import config

    config.WS_PROTOCOLS["auto"] = WS_PROTOCOL
    return []
