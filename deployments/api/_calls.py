"""What both WebRTC entry points share: reading an offer, choosing the ICE addresses, and
answering with a call this replica then holds.

``POST /v1/realtime/calls`` (OpenAI's flow, a new session, :mod:`deployments.api.webrtc`)
and ``POST /v1/sessions/{id}/calls`` (Voxline's page, a session it made,
:mod:`deployments.api.session_calls`) differ in the session they call on, the protocol
of the events channel (a :class:`CallCodec`, served as a socket is:
:func:`deployments.api._socket.serve`), and what hanging up does to the session; the
offer, its limits (its size, lines, media sections and candidates, where its candidates
may point, how often a client may post one), ICE and the call's lifetime are this
module's.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Awaitable, Callable

from fastapi import Request
from fastapi.responses import Response

from deployments.api._auth import client_of
from deployments.api._origin import is_loopback_host
from deployments.api._services import Services
from deployments.api._socket import Codec, Opened, serve
from pipeline.webrtc import (
    EVENTS_CHANNEL,
    EventsChannel,
    OfferLimits,
    WebRtcCall,
    bound_offer,
    use_host_addresses,
)
from schemas import ErrorCode, InputTooLargeError, ProtocolError

logger = logging.getLogger(__name__)

#: what both routes read (``openapi_extra``: the route takes the request itself)
OFFER_BODY: dict[str, object] = {"requestBody": {"required": True, "content": {
    "application/sdp": {"schema": {"type": "string", "description": "the SDP offer"}},
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["sdp"],
        "properties": {"sdp": {"type": "string", "description": "the SDP offer"},
                       "session": {"type": "string", "description": "the session's "
                                   "configuration, JSON (OpenAI's flow only)"}}}},
}}}


async def read_offer(request: Request, services: Services) -> tuple[str, str | None]:
    """The SDP offer (``application/sdp``, or the ``sdp`` field of a form), checked and
    bounded (:func:`pipeline.webrtc.bound_offer`: what aiortc may see of it), and the
    form's ``session`` JSON (None without one). The client's offer is counted against
    its rate first (``429 rate_limited`` past ``VOXLINE_WEBRTC__OFFERS_PER_MINUTE``)."""
    client = client_of(request)
    services.offers.check(client)
    webrtc = services.settings.webrtc
    limit = webrtc.max_offer_bytes
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        form = await request.form(max_files=0, max_fields=4,
                                  max_part_size=max(limit, services.settings.api.max_message_bytes))
        sdp, config = form.get("sdp"), form.get("session")
        if not isinstance(sdp, str) or (config is not None and not isinstance(config, str)):
            raise ProtocolError("the form needs the offer in 'sdp' (and may have the "
                                "session's configuration in 'session')",
                                code=ErrorCode.INVALID_MESSAGE, param="sdp")
    elif kind == "application/sdp":
        sdp, config = (await _body(request, limit)).decode("utf-8", errors="replace"), None
    else:
        raise ProtocolError(f"send the offer as application/sdp or multipart/form-data, "
                            f"not {kind or 'nothing'}", code=ErrorCode.UNSUPPORTED_CONTENT,
                            http_status=415)
    offer = bound_offer(sdp, OfferLimits.of(webrtc, loopback=_binds_loopback(services)))
    if offer.dropped:
        logger.info("offer from %s: candidates left out: %s", client, dict(offer.dropped))
    return offer.sdp, config


async def _body(request: Request, limit: int) -> bytes:
    """The request's body, read no further than ``limit`` bytes (413 past it)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise InputTooLargeError(f"the offer is over the limit of {limit} bytes "
                                     "(VOXLINE_WEBRTC__MAX_OFFER_BYTES)", limit=limit)
    return bytes(body)


class CallCodec(Codec):
    """The protocol of a call's events channel; it is given its call once made (to
    :meth:`~pipeline.webrtc.WebRtcCall.silence` its reply, say). The reply's audio plays on
    the call's track, so the framing leaves it out."""

    name = "webrtc"
    binary_refusal = "the events channel carries JSON text"
    call: WebRtcCall


async def replace_calls(services: Services, session_id: str) -> None:
    """Hang up the calls this replica holds on ``session_id``: a session has one call at
    a time, and a new offer on it replaces the old (a page that reconnects, say)."""
    held = services.connections.calls.values()
    for call in [c for c in held if c.session.session_id == session_id]:
        await call.hangup("replaced")


async def answer_call(
    services: Services,
    offer: str,
    opened: Opened,
    codec: CallCodec,
    *,
    on_end: Callable[[str], Awaitable[None]],
    location: Callable[[str], str],
    channel: str = EVENTS_CHANNEL,
) -> Response:
    """Answer ``offer`` with a call on ``opened``'s session: ``201``, the SDP answer, the
    call's URL (``location(call_id)``) in ``Location``. Once the peer opens the events
    channel, it is served with ``codec`` from ``opened`` on, the call's track following
    the log. The replica holds the call (its drain hangs it up) until it ends, when
    ``on_end`` is called with why. An offer that cannot be answered hangs the call up
    before the error is raised, leaving nothing behind."""
    _choose_ice_addresses(services)
    session = opened.session
    call_id = f"rtc_{uuid.uuid4().hex}"
    webrtc = services.settings.webrtc

    async def ended(reason: str) -> None:
        services.connections.calls.pop(call_id, None)
        logger.info("call %s on %s ended: %s", call_id, session.session_id, reason)
        await on_end(reason)

    async def served(events: EventsChannel) -> None:
        await serve(events, dataclasses.replace(opened, follow=call.follow), codec, services)

    call = WebRtcCall(session, served, channel=channel, on_end=ended,
                      ice_timeout_s=webrtc.ice_timeout_s,
                      ice_start_timeout_s=webrtc.ice_start_timeout_s,
                      max_buffer_s=webrtc.max_buffer_s, jitter_packets=webrtc.jitter_packets,
                      reply_lead_frames=webrtc.reply_lead_frames,
                      max_pending=webrtc.max_pending_events)
    codec.call = call
    try:
        answer = await call.answer(offer)
    except BaseException:
        await call.hangup("refused")
        raise
    services.connections.calls[call_id] = call
    return Response(answer, status_code=201, media_type="application/sdp",
                    headers={"Location": location(call_id)})


def _binds_loopback(services: Services) -> bool:
    return is_loopback_host(services.settings.host)


def _choose_ice_addresses(services: Services) -> None:
    chosen = services.settings.webrtc.host_addresses
    if chosen is None and _binds_loopback(services):
        chosen = ("127.0.0.1",)
    if chosen is not None:
        use_host_addresses(chosen)
