"""The API on a server thread of its own, for fuzzers that call it synchronously.

Hypothesis and schemathesis drive plain (synchronous) test functions, so the harness's
uvicorn server (:func:`tests.support.api_harness.serve_api`, scripted engines, real Redis) runs
in an event loop on a thread of its own, and the fuzzers talk to it over real sockets on
127.0.0.1, like any client. One server per module; its Redis keys go when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from deployments.api import Services
from schemas import (
    ApiSettings,
    EventLogSettings,
    RetrievalSettings,
    WebRtcSettings,
)
from tests.support.api_harness import forget_keys, serve_api
from tests.support.engines import ScriptedLLM, ScriptedSTT, ScriptedTTS

T = TypeVar("T")


REPLY = ["Fuzzed ", "input ", "answered. ", "Still ", "here."]
#: every generated offer is answered (no rate), and a call that never connects (none of
#: the fuzzers' does) lets go of its session soon
FUZZED_CALLS = WebRtcSettings(offers_per_minute=100_000, ice_start_timeout_s=0.5)


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
                stt=ScriptedSTT("scripted transcript", only_sound=True), api=api,
                retrieval=retrieval, webrtc=FUZZED_CALLS,
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
