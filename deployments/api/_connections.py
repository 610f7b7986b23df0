"""What this replica holds open for its clients: live sessions (each with its place in
admission), WebSockets and WebRTC calls; drained and closed together.

A server that is stopping (:meth:`Connections.drain`) refuses new work
(``server_draining``), gives the turns running now their grace, then closes every socket
with :data:`RESUME_ELSEWHERE` so its client resumes on another replica (or this server
once restarted) from its last event id, and hangs up its calls (a call's media cannot
move to another replica).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Protocol

from starlette.websockets import WebSocket, WebSocketState

from pipeline.session import Admission, LiveSession, Permit

logger = logging.getLogger(__name__)

#: the close code that tells a socket's client to reconnect (elsewhere) and resume: the
#: server is restarting (RFC 6455's registry: 1012 "Service Restart")
RESUME_ELSEWHERE = 1012


class Call(Protocol):
    """A call held by this replica (:class:`pipeline.webrtc.WebRtcCall`)."""

    session: LiveSession

    @property
    def channel(self) -> str: ...

    async def hangup(self, reason: str = "hangup") -> None: ...


@dataclass
class Connections:
    """The replica's live sessions, sockets and calls."""

    #: this replica's capacity (settings.admission): past it, work is refused, not queued
    admission: Admission = field(default_factory=Admission)
    #: live sockets and streams of this replica, closed on shutdown
    live: set[LiveSession] = field(default_factory=set)
    #: open WebSockets of this replica, closed with RESUME_ELSEWHERE by :meth:`drain`
    sockets: dict[WebSocket, str] = field(default_factory=dict)  # → its session
    #: WebRTC calls of this replica by id, hung up by :meth:`drain`
    calls: dict[str, Call] = field(default_factory=dict)
    _permits: dict[LiveSession, Permit] = field(default_factory=dict)

    def hold(self, session: LiveSession, permit: Permit) -> None:
        """``session`` is live here, in the place ``permit`` took."""
        self.live.add(session)
        self._permits[session] = permit

    async def release(self, session: LiveSession, reason: str | None = None) -> None:
        """Close ``session`` and give its place back."""
        self.live.discard(session)
        permit = self._permits.pop(session, None)
        try:
            await session.close(reason)
        finally:
            if permit is not None:
                permit.release()

    async def drain(self, grace_s: float, *, poll_s: float = 0.1) -> dict[str, int]:
        """Refuse new work, give running turns ``grace_s``, then close every socket and
        call (see the module docstring). Returns what it found (for the log)."""
        self.admission.drain()
        deadline = time.monotonic() + grace_s
        # every turn holds an admission place (socket, chat stream, chat completion)
        for _ in range(math.ceil(grace_s / poll_s)):
            if not self.admission.in_use("turns") or time.monotonic() >= deadline:
                break
            await asyncio.sleep(poll_s)
        cut = self.admission.in_use("turns")
        sockets, calls = list(self.sockets), list(self.calls.values())
        await asyncio.gather(*(close_to_resume(ws) for ws in sockets),
                             *(call.hangup("server_draining") for call in calls))
        logger.info("drained: %d sockets closed, %d calls hung up, %d turns cut after %.0f s",
                    len(sockets), len(calls), cut, grace_s)
        return {"sockets": len(sockets), "calls": len(calls), "turns_cut": cut}

    async def aclose(self) -> None:
        """Hang up every call and release every session (shutdown)."""
        for call in list(self.calls.values()):  # each releases its session
            with contextlib.suppress(Exception):
                await call.hangup("shutdown")
        for session in list(self.live):
            with contextlib.suppress(Exception):
                await self.release(session)


async def close_to_resume(ws: WebSocket) -> None:
    """Close a socket with :data:`RESUME_ELSEWHERE` (a client that left is no error)."""
    with contextlib.suppress(Exception):
        if ws.application_state is WebSocketState.CONNECTED:
            await ws.close(code=RESUME_ELSEWHERE, reason="server_draining")
