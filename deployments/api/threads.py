"""``GET /v1/sessions/{id}/messages``: a session's conversation as a thread of messages.

The user's messages (typed, or what was transcribed) and the assistant's replies, oldest
first, with the citations each reply was grounded in, all from the session's log (its
fold, :mod:`pipeline.log.state`): whatever replica answers, the thread is the same. A
reply that was cancelled shows what the user heard; one still being written is not shown.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from deployments.api._deps import ServicesDep, authorized_state
from deployments.api._errors import error_responses
from schemas import Citation

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])


class ThreadMessage(BaseModel):
    role: Literal["user", "assistant"]
    content: str
    turn_id: str
    ts: int | None = Field(default=None, description="server clock, ms since epoch (a user "
                           "message: when its reply started)")
    status: Literal["completed", "cancelled", "failed"] | None = Field(
        default=None, description="how the reply ended (assistant messages)")
    citations: list[Citation] = Field(default_factory=list)


class Thread(BaseModel):
    session_id: str
    messages: list[ThreadMessage]
    #: retention trimmed the log's start: older messages are gone
    trimmed: bool = False


@router.get("/{session_id}/messages", response_model=Thread,
            responses=error_responses(401, 403, 404, 409, 422, 503))
async def messages(
    session_id: str, request: Request, services: ServicesDep
) -> Thread:
    state = await authorized_state(session_id, request, services)
    out: list[ThreadMessage] = []
    for turn in state.turns.values():
        if turn.user_text:
            out.append(ThreadMessage(role="user", content=turn.user_text,
                                     turn_id=turn.turn_id, ts=turn.started_ts))
        if turn.status in ("completed", "cancelled", "failed") and (
                turn.assistant_text or turn.citations):
            out.append(ThreadMessage(
                role="assistant", content=turn.assistant_text, turn_id=turn.turn_id,
                ts=turn.done_ts, status=turn.status,
                citations=turn.citations))
    return Thread(session_id=session_id, messages=out, trimmed=state.trimmed)
