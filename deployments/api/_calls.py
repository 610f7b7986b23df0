"""What both WebRTC entry points share: reading an offer, choosing the ICE addresses, and
answering with a call this replica then holds.

``POST /v1/realtime/calls`` (OpenAI's flow, a new session, :mod:`deployments.api.webrtc`)
and ``POST /v1/sessions/{id}/calls`` (Voxline's page, a session it made,
:mod:`deployments.api.session_calls`) differ in the session they call on, how its
events are written on the data channel, and what hanging up does to the session; the
offer, its limits, ICE and the call's lifetime are this module's.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import Request
from fastapi.responses import Response

from deployments.api._services import Services
from pipeline.session import LiveSession
from pipeline.webrtc import EVENTS_CHANNEL, WebRtcCall, use_host_addresses
from schemas import ErrorCode, Event, InputTooLargeError, ProtocolError

logger = logging.getLogger(__name__)

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


async def read_offer(request: Request, services: Services) -> tuple[str, str | None]:
    """The SDP offer (``application/sdp``, or the ``sdp`` field of a form) and the form's
    ``session`` JSON (None without one), under ``VOXLINE_API__MAX_MESSAGE_BYTES``."""
    limit = services.settings.api.max_message_bytes
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        form = await request.form(max_files=0, max_fields=4, max_part_size=limit)
        sdp, config = form.get("sdp"), form.get("session")
        if not isinstance(sdp, str) or (config is not None and not isinstance(config, str)):
            raise ProtocolError("the form needs the offer in 'sdp' (and may have the "
                                "session's configuration in 'session')",
                                code=ErrorCode.INVALID_MESSAGE, param="sdp")
    elif kind == "application/sdp":
        body = await request.body()
        if len(body) > limit:
            raise InputTooLargeError(f"the offer of {len(body)} bytes is over the limit "
                                     f"of {limit}", limit=limit, size=len(body))
        sdp, config = body.decode("utf-8", errors="replace"), None
    else:
        raise ProtocolError(f"send the offer as application/sdp or multipart/form-data, "
                            f"not {kind or 'nothing'}", code=ErrorCode.UNSUPPORTED_CONTENT,
                            http_status=415)
    if len(sdp) > limit:
        raise InputTooLargeError(f"the offer is over the limit of {limit} bytes", limit=limit)
    if not sdp.startswith("v=0"):
        raise ProtocolError("the offer is not SDP (it starts with 'v=0')",
                            code=ErrorCode.INVALID_MESSAGE, param="sdp")
    return sdp, config


async def answer_call(
    services: Services,
    session: LiveSession,
    offer: str,
    *,
    events: AsyncIterator[Event],
    frames: Callable[[Event], list[str]],
    on_message: Callable[[WebRtcCall, str], Awaitable[list[str]]],
    on_end: Callable[[str], Awaitable[None]],
    greeting: str,
    location: Callable[[str], str],
    channel: str = EVENTS_CHANNEL,
) -> Response:
    """Answer ``offer`` with a call on ``session``: ``201``, the SDP answer, the call's URL
    (``location(call_id)``) in ``Location``. The replica holds the call (its drain hangs
    it up) until it ends, when ``on_end`` is called with why; ``on_message`` is given the
    call with each client message (what it answers goes back on the channel). An offer
    that cannot be answered hangs the call up before the error is raised, leaving
    nothing behind."""
    _choose_ice_addresses(services)
    call_id = f"rtc_{uuid.uuid4().hex}"
    webrtc = services.settings.webrtc

    async def ended(reason: str) -> None:
        services.calls.pop(call_id, None)
        logger.info("call %s on %s ended: %s", call_id, session.session_id, reason)
        await on_end(reason)

    async def received(text: str) -> list[str]:
        return await on_message(call, text)

    call = WebRtcCall(session, events, frames, channel=channel, on_message=received,
                      on_end=ended, greeting=greeting, ice_timeout_s=webrtc.ice_timeout_s,
                      max_buffer_s=webrtc.max_buffer_s, jitter_packets=webrtc.jitter_packets)
    try:
        answer = await call.answer(offer)
    except BaseException:
        await call.hangup("refused")
        raise
    services.calls[call_id] = call
    return Response(answer, status_code=201, media_type="application/sdp",
                    headers={"Location": location(call_id)})


def _choose_ice_addresses(services: Services) -> None:
    chosen = services.settings.webrtc.host_addresses
    if chosen is None and services.settings.host in _LOOPBACK:
        chosen = ("127.0.0.1",)
    if chosen is not None:
        use_host_addresses(chosen)
