"""Server-sent events: framing, and keep-alive comments while a stream is quiet."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, TypeVar

from pipeline.aio import aclose_stream, reraise_lost_cancel
from schemas import ResyncRequiredData, ResyncRequiredError, SessionResyncRequired

T = TypeVar("T")

#: Headers that keep proxies from buffering or caching a stream.
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
KEEPALIVE = b": keep-alive\n\n"


def resync_required(session_id: str, exc: ResyncRequiredError) -> SessionResyncRequired:
    """What a reader behind the trim horizon is sent instead of the events it missed."""
    horizon = exc.details.get("horizon")
    return SessionResyncRequired(session_id=session_id, data=ResyncRequiredData(
        horizon=str(horizon) if horizon else None, message=exc.message))


def sse(event: str, data: Any, event_id: str | None = None) -> bytes:
    """One SSE message named ``event`` (Voxline's streams); ``data`` as :func:`sse_data`."""
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\n".encode() + sse_data(data)


def sse_data(data: Any) -> bytes:
    """One SSE message of data alone (OpenAI's streams name no event): ``data`` as compact
    JSON; a string is taken as already encoded (``[DONE]`` too), one ``data:`` line per
    line of it."""
    body = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return "".join(f"data: {line}\n" for line in body.split("\n")).encode() + b"\n"


async def with_keepalive(
    stream: AsyncIterator[T], interval_s: float
) -> AsyncGenerator[T | None, None]:
    """Items of ``stream``, and ``None`` whenever it was quiet for ``interval_s``."""
    iterator = aiter(stream)
    pending: asyncio.Future[T] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(iterator))
            done, _ = await asyncio.wait({pending}, timeout=interval_s)
            reraise_lost_cancel()
            if not done:
                yield None
                continue
            future, pending = pending, None
            try:
                item = future.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
            reraise_lost_cancel()
        with contextlib.suppress(Exception):
            await aclose_stream(iterator)
