"""Connections that scale (issue #11 rows 2 and 13), through the API on plain uvicorn:
idle sockets hold no Redis connection each, and a WebSocket upgrade whose request line
is too long is answered at once instead of left hanging."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable

import pytest
from websockets.asyncio.client import ClientConnection, connect

from schemas import EventLogSettings
from tests.support.api_harness import OPEN_AT_ONCE, Harness, connect_all, serve_api
from tests.support.engines import ScriptedLLM, ScriptedTTS

pytestmark = pytest.mark.redis

IDLE_SOCKETS = 300
HANG_GUARD_S = 60  # a hang guard, not a timing assertion


@pytest.fixture
async def harness(redis_url: str, key_prefix: str) -> AsyncIterator[Harness]:
    llm = ScriptedLLM(["Hello ", "there. ", "How ", "are ", "you?"], delay=0.001)
    async with serve_api(redis_url, EventLogSettings(key_prefix=key_prefix), llm=llm,
                         tts=ScriptedTTS(chunks_per_piece=2)) as harness:
        yield harness


async def _until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(int(HANG_GUARD_S / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"still not {what} after {HANG_GUARD_S} s")


def _in_use(harness: Harness) -> int:
    pool = harness.services.redis.connection_pool
    return len(list(pool._get_in_use_connections()))  # type: ignore[attr-defined]



async def test_idle_sockets_hold_no_redis_connection_each(harness: Harness) -> None:
    client, tails = harness.client, harness.services.tails
    # made 50 at a time: 300 at once waited on the client's pool past its 30 s timeout
    # on a slower 2-core machine (httpx.PoolTimeout)
    sessions = []
    for start in range(0, IDLE_SOCKETS, OPEN_AT_ONCE):
        batch = min(OPEN_AT_ONCE, IDLE_SOCKETS - start)
        sessions += await asyncio.gather(*(client.create_session() for _ in range(batch)))
    sockets: list[ClientConnection] = []
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            sockets = await connect_all([f"{s.ws_url}?token={s.token}" for s in sessions])
        await _until(lambda: tails.subscribers >= IDLE_SOCKETS, "every sender live")
        assert tails.streams == IDLE_SOCKETS
        assert _in_use(harness) <= 3, f"{_in_use(harness)} Redis connections in use"
        ready = await client.http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["log_tail"]["readers"] >= IDLE_SOCKETS
        # a bystander's turn goes through while the idle sockets stay open
        bystander = await client.create_session()
        async with asyncio.timeout(HANG_GUARD_S), client.connect(bystander) as conn:
            await conn.send_text("Hi!")
            events = [e async for e in conn.until_done()]
        assert events[-1].type == "response.done"
        assert _in_use(harness) <= 3
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    await _until(lambda: not tails.subscribers, "every sender gone")
    assert tails.streams == 0


async def test_an_sse_tail_and_a_socket_share_the_reader(harness: Harness) -> None:
    client, tails = harness.client, harness.services.tails
    session = await client.create_session()
    path = f"/v1/sessions/{session.session_id}/events"
    async with asyncio.timeout(HANG_GUARD_S):
        async with client.http.stream("GET", path, headers=session.auth) as sse:
            lines = sse.aiter_lines()
            assert (await anext(lines)).startswith("id: ")  # session.created, replayed
            async with client.connect(session) as conn:
                await conn.send_text("Hi!")
                events = [e async for e in conn.until_done()]
                assert tails.subscribers == 2 and tails.streams == 1
            seen = []
            async for line in lines:
                if line.startswith("id: "):
                    seen.append(line[4:])
                    if seen[-1] == events[-1].id:
                        break
    assert seen == [e.id for e in events if e.id]  # not the socket's session.created


async def _raw_request(url: str, head: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head)
        await writer.drain()
        async with asyncio.timeout(HANG_GUARD_S):  # before the fix: no answer, no close
            return await reader.read(1024)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def test_a_websocket_upgrade_with_a_12_kb_request_line_is_answered(
    harness: Harness,
) -> None:
    session = await harness.client.create_session()
    path = f"/v1/sessions/{session.session_id}/ws?token={session.token}&pad={'a' * 12_000}"
    head = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n").encode()
    answer = await _raw_request(harness.url, head)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer[:80]
    # the server is fine afterwards, and ordinary upgrades still work
    async with connect(f"{session.ws_url}?token={session.token}") as ws:
        await ws.send(json.dumps({"type": "input.text", "text": "Hi!"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), HANG_GUARD_S))["type"]
