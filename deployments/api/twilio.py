"""Phone calls through Twilio: the TwiML webhook and the Media Streams socket.

Point a Twilio number's voice webhook at ``POST /v1/twilio/voice``. It creates a session
for the call (the call's audio formats, G.711 μ-law at 8 kHz both ways, over
``VOXLINE_TELEPHONY__SESSION``) and answers TwiML that connects the call to
``/v1/twilio/media`` with the session's id and token as stream parameters. On that
socket (:mod:`pipeline.telephony` reads and writes its frames) the caller's audio goes
into the session as it comes, and the session's log goes back as Twilio's ``media``,
``mark`` and ``clear`` (what the caller heard of a cleared reply, from the marks Twilio
echoed, is logged as ``response.truncated``): the call is a session like any other
(replay, resume of the log, auto-play, metrics, admission). The call ends its session
when Twilio says ``stop`` or the socket closes: a reply still running is cancelled
(nobody is left to hear it).

Who may call: with ``VOXLINE_TELEPHONY__TWILIO_AUTH_TOKEN`` set, both the webhook and the
socket's handshake must carry a valid ``X-Twilio-Signature`` (computed by Twilio over the
URL it called, so ``VOXLINE_API__PUBLIC_URL`` must be that URL's base when a proxy is in
between); unset, nothing is checked when API keys are off, and with API keys on the
webhook needs a key (Twilio cannot send one: set the auth token). The socket attaches to
a session only with its token (from the webhook's TwiML); a stream started without one
(TwiML of your own) creates a session when the signature was checked or keys are off.

The TwiML's stream URL carries the new session's token, so it is written from
``VOXLINE_API__PUBLIC_URL``, never from the ``Host`` a request names; with none set, the
webhook answers only requests to a loopback host (a test, a local tunnel that rewrites
``Host``) and refuses others (``421 host_not_allowed``).

Refusals: the webhook answers with Voxline's coded errors (401 a bad signature, 421 as
above, 503 with ``Retry-After`` past capacity); a socket that cannot start is closed with
4000 + the HTTP status and the error's code as the reason (Twilio shows it in its
debugger): 4400 ``invalid_message`` for anything but ``connected`` or ``start`` first, a
binary frame included. A socket closed before ``start`` ends quietly.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import Response
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocketState
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Connect, VoiceResponse

from deployments.api._auth import api_keys, check_api_key
from deployments.api._deps import ServicesDep, audited, base_url, engine_choices, socket_base
from deployments.api._errors import error_responses
from deployments.api._log_sender import JsonFraming, LogSender
from deployments.api._origin import is_loopback_host
from deployments.api._services import Services
from deployments.api._socket import Opened, SocketCodec, serve_socket
from pipeline.session import (
    LiveSession,
    authorize,
    create_session,
    merge_settings,
    new_session_id,
)
from pipeline.telephony import (
    CALL_AUDIO,
    CallTranslator,
    Connected,
    Dtmf,
    Mark,
    Media,
    Start,
    Stop,
    media_audio,
    parse_message,
)
from schemas import (
    AuthError,
    ConfigurationError,
    ErrorCode,
    FunctionTool,
    InvalidAudioError,
    ProtocolError,
    SessionSettings,
    VoxlineError,
)

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/twilio", tags=["telephony"])

SIGNATURE_HEADER = "x-twilio-signature"
MEDIA_PATH = "/v1/twilio/media"


@router.post("/voice", response_class=Response, responses={
    200: {"content": {"application/xml": {}}, "description": "TwiML: connect the call"},
    **error_responses(400, 401, 421, 503)})
async def voice_webhook(request: Request, services: ServicesDep) -> Response:
    """Twilio's voice webhook: a session for the call, and TwiML that streams the call to
    the media socket with the session's id and token."""
    form = await request.form()
    _check_caller(request, services, [(k, str(v)) for k, v in form.multi_items()])
    services.admission.check("sessions")  # busy now: Twilio retries or plays its error
    session_id = await create_session(services.log, await _call_settings(services))
    logger.info("call %s from %s: session %s", form.get("CallSid"), form.get("From"),
                session_id)
    stream_url = socket_base(_stream_base(request, services)) + MEDIA_PATH
    connect = Connect()
    stream = connect.stream(url=stream_url)
    stream.parameter(name="session_id", value=session_id)
    stream.parameter(name="token", value=services.tokens.issue(session_id))
    twiml = VoiceResponse()
    twiml.append(connect)
    return Response(str(twiml), media_type="application/xml")


@router.websocket("/media")
async def media_stream(ws: WebSocket) -> None:
    """Twilio Media Streams: one call, both ways; see the module docstring."""
    await serve_socket(ws, CallSocket(ws))


class CallSocket(SocketCodec):
    """Twilio's Media Streams messages (:mod:`pipeline.telephony`). Twilio reads no error
    frame: a refusal is the close code and reason."""

    name = "twilio"

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.truncations: set[asyncio.Task[None]] = set()

    def subprotocol(self, ws: WebSocket) -> None:
        return None

    async def open(self, ws: WebSocket, services: Services) -> Opened | None:
        signed = _check_caller(ws, services, [])
        start = await _start(ws, services)
        if start is None:  # the caller left before 'start': nothing was opened
            return None
        session = await _open_call(ws, services, start, signed)
        self.session, self.limits = session, services.settings.api
        self.translator = CallTranslator(start.start.stream_sid,
                                         lambda: session.settings.interruptions,
                                         on_clear=self._heard)
        return Opened(session, JsonFraming(self.translator), session.state.last_event_id)

    def _heard(self, turn_id: str, heard_ms: int) -> None:
        """Twilio dropped the rest of a reply: the caller heard ``heard_ms`` of it."""
        task = asyncio.create_task(_truncate(self.session, turn_id, heard_ms))
        self.truncations.add(task)
        task.add_done_callback(self.truncations.discard)

    async def on_text(self, text: str, sender: LogSender) -> None:
        if self.ws.application_state is not WebSocketState.CONNECTED:
            return  # after 'stop' the call is over: what the peer sends still is dropped
        message = parse_message(text, max_bytes=self.limits.max_message_bytes,
                                max_depth=self.limits.max_json_depth)
        if isinstance(message, Media):
            if message.media.track == "inbound":
                await self.session.push_audio(media_audio(message))
        elif isinstance(message, Mark):
            self.translator.played(message.mark.name)
        elif isinstance(message, Dtmf):
            logger.info("call %s: key %s", self.session.session_id, message.dtmf.digit)
        elif isinstance(message, Stop):
            await self.ws.close(code=1000, reason="call ended")

    async def closed(self, session: LiveSession, services: Services) -> None:
        """The call is over: nobody is left to hear a running reply."""
        await asyncio.gather(*self.truncations)
        await services.connections.release(session, reason="hangup")


async def _truncate(session: LiveSession, turn_id: str, heard_ms: int) -> None:
    """Log what the caller heard of a cleared reply (``response.truncated``): later turns'
    history holds that, not the whole reply."""
    try:
        await session.truncate_response(turn_id, heard_ms)
    except VoxlineError as exc:  # the turn left the history window, say: nothing to fix
        logger.info("call %s: reply %s not truncated: %s", session.session_id, turn_id, exc)


def _check_caller(
    connection: HTTPConnection, services: Services, params: list[tuple[str, str]]
) -> bool:
    """Whether Twilio's signature was checked (and valid); raises 401 ``unauthorized``
    for a missing or wrong one, or, with no auth token set, where API keys are needed."""
    token = services.settings.telephony.twilio_auth_token
    if token is None:
        if api_keys(connection):
            check_api_key(connection)  # Twilio sends none: set the auth token
        return False
    signature = connection.headers.get(SIGNATURE_HEADER)
    if not signature:
        raise AuthError(f"no {SIGNATURE_HEADER} header: only Twilio may call this")
    base = base_url(connection, services)
    if connection.scope["type"] == "websocket":
        base = socket_base(base)
    url = base + connection.url.path
    if connection.url.query:
        url += "?" + connection.url.query
    validator = RequestValidator(token.get_secret_value())
    if not validator.validate(url, _MultiDict(params), signature):
        raise AuthError(f"{SIGNATURE_HEADER} does not match {url}: check "
                        "VOXLINE_API__PUBLIC_URL and the auth token")
    return True


class _MultiDict(dict[str, list[str]]):
    """Form fields as Twilio's validator reads repeated ones (``getall``)."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        super().__init__()
        for key, value in items:
            self.setdefault(key, []).append(value)

    def getall(self, key: str) -> list[str]:
        return self[key]


def _stream_base(request: Request, services: Services) -> str:
    """The base of the TwiML's stream URL, which carries the new session's token: the
    configured public URL, never a request's ``Host`` (anyone may send one) unless it
    is a loopback one (a test, a local tunnel); else 421 ``host_not_allowed``."""
    if services.settings.api.public_url is None and not is_loopback_host(request.url.hostname):
        raise ProtocolError("set VOXLINE_API__PUBLIC_URL to the URL Twilio calls: the "
                            "call's stream URL is written from it, not from the request's "
                            "Host", code=ErrorCode.HOST_NOT_ALLOWED, http_status=421)
    return base_url(request, services)


async def _start(ws: WebSocket, services: Services) -> Start | None:
    """Read up to Twilio's ``start`` (after ``connected``), within ``start_timeout_s``;
    None if the caller left first. Anything else first is ``invalid_message``, a binary
    frame too (Twilio's messages are JSON text)."""
    limits = services.settings.api
    timeout_s = services.settings.telephony.start_timeout_s
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                received = await ws.receive()
                if received["type"] == "websocket.disconnect":
                    return None
                text = received.get("text")
                if text is None:
                    raise ProtocolError("a binary frame before 'start': Twilio's messages "
                                        "are JSON text", code=ErrorCode.INVALID_MESSAGE)
                message = parse_message(text, max_bytes=limits.max_message_bytes,
                                        max_depth=limits.max_json_depth)
                if isinstance(message, Start):
                    _check_format(message)
                    return message
                if not isinstance(message, Connected):
                    raise ProtocolError(f"'{message.event}' before 'start'",
                                        code=ErrorCode.INVALID_MESSAGE)
    except TimeoutError:
        raise ProtocolError(f"no 'start' within {timeout_s:g} s",
                            code=ErrorCode.INVALID_MESSAGE) from None


def _check_format(start: Start) -> None:
    """Twilio's bidirectional streams are μ-law at 8 kHz; anything else is refused."""
    media = start.start.media_format
    if media.encoding != "audio/x-mulaw" or media.sample_rate != 8000 or media.channels != 1:
        raise InvalidAudioError(
            f"the stream's audio is {media.encoding} at {media.sample_rate} Hz "
            f"({media.channels} channels); this socket takes audio/x-mulaw at 8000 Hz, mono",
            code=ErrorCode.UNSUPPORTED_FORMAT)


async def _open_call(
    connection: HTTPConnection, services: Services, start: Start, signed: bool
) -> LiveSession:
    """The session the webhook made for the call (its token in the stream's parameters),
    or a new one for a stream started by TwiML of the caller's own."""
    parameters = start.start.custom_parameters
    session_id = parameters.get("session_id")
    if session_id is not None:
        state, _ = await authorize(services.log, services.tokens, session_id,
                                   parameters.get("token"))
        await audited(services, session_id, connection, "session token")
        return await services.open_session(session_id, state=state)
    if not signed and api_keys(connection):
        raise AuthError("a stream without the webhook's session_id and token needs "
                        "VOXLINE_TELEPHONY__TWILIO_AUTH_TOKEN (Twilio sends no API key)")
    return await services.open_session(new_session_id(),
                                       create=await _call_settings(services))


#: a call's session unless ``VOXLINE_TELEPHONY__SESSION`` says otherwise: speech over a
#: reply cancels it at once (and Twilio's buffer is cleared). With ``confirmed`` the reply
#: the caller interrupted would play on from Twilio's buffer until the speech proved an
#: interruption: a paused reply cannot be held there and resumed.
CALL_DEFAULTS = {"interruptions": "immediate"}


async def _call_settings(services: Services) -> SessionSettings:
    """A call's session: ``VOXLINE_TELEPHONY__SESSION`` over :data:`CALL_DEFAULTS`, in the
    call's audio formats. Its tools are the server's (``server``, ``mcp``): a phone line
    has no client to run a function."""
    settings = merge_settings(SessionSettings(),
                              {**CALL_DEFAULTS, **services.settings.telephony.session,
                               **CALL_AUDIO},
                              await engine_choices(services))
    functions = [tool.name for tool in settings.tools if isinstance(tool, FunctionTool)]
    if functions:
        raise ConfigurationError(
            f"VOXLINE_TELEPHONY__SESSION declares function tools ({', '.join(functions)}), "
            "which a phone call has no client to run: use server or mcp tools",
            setting="VOXLINE_TELEPHONY__SESSION")
    return settings
