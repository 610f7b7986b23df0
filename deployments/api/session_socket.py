"""``WS /v1/sessions/{id}/ws``: the native socket, Voxline's own protocol on a session.

Client → server: JSON messages (``schemas.ClientMessageUnion``) as text frames, and raw
audio at the session's input rate as binary frames (PCM16 mono, or G.711 ``pcmu`` /
``pcma`` bytes when the session's ``input_format`` says so). Server → client: every event
of the session as JSON, in log order, each one already in the log.

The socket's outgoing side is a tail of the session's log, not a private queue: the
client sees what any writer appends (this socket's turns, a chat stream on the same
session, background workers), and a client that reconnects with ``last_event_id``
(query parameter or a ``session.resume`` message) continues exactly where it stopped.

``session.resume`` must come before the socket has sent anything: a socket opened
without ``last_event_id`` starts sending at the first client message, or after
``VOXLINE_API__RESUME_WINDOW_S`` of silence, whichever comes first (from the position
the session had when the socket opened, so nothing is lost by waiting).

The first frame of a socket opened without ``last_event_id`` is ``session.created`` with
the session's settings now (what OpenAI-style clients wait for before they send). It is
sent to this socket only, not logged, so it has no ``id`` (resume from the ids of the
frames after it) and a ``session.resume`` may still follow it.

Bad input is answered with an ``error`` event and the session goes on. A socket that
cannot start (unknown session, missing or wrong token or API key, closed session, a
``last_event_id`` that is malformed or after the session's last event) gets one error
frame and is closed with code 4000 + the HTTP status (4404, 4401, 4403, 4409, 4400
``invalid_event_id``). A ``session.resume`` message with such an id is answered with an
``invalid_event_id`` error event and the socket goes on, sending from where it opened.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, WebSocket

from deployments.api._auth import check_api_key
from deployments.api._deps import authorized_state, engine_choices
from deployments.api._log_sender import LogSender, NativeFraming
from deployments.api._services import Services
from deployments.api._socket import Opened, SocketCodec, serve_socket
from pipeline.session import LiveSession, check_cursor, merge_settings
from schemas import (
    ClientMessageUnion,
    SessionCreated,
    SessionCreatedData,
    SessionResume,
    SessionUpdate,
    VoxlineError,
    parse_client_message,
)

logger = logging.getLogger(__name__)
router = APIRouter(tags=["sessions"])


@router.websocket("/v1/sessions/{session_id}/ws")
async def session_socket(
    ws: WebSocket, session_id: str, last_event_id: str | None = None
) -> None:
    """Talk or type to the session; see the module docstring for the protocol."""
    await serve_socket(ws, NativeSocket(session_id, last_event_id))


class NativeSocket(SocketCodec):
    """Voxline's own protocol: events as they are in the log, binary frames as audio."""

    name = "socket"
    binary_audio = True

    def __init__(self, session_id: str, last_event_id: str | None) -> None:
        self.session_id = session_id
        self.last_event_id = last_event_id
        self.framing = NativeFraming()

    def refusal(self, exc: VoxlineError) -> str:
        return self.framing.refusal(self.session_id, exc)

    async def open(self, ws: WebSocket, services: Services) -> Opened:
        check_api_key(ws)
        state = await authorized_state(self.session_id, ws, services)
        if self.last_event_id:
            await check_cursor(services.log, state, self.last_event_id)
        self.session = await services.open_session(self.session_id, state=state)
        self.services = services
        if self.last_event_id:  # a resuming client has the session; no greeting
            return Opened(self.session, self.framing, self.last_event_id)
        # what OpenAI-style clients wait for: the settings now, as a frame like
        # session.resync_required (not logged, no id, not counted against session.resume)
        greeting = SessionCreated(session_id=self.session_id, data=SessionCreatedData(
            settings=self.session.settings)).model_dump_json()
        return Opened(self.session, self.framing, self.session.state.last_event_id,
                      greeting=[greeting], delay_s=services.settings.api.resume_window_s)

    async def on_text(self, text: str, sender: LogSender) -> None:
        parsed = parse_native(text, self.services)
        if isinstance(parsed, SessionResume):
            try:
                await check_cursor(self.services.log, self.session.state,
                                   parsed.last_event_id)
            except VoxlineError:
                sender.go()  # no resume: send from where the socket opened
                raise
            await sender.resume(parsed.last_event_id)
            return
        sender.go()
        await apply_native(parsed, self.session, self.services)


def parse_native(text: str, services: Services) -> ClientMessageUnion:
    """One client message of Voxline's protocol, under the API's limits."""
    limits = services.settings.api
    return parse_client_message(
        text, max_bytes=limits.max_message_bytes,
        max_text_chars=limits.max_text_chars, max_depth=limits.max_json_depth)


async def apply_native(
    parsed: ClientMessageUnion, session: LiveSession, services: Services
) -> None:
    """Do what a client message (not ``session.resume``) asks of the session."""
    if isinstance(parsed, SessionUpdate):  # voices, languages: the engines'
        merge_settings(session.settings, parsed.settings, await engine_choices(services))
    await session.handle(parsed)
