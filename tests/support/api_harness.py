"""The API served by plain uvicorn in the test's own event loop, on scripted engines.

The Serve tests run the real app with real models; this harness runs the same FastAPI
application without Ray, so protocol behaviour such as resume can be tried many times in
seconds. :func:`serve_api` and :func:`forget_keys` live in :mod:`loadtests._gateway`, shared
with the benchmarks.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager

from websockets.asyncio.client import ClientConnection, connect

from loadtests._gateway import Harness, forget_keys, serve_api
from schemas import Event, EventLogSettings
from tests.support.engines import EnergyVAD, RecordingLLM, ScriptedSTT, ScriptedTTS

__all__ = ["Harness", "call_api", "connect_all", "forget_keys", "serve_api", "until_closed"]

#: what the calls' scripted user says, whatever was spoken
HEARD = "Hello there"


def call_api(
    redis_url: str,
    key_prefix: str,
    *,
    words: int = 20,
    delay: float = 0.03,
    chunk_bytes: int = 64,
    log: EventLogSettings | None = None,
    **settings: object,
) -> AbstractAsyncContextManager[Harness]:
    """The API for calls (phone, WebRTC, the Agents SDK): a reply of ``words`` words in
    sentences of five, one each ``delay`` s, spoken in two chunks a sentence (of
    ``chunk_bytes`` each: PCM16 at 16 kHz); speech
    heard by loudness (a tone is speech) and transcribed as :data:`HEARD`. ``log``: the
    event log's settings (the default: ``key_prefix``'s)."""
    tokens = [f"Word{i} " if i % 5 else f"Sentence {i}. " for i in range(1, words + 1)]
    return serve_api(
        redis_url,
        log or EventLogSettings(key_prefix=key_prefix),
        llm=RecordingLLM(tokens, delay=delay),
        tts=ScriptedTTS(chunks_per_piece=2, chunk_bytes=chunk_bytes),
        stt=ScriptedSTT(HEARD),
        vad=EnergyVAD(),
        **settings,
    )  # type: ignore[arg-type]


async def until_closed(harness: Harness, session_id: str) -> list[Event]:
    """The session's log once it is closed (a hang-up, say), waiting up to 5 s."""
    for _ in range(250):
        events = await harness.services.log.read_all(session_id)
        if events and events[-1].type == "session.closed":
            return events
        await asyncio.sleep(0.02)
    raise AssertionError(f"session not closed: {[e.type for e in events][-5:]}")


#: sockets opened at once by :func:`connect_all`
OPEN_AT_ONCE = 50


async def connect_all(urls: list[str]) -> list[ClientConnection]:
    """Open every socket, :data:`OPEN_AT_ONCE` at a time; if one fails, close those that
    opened (an unclosed transport is reported, as an error, in whichever later test the
    collector happens to run) and raise.

    A handshake has no timeout of its own (websockets' is 10 s): the caller's hang guard
    bounds the whole. 300 handshakes at once through Serve's proxy on a loaded two-core
    machine (CI's) passed 10 s, and how fast a busy proxy answers is not what the callers
    check."""
    sockets: list[ClientConnection] = []
    for start in range(0, len(urls), OPEN_AT_ONCE):
        opened = await asyncio.gather(
            *(connect(url, open_timeout=None) for url in urls[start:start + OPEN_AT_ONCE]),
            return_exceptions=True)
        sockets += [ws for ws in opened if isinstance(ws, ClientConnection)]
        failed = [exc for exc in opened if isinstance(exc, BaseException)]
        if failed:
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
            raise failed[0]
    return sockets
