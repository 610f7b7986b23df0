"""Redis unreachable in the middle of a turn (a partition: connections cut, connects refused).

The API runs on scripted engines behind a redis_proxy to the test Redis; the LLM holds its reply
at a gate, the redis_proxy is cut, the gate opens. The client gets a clear error event
(``event_log_unavailable``, transient) instead of a hang or a dropped socket; the log holds
no half-written batch (every batch is one Lua script) and, once Redis is back, the session
is usable again: the next turn completes and the log reads back whole.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pipeline.log import fold
from schemas import ApiSettings, Event, EventLogSettings
from tests.support.api_harness import Harness, serve_api
from tests.support.engines import ScriptedLLM, ScriptedTTS
from tests.support.outages import DEAD_SOCKETS
from tests.support.redis_proxy import RedisProxy

pytestmark = [pytest.mark.redis, *DEAD_SOCKETS]

TOKENS = ["The", " capital", " of", " France", " is", " Paris", ".", " It", " is", " big", "."]


@pytest.fixture
async def gated(redis_proxy: RedisProxy, key_prefix: str) -> AsyncIterator[tuple[Harness, Any]]:
    llm = ScriptedLLM(TOKENS, delay=0.001, gate_at=3)
    # a short grace: the outage here lasts until the test ends it
    settings = EventLogSettings(key_prefix=key_prefix, outage_grace_s=1.0)
    async with serve_api(redis_proxy.url, settings, llm=llm,
                         tts=ScriptedTTS(chunks_per_piece=1),
                         api=ApiSettings(drain_s=2)) as harness:
        yield harness, llm


async def test_a_turn_that_loses_redis_ends_with_a_clear_error_and_the_session_recovers(
        gated: tuple[Harness, Any], redis_proxy: RedisProxy) -> None:
    harness, llm = gated
    session = await harness.client.create_session()
    seen: list[Event] = []
    async with harness.client.connect(session) as conn:
        await conn.send_text("What is the capital of France?")
        async for event in conn.events():
            seen.append(event)
            if event.type == "response.text.delta":
                break
        await redis_proxy.cut()
        llm.gate.set()
        errors = []
        async with asyncio.timeout(60):
            async for event in conn.events():
                seen.append(event)
                if event.type == "error":
                    errors.append(event)
                    break
    payload: Any = errors[0].data
    assert payload.code == "event_log_unavailable" and payload.transient is True
    for internal in ("Redis", "Lua", "Traceback", "ConnectionError"):
        assert internal not in payload.message

    await redis_proxy.restore()
    llm.gate_at = None
    async with asyncio.timeout(60):
        while True:  # the session is usable again once Redis answers
            try:
                async with harness.client.connect(session) as conn:
                    await conn.send_text("And of Italy?")
                    last = [e async for e in conn.until_done(stop_on_error=True)][-1]
                if last.type == "response.done":
                    break
            except Exception:
                pass
            await asyncio.sleep(0.5)
    data: Any = last.data
    assert data.status == "completed"

    logged = await harness.services.log.read_all(session.session_id)
    ids = [e.id for e in logged]
    assert len(ids) == len(set(ids)) and ids == sorted(ids, key=lambda i: tuple(
        int(p) for p in (i or "0-0").split("-")))
    # every event the client saw with an id is in the log: appended before it was sent
    assert {e.id for e in seen if e.id is not None} <= set(ids)
    state = fold(session.session_id, logged)
    assert state.turns, "the turns are in the log"


async def test_the_client_resumes_by_itself_once_the_log_answers_again(
        gated: tuple[Harness, Any], redis_proxy: RedisProxy) -> None:
    """Past the grace the socket is closed (4503 ``event_log_unavailable``); the client
    reopens it from its last id once Redis answers and gets the turn's end from the log."""
    harness, llm = gated
    session = await harness.client.create_session()

    async def back_soon() -> None:
        await asyncio.sleep(1.0)
        await redis_proxy.restore()

    restore: asyncio.Task[None] | None = None
    async with harness.client.connect(session) as conn:
        await conn.send_text("What is the capital of France?")
        async for event in conn.events():
            if event.type == "response.text.delta":
                break
        await redis_proxy.cut()
        llm.gate.set()
        async with asyncio.timeout(60):
            async for event in conn.events():
                if event.type == "error" and restore is None:
                    restore = asyncio.create_task(back_soon())
                if event.type in ("response.done", "response.cancelled"):
                    break
        assert restore is not None and conn.resumes >= 1
        llm.gate_at = None
        await conn.send_text("And of Italy?")
        async with asyncio.timeout(60):
            last = [event async for event in conn.until_done()][-1]
    assert last.type == "response.done"
    assert last.data.status == "completed"  # type: ignore[union-attr]
