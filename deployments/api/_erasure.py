"""Erasing a session from a Gateway: its live sockets and calls on this replica closed
(4404 ``session_erased``), then everything stored (:func:`pipeline.session.erase_session`).

Sockets of the session on other replicas learn it at their next append, which the log
refuses (``session_erased``): they close the same way.
"""

from __future__ import annotations

import asyncio
import contextlib

from deployments.api._peer import WebSocketPeer, refuse
from deployments.api._services import Services
from pipeline.session import erase_session
from schemas import ErasureReceipt, SessionError


async def erase(services: Services, session_id: str, *, by: str) -> ErasureReceipt:
    """Close what this replica holds of ``session_id``, then erase it everywhere."""
    gone = SessionError.erased(session_id)
    sockets = [ws for ws, held in list(services.connections.sockets.items()) if held == session_id]
    calls = [call for call in list(services.connections.calls.values())
             if call.session.session_id == session_id]
    live = [session for session in list(services.connections.live)
            if session.session_id == session_id]
    for session in live:  # no reply goes on into a log about to be erased
        with contextlib.suppress(Exception):
            await session.cancel_response("shutdown")
    await asyncio.gather(*(refuse(WebSocketPeer(ws), gone, None) for ws in sockets),
                         *(call.hangup("session_erased") for call in calls),
                         return_exceptions=True)
    return await erase_session(
        services.log, session_id, by=by, collections=services.collections,
        extra={"live_sockets": len(sockets), "live_calls": len(calls)})
