"""``POST /v1/sessions/{id}/calls``: a session's audio over WebRTC, its events on a data
channel — how Voxline's page talks when the browser can.

The page makes its session (``POST /v1/sessions``, PCM16 at 48 kHz both ways: Opus's
rate), then a peer connection with an audio transceiver (``sendrecv``: the microphone's
track when it is on, the reply's track always) and a data channel named
``voxline-events``, and posts the offer here (``application/sdp``, the session's token).
The answer is ``201`` with the SDP answer and the call's URL in ``Location``. Then the
data channel is the native socket (``WS /v1/sessions/{id}/ws``) without binary frames:
``session.created`` first, then every event of the session in log order, each the
socket's frame except that ``response.audio.chunk`` comes with empty ``audio`` (the
reply plays on the track, and the chunk's ``end_ms`` says where it is); client messages
as JSON text, as on the socket (``session.resume`` is the offer's ``?last_event_id=``).

Why WebRTC for the page: the browser's echo cancellation knows what the reply's track
plays, so hands-free talk does not hear itself; Opus and a jitter buffer carry voice
over real networks. The socket stays the fallback (and works on the same session: the
page switches to it, resuming from its last id, when a call cannot be made).

A call holds the session as a socket does (admission, API keys, token); a session has
one call at a time on a replica: a new offer hangs up the call it had (``replaced``).
Ending a call (closing the peer connection, ``POST …/calls/{call_id}/hangup`` with the
session's token, no ICE check within ``VOXLINE_WEBRTC__ICE_START_TIMEOUT_S`` or ICE not
up within ``VOXLINE_WEBRTC__ICE_TIMEOUT_S``) lets a running reply finish into the log
and leaves the session open, as a socket that goes does. Refusals as at
``/v1/realtime/calls``, and ``415 unsupported_format`` for a session whose audio is not
PCM16 at 48 kHz.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from deployments.api._calls import (
    OFFER_BODY,
    CallCodec,
    answer_call,
    read_offer,
    replace_calls,
)
from deployments.api._deps import ServicesDep, authorized_state
from deployments.api._errors import error_responses
from deployments.api._log_sender import LogSender, NativeFraming
from deployments.api._services import Services
from deployments.api._socket import Opened, finish
from deployments.api.session_socket import apply_native, parse_native
from pipeline.session import LiveSession, check_cursor
from pipeline.webrtc import CALL_RATE
from schemas import (
    AudioFormat,
    ErrorCode,
    Event,
    InvalidAudioError,
    ProtocolError,
    ResponseAudioChunk,
    SessionCreated,
    SessionCreatedData,
    SessionResume,
    SessionSettings,
    VoxlineError,
)

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])

#: the data channel Voxline's page opens for a session's events
PAGE_CHANNEL = "voxline-events"


@router.post("/{session_id}/calls", status_code=201, response_class=Response,
             openapi_extra=OFFER_BODY, responses={
    201: {"content": {"application/sdp": {}}, "description": "the SDP answer; the call's "
          "URL in Location"},
    **error_responses(400, 403, 404, 409, 413, 415, 422, 429, 503)})
async def call_session(session_id: str, request: Request, services: ServicesDep,
                       last_event_id: str | None = None) -> Response:
    """Answer a WebRTC offer with a call on the session; see the module docstring."""
    state = await authorized_state(session_id, request, services)
    _check_call_audio(state.settings)
    if last_event_id:
        await check_cursor(services.log, state, last_event_id)
    offer, _ = await read_offer(request, services)
    await replace_calls(services, session_id)
    session = await services.open_session(session_id, state=state)

    async def on_end(reason: str) -> None:
        await finish(session, services)

    greeting = [] if last_event_id else [SessionCreated(
        session_id=session_id, data=SessionCreatedData(settings=session.settings)
    ).model_dump_json()]
    opened = Opened(session, CallFraming(), last_event_id or session.state.last_event_id,
                    greeting=greeting)
    return await answer_call(
        services, offer, opened, NativeCall(session, services), on_end=on_end,
        location=lambda call_id: f"/v1/sessions/{session_id}/calls/{call_id}",
        channel=PAGE_CHANNEL)


class CallFraming(NativeFraming):
    """Voxline's events on a call's channel: ``response.audio.chunk`` without its audio
    (the track plays it)."""

    def frames(self, event: Event) -> list[str]:
        if isinstance(event, ResponseAudioChunk):
            event = event.without_audio()
        return super().frames(event)


class NativeCall(CallCodec):
    """Voxline's client messages on a call's channel (no audio: the track carries it)."""

    def __init__(self, session: LiveSession, services: Services) -> None:
        self.session, self.services = session, services

    async def on_text(self, text: str, sender: LogSender) -> None:
        parsed = parse_native(text, self.services)
        if isinstance(parsed, SessionResume):
            raise ProtocolError("a call sends from where its offer said: resume with "
                                "?last_event_id= on the offer", code=ErrorCode.INVALID_MESSAGE)
        await apply_native(parsed, self.session, self.services)


@router.post("/{session_id}/calls/{call_id}/hangup", status_code=204,
             response_class=Response, responses=error_responses(403, 404, 409))
async def hang_up(session_id: str, call_id: str, request: Request,
                  services: ServicesDep) -> Response:
    """End the call; the session stays open (a running reply finishes into the log)."""
    await authorized_state(session_id, request, services)
    call = services.connections.calls.get(call_id)
    if call is None or call.session.session_id != session_id:
        raise VoxlineError(f"no call {call_id!r} on this session here",
                           code=ErrorCode.NOT_FOUND, http_status=404)
    await call.hangup("hangup")
    return Response(status_code=204)


def _check_call_audio(settings: SessionSettings) -> None:
    """A call's audio is Opus at 48 kHz: the session's must be PCM16 at that rate."""
    if (settings.input_format != "pcm16" or settings.input_sample_rate != CALL_RATE
            or settings.output_format != AudioFormat.PCM16
            or settings.output_sample_rate != CALL_RATE):
        raise InvalidAudioError(
            f"a call carries PCM16 at {CALL_RATE} Hz both ways: make the session with "
            f"input_sample_rate and output_sample_rate {CALL_RATE}, input_format pcm16 "
            f"and output_format pcm16", code=ErrorCode.UNSUPPORTED_FORMAT)
