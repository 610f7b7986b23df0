"""Security headers: what a browser is told about every answer, and each page's policy.

Every HTTP answer carries ``X-Content-Type-Options: nosniff`` (a JSON body or a user's
text is never run as a script or a style because a browser guessed its type) and
``X-Frame-Options: DENY`` (no page of another site frames ours: the browser page asks for
the microphone, a frame over it could steer the click). Each page sets a
``Content-Security-Policy`` of its own (:func:`page_policy`): scripts, styles and
connections from this server only, ``frame-ancestors 'none'`` (the modern form of
``X-Frame-Options``). An answer without one gets :data:`DEFAULT_POLICY`, which lets
nothing load, except the packaged files under ``/static/`` (scripts and styles that pages
load; a policy of their own would be a worker's and could only get in the way).

The pages' needs, found by loading them in Chromium with the policy on (the browser
tests watch the console for violations): the page and ``/docs/protocol`` use ES modules,
an AudioWorklet module and ``fetch``/WebSocket to their own origin; Swagger UI starts from
one inline script (allowed by its hash, computed from the HTML we send) and uses inline
styles and ``data:`` images; ReDoc inlines its styles and runs its search in a ``blob:``
worker.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: an answer that sets no policy of its own: nothing loads, nothing frames it
DEFAULT_POLICY = "default-src 'none'; frame-ancestors 'none'"
#: a Host header fit to be named in a policy (anything else: ``'self'`` alone)
_HOST = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$")
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def script_hashes(html: str) -> list[str]:
    """``'sha256-…'`` sources for each inline ``<script>`` of ``html`` (exactly as sent)."""
    return [f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
            for body in _INLINE_SCRIPT.findall(html)]


def page_policy(
    host: str | None,
    *,
    scripts: Iterable[str] = (),
    inline_styles: bool = False,
    blob_workers: bool = False,
) -> str:
    """A page's policy: everything from this origin only, sockets to this host (``'self'``
    covers ws/wss of the same host in CSP 3; older browsers need them named)."""
    connect = ["'self'"]
    if host and _HOST.match(host):
        connect += [f"ws://{host}", f"wss://{host}"]
    directives = {
        "default-src": ["'self'"],
        "script-src": ["'self'", *scripts],
        "style-src": ["'self'", *(["'unsafe-inline'"] if inline_styles else [])],
        "img-src": ["'self'", "data:"],
        "connect-src": connect,
        "worker-src": ["'self'", *(["blob:"] if blob_workers else [])],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())


class SecurityHeaders:
    """ASGI middleware: ``nosniff`` and ``X-Frame-Options: DENY`` on every HTTP answer
    (a refused WebSocket upgrade's too), :data:`DEFAULT_POLICY` where the answer has no
    policy (but ``static_prefix``)."""

    def __init__(self, app: ASGIApp, *, static_prefix: str = "/static/") -> None:
        self.app = app
        self.static_prefix = static_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith(self.static_prefix)

        async def send_with_headers(message: Message) -> None:
            # an HTTP answer, or the one a WebSocket upgrade is refused with
            if message["type"] in ("http.response.start", "websocket.http.response.start"):
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
                if not static:
                    headers.setdefault("Content-Security-Policy", DEFAULT_POLICY)
            await send(message)

        await self.app(scope, receive, send_with_headers)
