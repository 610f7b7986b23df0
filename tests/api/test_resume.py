"""Replay and resume: a client that drops its socket anywhere and comes back with the
last id it saw gets every later event exactly once, in order; SSE the same; an id
older than the trim horizon is refused with ``resync_required``; state folded from the
log is the same however often and wherever it is folded."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from pipeline.log import EventLog
from schemas import (
    ApiSettings,
    Event,
    EventLogSettings,
    InputText,
    InputTextData,
    parse_event,
)
from tests.support.api_harness import Harness, serve_api
from tests.support.engines import ScriptedLLM, ScriptedTTS
from voxline.client import FINAL_TYPES, SessionInfo


@pytest.fixture
def redis_url(both_redis_urls: str) -> str:
    """The event-log contract holds on a standalone Redis and on a Redis Cluster."""
    return both_redis_urls

pytestmark = pytest.mark.redis

TOKENS = [f"Word{i} " if i % 6 else f"Sentence {i}. " for i in range(1, 30)]


@pytest.fixture
async def harness(redis_url: str, key_prefix: str) -> AsyncIterator[Harness]:
    llm = ScriptedLLM(TOKENS, delay=0.002)
    async with serve_api(redis_url, EventLogSettings(key_prefix=key_prefix), llm=llm,
                         tts=ScriptedTTS(chunks_per_piece=2)) as harness:
        yield harness


async def _read(url: str, until: int | None) -> tuple[list[Event], bool]:
    """Events from a socket until ``until`` events were read (then drop) or the reply ends."""
    seen: list[Event] = []
    async with connect(url, max_size=None) as ws:
        async for frame in ws:
            event = parse_event(json.loads(frame))
            seen.append(event)
            if event.type in FINAL_TYPES:
                return seen, True
            if until is not None and len(seen) >= until:
                ws.transport.abort() if until % 2 else await ws.close()
                return seen, False
    return seen, False


async def _expected(harness: Harness, session: SessionInfo) -> list[str | None]:
    events = await harness.services.log.read_all(session.session_id)
    ids = [e.id for e in events[1:]]  # after session.created: the socket starts there
    done = next(i for i, e in enumerate(events[1:]) if e.type in FINAL_TYPES)
    return ids[: done + 1]


async def test_resume_after_a_drop_anywhere_sees_each_event_once(harness: Harness) -> None:
    for seed in range(50):
        rng = random.Random(seed)
        session = await harness.client.create_session()
        url = f"{session.ws_url}?token={session.token}"
        async with connect(url) as ws:
            await ws.send(json.dumps({"type": "input.text", "text": "Tell me something."}))
            greeting = parse_event(json.loads(await ws.recv()))
            assert greeting.type == "session.created" and greeting.id is None  # not logged
            first = [parse_event(json.loads(await ws.recv())) for _ in range(1)]
        # The first socket is gone after one event; then drops at random points.
        seen, done = first, False
        while not done:
            last = seen[-1].id
            if rng.random() < 0.5:  # reconnect with the id in the URL ...
                more, done = await _read(f"{url}&last_event_id={last}", rng.randint(1, 15))
            else:  # ... or with a session.resume message on a fresh socket
                more, done = await _resume_by_message(url, last, rng.randint(1, 15))
            seen += more
        assert [e.id for e in seen] == await _expected(harness, session), f"seed {seed}"


async def _resume_by_message(url: str, last: str | None, until: int) -> tuple[list[Event], bool]:
    seen: list[Event] = []
    async with connect(url) as ws:
        await ws.send(json.dumps({"type": "session.resume", "last_event_id": last}))
        async for frame in ws:
            event = parse_event(json.loads(frame))
            if event.id is None and event.type == "session.created":
                continue  # the socket's greeting, before the resumed events
            seen.append(event)
            if event.type in FINAL_TYPES:
                return seen, True
            if len(seen) >= until:
                return seen, False
    return seen, False


async def test_resume_after_events_were_sent_is_refused(harness: Harness) -> None:
    session = await harness.client.create_session()
    async with harness.client.connect(session) as conn:
        await conn.send_text("Hi.")
        events = [e async for e in conn.until_done()]
        await conn.send({"type": "session.resume", "last_event_id": events[0].id})
        error = await anext(e async for e in conn.events() if e.type == "error")
        assert error.data.code == "invalid_message"  # type: ignore[union-attr]


async def test_sse_resume_with_last_event_id(harness: Harness) -> None:
    client = harness.client
    messages = [m async for m in client.chat_stream("Hello there.")]
    thread, token = messages[0][1]["thread_id"], messages[0][1]["token"]
    events = await harness.services.log.read_all(thread)
    path = f"/v1/sessions/{thread}/events"
    got: list[str] = []
    cursor: str | None = None
    rng = random.Random(7)
    while len(got) < len(events):
        headers = {"Authorization": f"Bearer {token}"}
        if cursor:
            headers["Last-Event-ID"] = cursor
        take = rng.randint(1, 9)
        async with client.http.stream("GET", path, headers=headers) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("id: "):
                    cursor = line[4:]
                    got.append(cursor)
                    if len(got) % take == 0 or len(got) == len(events):
                        break
    assert got == [e.id for e in events]


async def test_resume_before_the_trim_horizon_is_refused(redis_url: str, key_prefix: str) -> None:
    log = EventLogSettings(key_prefix=key_prefix)
    async with serve_api(redis_url, log, llm=ScriptedLLM(TOKENS),
                         tts=ScriptedTTS(), api=ApiSettings(drain_s=5)) as harness:
        session = await harness.client.create_session()
        first_id = (await harness.services.log.read_page(session.session_id)).events[0].id
        async with harness.client.connect(session) as conn:
            await conn.send_text("Tell me something.")
            [e async for e in conn.until_done()]
        # Retention trims the start away once the turn is over: an append through a log
        # that keeps 8 entries. (Not a maxlen of 8 while the turn runs: a socket's live
        # read may lag its session's own appends by that much, and is rightly told to
        # resync, which is not what this test is about.)
        keeps_8 = EventLog(harness.services.log.redis,
                           log.model_copy(update={"maxlen": 8, "approximate_trim": False}))
        await keeps_8.append(InputText(session_id=session.session_id,
                                       data=InputTextData(text="(retention trims here)")))
        url = f"{session.ws_url}?token={session.token}&last_event_id={first_id}"
        async with connect(url) as ws:
            frame = json.loads(await ws.recv())
            assert frame["type"] == "session.resync_required", frame["data"]
            assert (frame["data"]["horizon"] > first_id and "id" not in frame) or not frame["id"]
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4410
        response = await harness.client.http.get(
            f"/v1/sessions/{session.session_id}/events",
            params={"after": first_id, "follow": "false"}, headers=session.auth)
        assert (response.status_code, response.json()["error"]["code"]) == (410, "resync_required")
        # The session itself goes on from what retention left (its start is gone).
        async with harness.client.connect(session) as conn:
            await conn.send_text("And now?")
            again = [e async for e in conn.until_done()]
        assert again[-1].type == "response.done"
        summary = await harness.client.http.get(f"/v1/sessions/{session.session_id}",
                                                headers=session.auth)
        assert summary.status_code == 200
