"""Every error leaves the API the same way: an HTTP status and ``{"error": ErrorPayload}``.

The body's ``code`` is the stable contract (``schemas.ErrorCode``); the status follows
from the exception class. FastAPI's own validation errors become ``invalid_message``
with the failing fields in ``details``.

A server-side failure never shows its internals: the message of an ``internal_error``,
an unavailable event log or a failed stage is replaced by a plain sentence (the log has
the original), and anything else a route raises is caught by the handler of last
resort: logged, answered 500 ``internal_error`` with the same JSON body. A transient
error carries ``Retry-After`` (seconds, from ``retry_after_ms`` where the error has it).
Routes declare the statuses they answer with :func:`error_responses`, so the OpenAPI
spec shows that body for each of them.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from schemas import ErrorCode, ErrorPayload, VoxlineError

logger = logging.getLogger(__name__)

_HTTP_CODES = {401: ErrorCode.UNAUTHORIZED, 403: ErrorCode.FORBIDDEN, 404: ErrorCode.NOT_FOUND,
               413: ErrorCode.MESSAGE_TOO_LARGE, 415: ErrorCode.UNSUPPORTED_FORMAT}


#: server-side codes whose message may hold Redis, Lua or Python text: said plainly instead
_PLAIN_MESSAGES = {
    ErrorCode.INTERNAL_ERROR: "internal error; it was logged",
    ErrorCode.EVENT_LOG_UNAVAILABLE: "the session log is unavailable; try again",
    ErrorCode.APPEND_CONFLICT: "the session log changed under the request; try again",
    ErrorCode.STT_FAILED: "the speech-to-text stage failed",
    ErrorCode.LLM_FAILED: "the language model stage failed",
    ErrorCode.TTS_FAILED: "the text-to-speech stage failed",
    ErrorCode.VAD_FAILED: "the voice activity stage failed",
}


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: ErrorPayload


_MEANINGS = {
    400: "bad input (`invalid_message`, `invalid_settings`, `empty_input`, ...)",
    401: "no session token (`unauthorized`)",
    403: "the token is not this session's (`forbidden`)",
    404: "no such session, turn or chunk (`session_not_found`, `not_found`)",
    409: "the session is closed (`session_closed`)",
    410: "the cursor is older than the log's retention (`resync_required`)",
    413: "the input is over a limit (`message_too_large`, `text_too_long`, ...)",
    415: "audio or a sample rate the server cannot take",
    421: "the request's Host names no host this server answers for (`host_not_allowed`)",
    422: "a field is missing or has the wrong type (`invalid_message`, fields in `details`)",
    429: "too many requests from this client (`rate_limited`): retry after `Retry-After`",
    502: "a model failed (`stt_failed`, `tts_failed`, ...)",
    503: "overloaded, starting, or a dependency is unavailable: retry after `Retry-After`",
}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying (transient "
                                               "errors)", "schema": {"type": "integer"}}}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route that answers these statuses with ``{"error": ...}``."""
    return {status: {"model": ErrorBody, "description": _MEANINGS[status],
                     **({"headers": _RETRY_AFTER} if status >= 500 or status == 429 else {})}
            for status in statuses}


def error_response(error: VoxlineError) -> JSONResponse:
    payload = error.to_payload()
    if error.http_status >= 500 and payload.code in _PLAIN_MESSAGES:
        payload = payload.model_copy(update={"message": _PLAIN_MESSAGES[payload.code]})
    headers = None
    if error.transient:
        retry_ms = getattr(error, "retry_after_ms", 1000)
        headers = {"Retry-After": str(max(1, math.ceil(retry_ms / 1000)))}
    return JSONResponse(
        status_code=error.http_status,
        content={"error": payload.model_dump(mode="json")},
        headers=headers,
    )


def _payload(status: int, code: ErrorCode, message: str, **details: object) -> JSONResponse:
    body = ErrorPayload(code=code, message=message, details=details)
    return JSONResponse(status_code=status, content={"error": body.model_dump(mode="json")})


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(VoxlineError)
    async def voxline_error(_: Request, exc: VoxlineError) -> JSONResponse:
        if exc.http_status >= 500:
            logger.warning("request failed: %r", exc)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": ".".join(str(p) for p in err["loc"][1:]), "problem": err["msg"]}
            for err in exc.errors()
        ]
        summary = "; ".join(f"{p['field'] or 'body'}: {p['problem']}" for p in problems)
        return _payload(422, ErrorCode.INVALID_MESSAGE, f"invalid request: {summary}",
                        problems=problems)

    @app.exception_handler(Exception)
    async def last_resort(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path,
                         exc_info=exc)
        return _payload(500, ErrorCode.INTERNAL_ERROR, _PLAIN_MESSAGES[ErrorCode.INTERNAL_ERROR])

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, ErrorCode.INVALID_MESSAGE)
        return _payload(exc.status_code, code, str(exc.detail))
