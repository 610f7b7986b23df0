"""The API on a server thread of its own, for fuzzers that call it synchronously.

Hypothesis and schemathesis drive plain (synchronous) test functions, so the harness's
uvicorn server (:func:`tests.api_harness.serve_api`, scripted engines, real Redis) runs
in an event loop on a thread of its own, and the fuzzers talk to it over real sockets on
127.0.0.1, like any client. One server per module; its Redis keys go when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest

from deployments.api import Services
from pipeline.engines import Transcriber
from schemas import (
    ApiSettings,
    EventLogSettings,
    RetrievalSettings,
    TranscriptionRequest,
    TranscriptSegment,
)
from tests.api_harness import forget_keys, serve_api
from tests.scripted_engines import ScriptedLLM, ScriptedTTS

T = TypeVar("T")

REPLY = ["Fuzzed ", "input ", "answered. ", "Still ", "here."]


class ScriptedSTT(Transcriber):
    """Transcribes any audio with a sound in it as one fixed segment (silence: nothing)."""

    name = "scripted-stt"

    async def transcribe(self, request: TranscriptionRequest) -> AsyncIterator[TranscriptSegment]:
        if any(request.audio):
            seconds = len(request.audio) / 2 / request.sample_rate
            yield TranscriptSegment(text="scripted transcript", start_s=0.0, end_s=seconds)


@dataclass
class LiveApi:
    """The harness's API on its server thread."""

    url: str
    services: Services
    loop: asyncio.AbstractEventLoop

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run ``coro`` in the server's loop (its Redis client lives there)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def create_session(self, **settings: Any) -> tuple[str, str]:
        """A new session's id and token."""
        response = httpx.post(f"{self.url}/v1/sessions", json={"settings": settings}, timeout=30)
        response.raise_for_status()
        body = response.json()
        return body["session_id"], body["token"]


@contextlib.contextmanager
def live_api(redis_url: str, key_prefix: str, api: ApiSettings | None = None,
             retrieval: RetrievalSettings | None = None) -> Iterator[LiveApi]:
    started: list[LiveApi] = []
    ready = threading.Event()
    failure: list[BaseException] = []
    stop: list[asyncio.Event] = []

    async def main() -> None:
        stop.append(asyncio.Event())
        try:
            async with serve_api(
                redis_url, EventLogSettings(key_prefix=key_prefix),
                llm=ScriptedLLM(REPLY, delay=0.001), tts=ScriptedTTS(chunks_per_piece=2),
                stt=ScriptedSTT(), api=api, retrieval=retrieval,
            ) as harness:
                started.append(LiveApi(harness.url, harness.services,
                                       asyncio.get_running_loop()))
                ready.set()
                await stop[0].wait()
        except BaseException as exc:
            failure.append(exc)
            raise
        finally:
            ready.set()

    thread = threading.Thread(target=asyncio.run, args=(main(),), name="fuzz-api", daemon=True)
    thread.start()
    ready.wait(60)
    if not started:
        thread.join(5)
        raise RuntimeError("the API harness did not start") from (failure or [None])[0]
    live = started[0]
    try:
        yield live
    finally:
        live.loop.call_soon_threadsafe(stop[0].set)
        thread.join(30)
        forget_keys(redis_url, key_prefix)



@pytest.fixture(scope="module")
def api(redis_url: str) -> Iterator[LiveApi]:
    with live_api(redis_url, f"voxfuzz:{uuid.uuid4().hex[:12]}") as live:
        yield live
