"""``WS /v1/realtime``: the OpenAI Realtime API on Voxline's sessions.

The same live session, log, admission, tokens and API keys as ``/v1/sessions/{id}/ws``
(:mod:`deployments.api._socket` is their shared code); only the words differ, and
:mod:`pipeline.openai_realtime` translates them: client events into native messages, each log
event into OpenAI server events. What OpenAI's SDK does (``AsyncOpenAI(base_url=
"http://HOST/v1", api_key=...).realtime.connect(model=...)``) works unchanged: with
``VOXLINE_API__KEYS`` set its ``api_key`` must be one of them; unset, any is accepted.

Without ``session_id`` the socket creates a session (a place among the replica's
sessions, a token) with OpenAI's audio formats (PCM16 at 24 kHz in and out) and greets
with ``session.created``; its ``session.voxline`` member holds the session id and token.

Voxline's extension, in the query string:

* ``session_id`` + ``token`` (or ``X-Voxline-Token``): attach to an existing session
  (made here or by ``POST /v1/sessions``); the greeting is its settings now.
* ``last_event_id``: resume after that server event, with no gap and no repeat: every
  server event's ``event_id`` is ``<log id>.<n>`` (the log event it was translated from,
  and its place among that event's translations). A resumed socket sends no greeting.
* ``beta`` (or the header ``OpenAI-Beta: realtime=v1``): beta event names out
  (``response.audio.delta``, ``response.text.delta``, ``response.audio_transcript.delta``).

Frames are JSON text, as OpenAI's: a binary frame is answered with an ``error``
(``invalid_message``) and the session goes on. With manual turns (``turn_detection:
null``) the audio appended between two commits is bounded (``VOXLINE_API__MAX_BUFFER_SECONDS``,
``audio_too_long``), as on the native socket. A socket that cannot start gets one
``error`` event and is closed with 4000 + the HTTP status (4401 a missing API key or
token, 4404 an unknown session, 4400 a bad ``last_event_id``, 4503 past capacity, with
``retry_after_ms``), as the native socket does.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, WebSocket
from starlette.requests import HTTPConnection

from deployments.api._auth import check_api_key, tenant_of, token_of
from deployments.api._deps import audited
from deployments.api._log_sender import LogSender
from deployments.api._openai_events import (
    OpenAIFraming,
    apply_client_event,
    client_translator,
    follow_session,
)
from deployments.api._services import Services
from deployments.api._socket import Opened, SocketCodec, serve_socket
from pipeline.openai_realtime import (
    ServerTranslator,
    log_id_before,
    parse_resume_id,
    session_object,
)
from pipeline.session import LiveSession, authorize, check_cursor, new_session_id
from schemas import (
    AudioFormat,
    ErrorCode,
    ProtocolError,
    SessionSettings,
    VoxlineError,
)

router = APIRouter(tags=["openai"])

#: what a session made by this socket starts with: OpenAI's audio formats, and speech over
#: a reply cancels it at once: OpenAI's clients hold every audio delta and stop playing
#: only at ``input_audio_buffer.speech_started``, which a paused reply would delay until
#: the speech proved an interruption (``confirmed``, the native default)
OPENAI_AUDIO = {"input_sample_rate": 24000, "output_format": AudioFormat.PCM16,
                "output_sample_rate": 24000, "interruptions": "immediate"}


@router.websocket("/v1/realtime")
async def openai_realtime(
    ws: WebSocket,
    model: str = "voxline",
    session_id: str | None = None,
    last_event_id: str | None = None,
    beta: str | None = None,
) -> None:
    """The OpenAI Realtime API; see the module docstring."""
    beta_names = beta is not None or "realtime=v1" in ws.headers.get("openai-beta", "")
    await serve_socket(ws, RealtimeSocket(model, session_id, last_event_id, beta_names))


class RealtimeSocket(SocketCodec):
    """OpenAI's Realtime events, translated both ways (:mod:`pipeline.openai_realtime`)."""

    name = "openai_realtime"
    binary_refusal = ("binary frames are not part of this protocol; send audio as "
                      "input_audio_buffer.append (base64) in a text frame")

    def __init__(self, model: str, session_id: str | None, last_event_id: str | None,
                 beta_names: bool) -> None:
        self.model = model
        self.session_id = session_id
        self.last_event_id = last_event_id
        self.translator = ServerTranslator(model=model, beta=beta_names)
        self.framing = OpenAIFraming(self.translator)

    def refusal(self, exc: VoxlineError) -> str:
        return self.framing.refusal(self.session_id or "", exc)

    async def open(self, ws: WebSocket, services: Services) -> Opened:
        check_api_key(ws)
        session, token, after = await _open(ws, services, self.session_id,
                                            self.last_event_id, self.translator)
        follow_session(self.translator, services, session)
        self.session, self.services = session, services
        self.client = client_translator(services, session)
        opened = Opened(session, self.framing, after)
        if not self.last_event_id:  # the greeting: its id is the position it starts at
            extension = {"session_id": session.session_id, "token": token,
                         "resume": "reconnect with ?session_id=&token=&last_event_id="}
            opened.greeting.append(json.dumps({
                "type": "session.created", "event_id": after,
                "session": session_object(session.session_id, session.settings,
                                          model=self.model, extension=extension)}))
        return opened

    async def on_text(self, text: str, sender: LogSender) -> None:
        for frame in await apply_client_event(text, self.client, self.session, self.services):
            await sender.send(frame)


async def _open(
    ws: WebSocket, services: Services, session_id: str | None, last_event_id: str | None,
    translator: ServerTranslator,
) -> tuple[LiveSession, str | None, str | None]:
    """The live session, its token (``None`` when attached: the client has it) and the
    log id the socket sends after."""
    if session_id is None:
        if last_event_id:
            raise ProtocolError("last_event_id needs the session_id it belongs to",
                                code=ErrorCode.INVALID_EVENT_ID)
        session = await services.open_session(
            new_session_id(), create=SessionSettings().merged(dict(OPENAI_AUDIO)),
            tenant=tenant_of(ws))
        return (session, services.tokens.issue(session.session_id),
                session.state.last_event_id)
    state, _ = await authorize(services.log, services.tokens, session_id, _session_token(ws))
    await audited(services, session_id, ws, "session token")
    after = state.last_event_id
    if last_event_id:
        resume = parse_resume_id(last_event_id)
        if resume is None:
            raise ProtocolError(
                f"last_event_id {last_event_id!r} is not an event id this server sent",
                code=ErrorCode.INVALID_EVENT_ID)
        log_id, index = resume
        await check_cursor(services.log, state, log_id)
        after = log_id
        if index is not None:  # part of that log event's translations was seen
            after = log_id_before(log_id)
            translator.skip_through(log_id, index)
    return await services.open_session(session_id, state=state), None, after


def _session_token(connection: HTTPConnection) -> str | None:
    """The session token: ``?token=`` or ``X-Voxline-Token`` first (OpenAI's SDK sends its
    api_key as the Bearer header, whether keys are on or not)."""
    return (connection.query_params.get("token") or connection.headers.get("x-voxline-token")
            or token_of(connection))
