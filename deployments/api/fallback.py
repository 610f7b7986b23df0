"""Unknown WebSocket routes: a socket accepted, one ``error`` frame, closed with a reason.

Starlette answers a WebSocket upgrade on a path no route has with a bare HTTP 403, which
clients report as "forbidden" with nothing to go on. Here the socket is accepted, told
why in one frame (Voxline's ``data`` payload and OpenAI's ``error`` shape side by side,
code ``not_found``), and closed with 4404 and the reason ``not_found``. This router must
be included last: it matches every path.
"""

from __future__ import annotations

import contextlib
import json

from fastapi import APIRouter, WebSocket

from deployments.api._auth import accepted_subprotocol
from pipeline.openai_realtime import error_frame, local_id
from schemas import ErrorCode, VoxlineError

router = APIRouter(tags=["sockets"])


@router.websocket("/{path:path}")
async def unknown_socket(ws: WebSocket, path: str) -> None:
    """No WebSocket lives at ``path``."""
    error = VoxlineError(
        f"no WebSocket at /{path}; the sockets are /v1/sessions/{{id}}/ws and /v1/realtime",
        code=ErrorCode.NOT_FOUND, http_status=404, path=f"/{path}")
    payload = error.to_payload()
    frame = {**error_frame(payload, local_id()), "data": payload.model_dump(mode="json")}
    await ws.accept(subprotocol=accepted_subprotocol(ws))
    with contextlib.suppress(Exception):
        await ws.send_text(json.dumps(frame))
        await ws.close(code=4404, reason=ErrorCode.NOT_FOUND.value)
