"""A stopping server drains (plain uvicorn, scripted engines; ``Connections.drain`` is what the
Gateway runs when ``voxline serve`` gets SIGTERM or SIGINT).

New work is refused at once with ``server_draining`` (503 + ``Retry-After`` over HTTP, an
error frame and 4503 on a new socket), the turn already running finishes within the
grace period and reaches its socket, then every socket is closed with 1012 (``Service
Restart``: resume elsewhere); a turn still running when the grace ends is cut. The
whole-process test (signals, Ray, Redis, exit code) is tests/faults/test_sigterm.py.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from schemas import AdmissionSettings, EventLogSettings, parse_event
from tests.support.api_harness import serve_api
from tests.support.engines import ScriptedLLM, ScriptedTTS
from tests.support.waiting import until
from voxline.client import FINAL_TYPES, SessionSocket

pytestmark = pytest.mark.redis

TOKENS = ["Hello ", "there. ", "How ", "are ", "you? "]


async def events_until_closed(conn: SessionSocket) -> list[str]:
    types = []
    with pytest.raises(ConnectionClosed):
        async for event in conn.events():
            types.append(event.type)
    return types


async def test_a_drain_refuses_new_work_lets_the_turn_finish_then_closes_with_1012(
    redis_url: str, key_prefix: str
) -> None:
    llm = ScriptedLLM(TOKENS, gate_at=1)
    async with serve_api(redis_url, EventLogSettings(key_prefix=key_prefix), llm=llm,
                         tts=ScriptedTTS(), admission=AdmissionSettings(retry_after_ms=1500),
                         ) as h:
        client, services = h.client, h.services
        busy, idle, later = [await client.create_session(realtime_tts=False) for _ in range(3)]
        async with client.connect(busy, resume_for_s=0) as talking, \
                client.connect(idle, resume_for_s=0) as waiting:
            await talking.send_text("tell me")
            await until(lambda: llm.active == 1, "the turn is generating")
            await until(lambda: len(services.connections.sockets) == 2, "both sockets registered")
            drain = asyncio.create_task(services.connections.drain(grace_s=60))
            await until(lambda: services.admission.draining, "draining")

            # new sessions: refused over HTTP and on a new socket, with a retry hint
            refused = await client.http.post("/v1/sessions", json={})
            assert refused.status_code == 503 and refused.headers["retry-after"] == "2"
            assert refused.json()["error"]["code"] == "server_draining"
            assert refused.json()["error"]["transient"] is True
            chat = await client.http.post("/v1/chat/stream", json={"message": "hi"})
            assert chat.status_code == 503
            assert chat.json()["error"]["code"] == "server_draining"
            async with connect(f"{later.ws_url}?token={later.token}") as ws:
                frame = parse_event(json.loads(await ws.recv()))
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
            assert frame.type == "error" and frame.data.code == "server_draining"  # type: ignore[union-attr]
            assert ws.close_code == 4503 and ws.close_reason == "server_draining"
            ready = await client.http.get("/readyz")  # balancers send nothing new here
            assert ready.status_code == 503 and ready.json()["draining"] is True
            assert not drain.done()  # the running turn holds the drain

            llm.gate.set()  # the turn finishes within the grace and reaches its socket
            assert (await drain) == {"sockets": 2, "calls": 0, "turns_cut": 0}
            seen = await events_until_closed(talking)
            assert "response.done" in seen
            await events_until_closed(waiting)
            for conn in (talking, waiting):
                assert conn.ws is not None
                assert conn.ws.close_code == 1012 and conn.ws.close_reason == "server_draining"
        held = services.connections
        await until(lambda: not held.sockets and not held.live, "all released")
        log = [e.type for e in await services.log.read_all(busy.session_id)]
        assert log[-1] in FINAL_TYPES or "response.done" in log


async def test_a_turn_past_the_grace_is_cut_and_its_socket_still_closed_with_1012(
    redis_url: str, key_prefix: str
) -> None:
    llm = ScriptedLLM(TOKENS, gate_at=1)  # the gate never opens
    async with serve_api(redis_url, EventLogSettings(key_prefix=key_prefix), llm=llm,
                         tts=ScriptedTTS()) as h:
        session = await h.client.create_session(realtime_tts=False)
        async with h.client.connect(session, resume_for_s=0) as conn:  # the close itself
            await conn.send_text("tell me")
            await until(lambda: llm.active == 1, "the turn is generating")
            result = await h.services.connections.drain(grace_s=0.2)
            assert result == {"sockets": 1, "calls": 0, "turns_cut": 1}
            await events_until_closed(conn)
            assert conn.ws is not None and conn.ws.close_code == 1012
        # the session leaves ``live`` before its close has run, and the turn's place goes
        # back in the response task's last step, after the LLM's stream ended: wait for
        # it (a place never given back fails here, on the guard)
        await until(lambda: not h.services.connections.live and llm.active == 0
                    and h.services.admission.in_use("turns") == 0,
                    "the cut turn ended and gave its place back")


async def test_the_sdk_resumes_after_1012_with_no_gap_and_no_repeat(
    redis_url: str, key_prefix: str
) -> None:
    """The client's socket closed with 1012 reopens by itself, is refused (4503
    ``server_draining``) while the server still drains, and resumes once a server takes
    it again (here the same one, as a restarted server or another replica would)."""
    async with serve_api(redis_url, EventLogSettings(key_prefix=key_prefix),
                         llm=ScriptedLLM(TOKENS), tts=ScriptedTTS()) as h:
        session = await h.client.create_session(realtime_tts=False)
        async with h.client.connect(session) as conn:
            await conn.send_text("one")
            seen = [e async for e in conn.until_done()]
            await h.services.connections.drain(grace_s=5)
            reader = asyncio.create_task(anext(aiter(conn.events())))
            await until(lambda: conn.resumes >= 2, "a reopened socket was refused")
            assert not reader.done()  # the refusal was not handed to the reader
            h.services.admission.draining = False  # "restarted"
            await until(lambda: bool(h.services.connections.sockets), "the socket resumed")
            # a turn made elsewhere meanwhile (HTTP) reaches the resumed socket
            async for _ in h.client.chat_stream("two", session=session):
                pass
            seen.append(await reader)
            seen += [e async for e in conn.until_done()]
        ids = [e.id for e in seen]
        assert None not in ids and len(ids) == len(set(ids)) and ids == sorted(ids, key=_order)
        logged = [e.id for e in await h.services.log.read_all(session.session_id)]
        assert ids == logged[logged.index(ids[0]):][:len(ids)]  # no gap, no repeat
        assert seen[-1].type == "response.done"


def _order(event_id: str | None) -> tuple[int, int]:
    ms, _, seq = (event_id or "0-0").partition("-")
    return int(ms), int(seq)
