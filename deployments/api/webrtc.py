"""``POST /v1/realtime/calls``: OpenAI's Realtime API over WebRTC, on Voxline's sessions.

What OpenAI's browser clients do (the Agents SDK's ``RealtimeSession``, the Realtime
docs' examples): make a peer connection with the microphone's track and a data channel
named ``oai-events``, and post its SDP offer here, as ``Content-Type: application/sdp``,
or as a multipart form with the offer in ``sdp`` and the session's configuration (the
``session`` of a ``session.update``, JSON) in ``session``. The answer is ``201`` with the
SDP answer as the body and the call's URL in ``Location``
(``/v1/realtime/calls/{call_id}``). Then events travel on the data channel as on
``WS /v1/realtime`` (``session.created`` first), and the reply plays on the call's audio
track (:mod:`pipeline.webrtc`). ``POST /v1/realtime/calls/{call_id}/hangup``, or closing
the peer connection, ends the call and its session (``session.closed``, ``hangup``).

A call is a session like any other (its log, replay, metrics, auto-play, admission; API
keys as every HTTP route). Its audio is PCM16 at 48 kHz both ways (Opus on the wire);
``session.update`` cannot change the formats. ``output_audio_buffer.clear`` (WebRTC's
own client event, the Agents SDK's ``interrupt()``) stops the reply sounding at once and
logs what was heard; ``output_audio_buffer.cleared`` answers it. ICE: the server offers
host candidates only (``VOXLINE_WEBRTC__HOST_ADDRESSES``; on loopback when it binds
loopback), so the one machine mode needs no STUN server; on a cluster see
``docs/operations.md``. The offer is read and bounded before aiortc sees it
(:mod:`pipeline.webrtc.offer`): its candidates outside ``VOXLINE_WEBRTC__PEER_NETWORKS``
are left out. Refusals: ``400 invalid_message`` for an offer that does not parse (the
line named) or holds more lines, media sections or candidates than its
``VOXLINE_WEBRTC__MAX_*`` allow, ``415 unsupported_format`` for one with no audio this
server speaks (Opus), ``413`` for an offer over ``VOXLINE_WEBRTC__MAX_OFFER_BYTES``,
``429 rate_limited`` past ``VOXLINE_WEBRTC__OFFERS_PER_MINUTE`` offers from one client,
``503`` past capacity; a call whose caller sends no ICE check within
``VOXLINE_WEBRTC__ICE_START_TIMEOUT_S``, or whose connection is not up within
``VOXLINE_WEBRTC__ICE_TIMEOUT_S``, is hung up and leaves nothing behind.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from deployments.api._auth import tenant_of
from deployments.api._calls import OFFER_BODY, CallCodec, answer_call, read_offer
from deployments.api._deps import ServicesDep, authorized_state, engine_choices
from deployments.api._errors import error_responses
from deployments.api._log_sender import LogSender
from deployments.api._openai_events import (
    OpenAIFraming,
    apply_client_event,
    client_translator,
    follow_session,
)
from deployments.api._services import Services
from deployments.api._socket import Opened
from pipeline.openai_realtime import (
    ClientTranslator,
    ServerTranslator,
    SessionConfig,
    local_id,
    session_object,
)
from pipeline.session import LiveSession, merge_settings, new_session_id
from pipeline.webrtc import CALL_RATE, EVENTS_CHANNEL
from schemas import (
    AudioFormat,
    ErrorCode,
    Event,
    ProtocolError,
    SessionSettings,
    VoxlineError,
)

router = APIRouter(prefix="/v1/realtime", tags=["openai"])

#: a call's audio: its tracks' (Opus at 48 kHz, PCM16 in the session)
CALL_AUDIO = {"input_sample_rate": CALL_RATE, "input_format": "pcm16",
              "output_format": AudioFormat.PCM16, "output_sample_rate": CALL_RATE}
#: server events that carry audio: over WebRTC the audio track plays it instead
_AUDIO_DELTAS = frozenset({"response.output_audio.delta", "response.audio.delta"})


@router.post("/calls", status_code=201, response_class=Response,
             openapi_extra=OFFER_BODY, responses={
    201: {"content": {"application/sdp": {}}, "description": "the SDP answer; the call's "
          "URL in Location"},
    **error_responses(400, 413, 415, 422, 429, 503)})
async def create_call(request: Request, services: ServicesDep,
                      model: str = "voxline") -> Response:
    """Answer a WebRTC offer with a call on a new session; see the module docstring."""
    offer, config = await read_offer(request, services)
    settings = merge_settings(SessionSettings(),
                              {**_client_patch(services, config), **CALL_AUDIO},
                              await engine_choices(services))
    session = await services.open_session(new_session_id(), create=settings,
                                          tenant=tenant_of(request))
    translator = ServerTranslator(model=model)
    follow_session(translator, services, session)
    codec = RealtimeCall(session, services, client_translator(services, session,
                                                              audio_formats=False))

    async def on_end(reason: str) -> None:
        await services.connections.release(session, reason="hangup")

    greeting = json.dumps({"type": "session.created", "event_id": local_id(),
                           "session": session_object(session.session_id, session.settings,
                                                     model=model)})
    opened = Opened(session, CallFraming(translator), session.state.last_event_id,
                    greeting=[greeting])
    return await answer_call(services, offer, opened, codec, on_end=on_end,
                             location=lambda call_id: f"/v1/realtime/calls/{call_id}")


class CallFraming(OpenAIFraming):
    """OpenAI's server events on a call's channel: the reply's audio plays on the track
    instead of its deltas."""

    def frames(self, event: Event) -> list[str]:
        return [json.dumps(frame) for frame in self.translator.frames(event)
                if frame.get("type") not in _AUDIO_DELTAS]


class RealtimeCall(CallCodec):
    """OpenAI's client events on a call's channel, and WebRTC's own
    ``output_audio_buffer.clear``: stop the reply sounding (the SDK's ``interrupt()``)."""

    def __init__(self, session: LiveSession, services: Services,
                 client: ClientTranslator) -> None:
        self.session, self.services, self.client = session, services, client

    async def on_text(self, text: str, sender: LogSender) -> None:
        if _is_clear(text):
            turn_id = await self.call.silence()
            await sender.send(json.dumps({
                "type": "output_audio_buffer.cleared", "event_id": local_id(),
                "response_id": f"resp_{turn_id}" if turn_id else None}))
            return
        for frame in await apply_client_event(text, self.client, self.session, self.services):
            await sender.send(frame)


@router.post("/calls/{call_id}/hangup", status_code=204, response_class=Response,
             responses=error_responses(401, 403, 404))
async def hang_up(call_id: str, request: Request, services: ServicesDep) -> Response:
    """End the call: a reply still running is cancelled, the session is closed. A call
    made here is its own session, and its id is what names it; a call made on a session
    Voxline's way (``/v1/sessions/{id}/calls``) needs that session's token here too."""
    call = services.connections.calls.get(call_id)
    if call is None:
        raise VoxlineError(f"no call {call_id!r} on this server", code=ErrorCode.NOT_FOUND,
                           http_status=404)
    if call.channel != EVENTS_CHANNEL:
        await authorized_state(call.session.session_id, request, services)
    await call.hangup("hangup")
    return Response(status_code=204)


def _is_clear(text: str) -> bool:
    """``output_audio_buffer.clear`` (read cheaply: most messages are not)."""
    if "output_audio_buffer.clear" not in text:
        return False
    try:
        return bool(json.loads(text).get("type") == "output_audio_buffer.clear")
    except (ValueError, AttributeError):
        return False  # apply_client_event says what is wrong with it


def _client_patch(services: Services, config: str | None) -> dict[str, object]:
    """The ``session`` part as native settings (its audio formats ignored)."""
    if config is None:
        return {}
    try:
        parsed = SessionConfig.model_validate_json(config)
    except ValidationError as exc:
        raise ProtocolError(f"invalid session: {exc.errors()[0]['msg']}",
                            code=ErrorCode.INVALID_MESSAGE, param="session") from None
    translator = ClientTranslator(voice_map=services.settings.api.voice_map,
                                  audio_formats=False)
    return translator.settings_patch(parsed)
