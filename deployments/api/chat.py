"""``POST /v1/chat/stream``: a text turn as server-sent events, for chat and story apps.

The reply streams as ``chunk`` events (text deltas) and ends with ``done`` (the full
text and how the turn ended); with ``"audio": true`` the spoken reply comes along as
``audio`` events. Every SSE message's ``id`` is the log id of the event behind it and
every payload carries the session id as ``thread_id``: send it back (with the token) to
continue the same conversation. Without ``session_id`` a new session is created; its
token comes first, in a ``session`` event and in the ``X-Voxline-Token`` header.

With ``tools`` in the session's settings, each call the model makes comes as a
``tool_call`` event (``runs_on`` server: its ``tool_result`` follows; client: the reply
ends, and the app sends the calls' ``tool_outputs`` with the ``session_id`` to go on).

With ``search_tool_config`` (or the session's ``search`` setting) the reply is grounded
in a document collection given to the session: a ``citations`` event (document, chunk,
score, snippet) comes before ``done``, and ``done`` carries the same ``citations``; a
search that failed or was too slow, or a log write that failed, comes as a ``warning``
event and the reply goes on.

Disconnecting cancels the reply (``response.cancelled`` is appended). A ``message`` over
``VOXLINE_API__MAX_TEXT_CHARS`` is 413 ``text_too_long`` (the socket's limit); a closed
session is 409 ``session_closed``, as on every path.

The stream reads the turn from the session's log (:func:`pipeline.session.follow_turn`),
like every other reader: the live session queues nothing for it.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncGenerator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, StrictBool

from deployments.api._auth import tenant_of
from deployments.api._deps import ServicesDep, authorized_state, engine_choices
from deployments.api._errors import error_responses
from deployments.api._services import Services
from deployments.api._sse import SSE_HEADERS, sse
from pipeline.session import LiveSession, create_session, follow_turn, merge_settings
from schemas import (
    MAX_SESSION_TOOLS,
    MAX_TOOL_OUTPUT_CHARS,
    ErrorCode,
    Event,
    InputTooLargeError,
    ProtocolError,
    SearchToolConfig,
    SessionSettings,
    VoxlineError,
)

router = APIRouter(prefix="/v1/chat", tags=["chat"])


class ToolResult(BaseModel):
    call_id: str = Field(min_length=1, max_length=128)
    output: str = Field(max_length=MAX_TOOL_OUTPUT_CHARS)


class ChatRequest(BaseModel):
    message: str | None = Field(default=None, min_length=1, description="what the user says")
    tool_outputs: list[ToolResult] = Field(
        default_factory=list, max_length=MAX_SESSION_TOOLS,
        description="instead of a message: the outputs of the function calls the session's "
        "last reply made (its `tool_call` events); the reply then goes on")
    session_id: str | None = Field(default=None, description="continue this session (thread)")
    audio: StrictBool = Field(default=False, description="also stream the spoken reply")
    settings: dict[str, Any] = Field(
        default_factory=dict, description="settings of a new session (ignored when continuing)"
    )
    search_tool_config: SearchToolConfig | None = Field(
        default=None, description="ground this reply in a collection given to the session; "
        "the passages are cited in `citations` events and in `done`",
    )


@router.post(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}},
                     "description": "session?, chunk*, audio*, tool_call*, tool_result*, "
                                    "warning*, error*, citations?, done"},
               **error_responses(400, 401, 403, 404, 409, 413, 415, 422, 503)},
)
async def chat_stream(
    body: ChatRequest, request: Request, services: ServicesDep
) -> StreamingResponse:
    if (body.message is None) == (not body.tool_outputs) or (
            body.tool_outputs and body.session_id is None):
        raise ProtocolError("send a message, or the tool_outputs of a session's calls (with "
                            "its session_id)", code=ErrorCode.INVALID_MESSAGE,
                            param="message")
    limit = services.settings.api.max_text_chars  # the socket's input.text limit
    if body.message is not None and len(body.message) > limit:
        raise InputTooLargeError(
            f"message of {len(body.message)} characters is over the limit of {limit}",
            code=ErrorCode.TEXT_TOO_LONG, limit=limit)
    headers = dict(SSE_HEADERS)
    token: str | None = None
    state = None
    services.admission.check("sessions")  # past capacity: 503 before a session is made
    services.admission.check("turns")  # (open_session and submit_text take the places)
    if body.session_id is None:
        settings = merge_settings(SessionSettings(), body.settings,
                                  await engine_choices(services))
        session_id = await create_session(services.log, settings, tenant_of(request))
        token = services.tokens.issue(session_id)
        headers["X-Voxline-Token"] = token
    else:
        session_id = body.session_id
        state = await authorized_state(session_id, request, services)
    session = await services.open_session(session_id, state=state, with_audio=body.audio)
    before = session.state.last_event_id  # the turn's events all come after this one
    try:
        turn_id = await _submit(session, body)
    except BaseException:
        await services.connections.release(session)
        raise
    stream = _stream(services, session, turn_id, before, token)
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)


async def _submit(session: LiveSession, body: ChatRequest) -> str:
    """The turn the stream follows: a new one for a message; for tool outputs, the turn
    whose calls they answer, going on."""
    if body.message is not None:
        return await session.submit_text(body.message, search=body.search_tool_config)
    for result in body.tool_outputs:
        await session.submit_tool_output(result.call_id, result.output)
    turn = next(t for t in reversed(session.state.turns.values())
                if body.tool_outputs[0].call_id in t.tool_calls)
    await session.create_response()
    return turn.turn_id


async def _stream(
    services: Services, session: LiveSession, turn_id: str, before: str | None,
    token: str | None,
) -> AsyncGenerator[bytes, None]:
    """The turn's messages until it ends; leaving (a disconnect) cancels the reply."""
    thread = session.session_id
    citations: list[Any] = []  # the seed's API: `done` carries the reply's citations
    try:
        if token is not None:
            yield sse("session", {"thread_id": thread, "token": token})
        async for event in follow_turn(services.tails, thread, turn_id, after=before):
            if event.type == "response.citations":
                citations = [c.model_dump(mode="json") for c in event.data.citations]
            message = _message(thread, event, citations)
            if message is not None:
                yield message
    except VoxlineError as exc:  # the log failed under the stream, or retention overtook it
        yield sse("error", {"thread_id": thread, "turn_id": turn_id,
                            **exc.to_payload().model_dump(mode="json")})
    finally:
        await services.connections.release(session)


def _message(thread: str, event: Event, citations: list[Any] | None = None) -> bytes | None:
    base = {"thread_id": thread, "turn_id": event.turn_id}
    data: Any = event.data
    match event.type:
        case "response.text.delta":
            return sse("chunk", {**base, "content": data.delta}, event.id)
        case "response.audio.chunk":
            return sse("audio", {
                **base, "chunk_index": data.chunk_index, "sentence_index": data.sentence_index,
                "format": data.format, "sample_rate": data.sample_rate,
                "audio": base64.b64encode(data.audio).decode(),
            }, event.id)
        case "response.done":
            return sse("done", {**base, "text": data.text, "status": data.status,
                                "citations": citations or []}, event.id)
        case "response.cancelled":
            return sse("done", {**base, "text": data.text_sent, "status": "cancelled",
                                "citations": []}, event.id)
        case "response.citations":
            return sse("citations", {**base, "citations": citations or [],
                                     "strategy": data.strategy}, event.id)
        case "warning":
            return sse("warning", {**base, **data.model_dump(mode="json")}, event.id)
        case "tool.call.started":
            return sse("tool_call", {**base, "call_id": data.call_id, "name": data.name,
                                     "arguments": data.arguments,
                                     "runs_on": data.runs_on}, event.id)
        case "tool.call.output" | "tool.call.failed" | "tool.call.cancelled":
            status = event.type.rsplit(".", 1)[1]
            output = getattr(data, "output", None) or getattr(data, "message", None)
            return sse("tool_result", {**base, "call_id": data.call_id, "status": status,
                                       "output": output}, event.id)
        case "error":
            return sse("error", {**base, **data.model_dump(mode="json")}, event.id)
    return None
