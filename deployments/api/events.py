"""The session log over plain HTTP: an SSE replay/tail, and single audio chunks.

``GET /v1/sessions/{id}/events`` sends every event after ``after`` (or the
``Last-Event-ID`` header a reconnecting ``EventSource`` sends by itself), then follows
new ones live; ``follow=false`` ends after the replay. Each message's ``id`` is the
event's log id, its ``event`` the event type, its ``data`` the event as JSON.

``GET /v1/sessions/{id}/turns/{turn_id}/audio/{n}`` serves chunk ``n`` of a reply's audio
from the log, for clients that cannot hold a socket.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response, StreamingResponse

from deployments.api._deps import ServicesDep, authorized, authorized_state
from deployments.api._errors import error_responses
from deployments.api._services import Services
from deployments.api._sse import KEEPALIVE, SSE_HEADERS, resync_required, sse, with_keepalive
from pipeline.audio import content_type
from pipeline.session import check_cursor
from schemas import (
    ErrorCode,
    ResponseAudioChunk,
    ResyncRequiredError,
    SessionError,
    VoxlineError,
)

router = APIRouter(prefix="/v1/sessions", tags=["events"])


@router.get(
    "/{session_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}},
               **error_responses(400, 401, 403, 404, 409, 410, 422, 503)},
)
async def events(
    session_id: str,
    request: Request,
    services: ServicesDep,
    after: Annotated[str | None, Query(max_length=64, description="last id seen")] = None,
    follow: Annotated[bool, Query(description="keep following live events")] = True,
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
) -> StreamingResponse:
    """A malformed cursor, or one after the session's last event, is 400
    ``invalid_event_id``; one before the retention horizon is 410 ``resync_required``."""
    state = await authorized_state(session_id, request, services)
    cursor = last_event_id or after
    if cursor:
        await check_cursor(services.log, state, cursor)
    # A cursor before the trim horizon fails here, as a 410, before the stream starts.
    await services.log.read_page(session_id, cursor, count=1)
    body = _follow(services, session_id, cursor) if follow else _replay(services, session_id,
                                                                        cursor)
    return StreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS)


async def _replay(services: Services, session_id: str, after: str | None) -> AsyncGenerator[bytes]:
    try:
        async for event in services.log.read(session_id, after):
            yield sse(event.type, event.model_dump_json(), event.id)
    except VoxlineError as exc:
        yield sse("error", exc.to_payload().model_dump(mode="json"))


async def _follow(services: Services, session_id: str, after: str | None) -> AsyncGenerator[bytes]:
    tail = services.tails.tail(session_id, after)
    try:
        async for event in with_keepalive(tail, services.settings.api.keepalive_s):
            if event is None:
                yield KEEPALIVE
                continue
            yield sse(event.type, event.model_dump_json(), event.id)
            if event.type == "session.closed":
                return
    except ResyncRequiredError as exc:  # retention overtook a slow reader
        notice = resync_required(session_id, exc)
        yield sse(notice.type, notice.model_dump_json())
    except VoxlineError as exc:
        yield sse("error", exc.to_payload().model_dump(mode="json"))


@router.get(
    "/{session_id}/turns/{turn_id}/audio/{n}",
    response_class=Response,
    responses={200: {"content": {"audio/L16": {}, "audio/wav": {}, "audio/mpeg": {},
                                 "audio/ogg": {}}},
               **error_responses(401, 403, 404, 409, 422, 503)},
)
async def audio_chunk(
    session_id: str, turn_id: str, n: int, request: Request, services: ServicesDep
) -> Response:
    """Chunk ``n`` (0-based, over the whole reply) of a turn's audio, as stored."""
    state, log = await authorized(session_id, request, services)
    turn = state.turns.get(turn_id)
    if turn is None:
        raise SessionError(f"no turn {turn_id!r} in this session", code=ErrorCode.NOT_FOUND)
    for event in log:
        if (isinstance(event, ResponseAudioChunk) and event.turn_id == turn_id
                and event.data.chunk_index == n):
            data = event.data
            media = content_type(data.format, data.sample_rate)
            return Response(data.audio, media_type=media, headers={
                "X-Sample-Rate": str(data.sample_rate),
                "X-Sentence-Index": str(data.sentence_index),
                "X-Event-Id": event.id or "",
            })
    raise SessionError(
        f"turn {turn_id!r} has no audio chunk {n}"
        + ("" if turn.finished else " yet (the reply is still being spoken)"),
        code=ErrorCode.NOT_FOUND, transient=not turn.finished)
