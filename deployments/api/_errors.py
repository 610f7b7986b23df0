"""Every error leaves the API the same way: an HTTP status and ``{"error": ErrorPayload}``.

The body's ``code`` is the stable contract (``schemas.ErrorCode``); the status follows
from the exception class. FastAPI's own validation errors become ``invalid_message``
with the failing fields in ``details``.
"""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from schemas import ErrorCode, ErrorPayload, OverloadedError, VoxlineError

logger = logging.getLogger(__name__)

_HTTP_CODES = {401: ErrorCode.UNAUTHORIZED, 403: ErrorCode.FORBIDDEN, 404: ErrorCode.NOT_FOUND,
               413: ErrorCode.MESSAGE_TOO_LARGE, 415: ErrorCode.UNSUPPORTED_FORMAT}


def error_response(error: VoxlineError) -> JSONResponse:
    return JSONResponse(
        status_code=error.http_status,
        content={"error": error.to_payload().model_dump(mode="json")},
        headers={"Retry-After": _retry_after(error)} if error.transient else None,
    )


def _retry_after(error: VoxlineError) -> str:
    """Whole seconds, rounded up: an overload's own hint, else 1."""
    if isinstance(error, OverloadedError):
        return str(max(1, math.ceil(error.retry_after_ms / 1000)))
    return "1"


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

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, ErrorCode.INVALID_MESSAGE)
        return _payload(exc.status_code, code, str(exc.detail))
