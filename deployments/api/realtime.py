"""``WS /v1/sessions/{id}/ws``: the realtime protocol.

Client → server: JSON messages (``schemas.ClientMessageUnion``) as text frames, and raw
PCM16 mono at the session's input rate as binary frames. Server → client: every event
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

import asyncio
import contextlib
import logging

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from deployments.api._auth import check_api_key
from deployments.api._services import Services, get_services
from deployments.api._sse import resync_required
from deployments.api.sessions import authorized_state, engine_choices
from pipeline.aio import aclose_stream, reraise_lost_cancel
from pipeline.log import LogFanout
from pipeline.session import LiveSession, check_cursor, merge_settings
from schemas import (
    ErrorCode,
    ErrorEvent,
    EventBase,
    InputTooLargeError,
    ProtocolError,
    ResyncRequiredError,
    SessionCreated,
    SessionCreatedData,
    SessionResume,
    SessionUpdate,
    VoxlineError,
    parse_client_message,
)

logger = logging.getLogger(__name__)
router = APIRouter(tags=["realtime"])


@router.websocket("/v1/sessions/{session_id}/ws")
async def realtime(ws: WebSocket, session_id: str, last_event_id: str | None = None) -> None:
    """Talk or type to the session; see the module docstring for the protocol."""
    services = get_services(ws)
    await ws.accept()
    try:
        check_api_key(ws)
        state = await authorized_state(session_id, ws, services)
        if last_event_id:
            await check_cursor(services.log, state, last_event_id)
        session = await services.open_session(session_id, state=state)
    except VoxlineError as exc:
        await _refuse(ws, session_id, exc)
        return
    if not last_event_id:  # a resuming client has the session; its next frame is its cursor's
        # what OpenAI-style clients wait for: the settings now, as a frame like
        # session.resync_required (not logged, no id, not counted against session.resume)
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await ws.send_text(SessionCreated(session_id=session_id, data=SessionCreatedData(
                settings=session.settings)).model_dump_json())
    sender = _Sender(ws, services.tails, session_id)
    if last_event_id:
        sender.start(last_event_id)
    else:
        sender.start(session.state.last_event_id, delay_s=services.settings.api.resume_window_s)
    try:
        await _receive(ws, session, sender, services)
    finally:
        await sender.stop()
        await _finish(session, services)


async def _receive(
    ws: WebSocket, session: LiveSession, sender: _Sender, services: Services
) -> None:
    limits = services.settings.api
    while True:
        try:
            message = await ws.receive()
        except (WebSocketDisconnect, RuntimeError):
            return
        if message["type"] == "websocket.disconnect":
            return
        try:
            if (data := message.get("bytes")) is not None:
                if len(data) > limits.max_message_bytes:
                    raise InputTooLargeError(
                        f"audio frame of {len(data)} bytes is over the limit of "
                        f"{limits.max_message_bytes}",
                        limit=limits.max_message_bytes, size=len(data))
                sender.go()
                await session.push_audio(data)
            elif (text := message.get("text")) is not None:
                parsed = parse_client_message(
                    text, max_bytes=limits.max_message_bytes,
                    max_text_chars=limits.max_text_chars, max_depth=limits.max_json_depth)
                if isinstance(parsed, SessionResume):
                    try:
                        await check_cursor(services.log, session.state, parsed.last_event_id)
                    except VoxlineError:
                        sender.go()  # no resume: send from where the socket opened
                        raise
                    await sender.resume(parsed.last_event_id)
                else:
                    sender.go()
                    if isinstance(parsed, SessionUpdate):  # voices, languages: the engines'
                        merge_settings(session.settings, parsed.settings,
                                       await engine_choices(services))
                    await session.handle(parsed)
        except VoxlineError as exc:
            await session.reject(exc)


class _Sender:
    """Sends the session's log from a cursor on, at once or after a window for resume.

    It reads through the replica's shared reader (:class:`pipeline.log.LogFanout`): an
    idle socket holds no Redis connection. A client too slow to take what the log holds
    for it is closed with 4503 ``overloaded`` (``details.last_event_id``), to reconnect
    with that id; nothing is lost, the log has it.
    """

    def __init__(self, ws: WebSocket, tails: LogFanout, session_id: str) -> None:
        self.ws = ws
        self.tails = tails
        self.session_id = session_id
        self.task: asyncio.Task[None] | None = None
        self.sent = 0
        self._go = asyncio.Event()

    def start(self, after: str | None, *, delay_s: float = 0.0) -> None:
        if delay_s <= 0:
            self._go.set()
        self.task = asyncio.create_task(self._run(after, delay_s),
                                        name=f"ws-send-{self.session_id}")

    def go(self) -> None:
        """The client spoke: start sending now if still waiting for a resume."""
        self._go.set()

    async def resume(self, after: str) -> None:
        if self.sent:
            raise ProtocolError(
                "session.resume must come before the socket has sent events; "
                "reconnect with ?last_event_id= instead",
                code=ErrorCode.INVALID_MESSAGE,
            )
        await self.stop()
        self.start(after)

    async def stop(self) -> None:
        """Cancel the sending task (waiting at most a second for it to end)."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.wait({self.task}, timeout=1.0)
            self.task = None

    async def _run(self, after: str | None, delay_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._go.wait(), delay_s or None)
        reraise_lost_cancel()
        tail = self.tails.tail(self.session_id, after)
        try:
            async for event in tail:
                await self.ws.send_text(event.model_dump_json())
                self.sent += 1
                if event.type == "session.closed":
                    await self.ws.close(code=1000, reason="session closed")
                    return
        except ResyncRequiredError as exc:  # what the client missed was trimmed
            await _refuse(self.ws, self.session_id, exc, resync_required(self.session_id, exc))
        except VoxlineError as exc:  # the log is unavailable, or the client fell behind
            await _refuse(self.ws, self.session_id, exc)
        except (WebSocketDisconnect, RuntimeError):  # the client is gone
            return
        finally:  # leave the shared reader now, not when the generator is collected
            await aclose_stream(tail)


async def _refuse(
    ws: WebSocket, session_id: str, exc: VoxlineError, frame: EventBase | None = None
) -> None:
    """One frame (an ``error`` unless given; not in the log: the session may not even
    exist), then close with 4000 + the error's HTTP status."""
    frame = frame or ErrorEvent(session_id=session_id, data=exc.to_payload())
    with contextlib.suppress(Exception):
        if ws.client_state is WebSocketState.CONNECTED:
            await ws.send_text(frame.model_dump_json())
            await ws.close(code=4000 + exc.http_status, reason=exc.code.value)


async def _finish(session: LiveSession, services: Services) -> None:
    """The client left: let a running reply finish into the log (bounded), then stop."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            asyncio.shield(session.wait_response()), services.settings.api.drain_s
        )
    await services.release(session)
