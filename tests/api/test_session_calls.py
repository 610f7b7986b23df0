"""A session's call (``POST /v1/sessions/{id}/calls``), as Voxline's page makes it: an
aiortc peer with a microphone track and the ``voxline-events`` channel, on the API
harness (scripted engines, real Redis): native events on the channel in log order with
the audio on the track, a voice turn, a cancel that silences the track at once, hang-up
leaving the session open for its socket, resume, and the refusals (formats, token, API
key, capacity)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr
from websockets.asyncio.client import connect

from loadtests._webrtc_call import WebRtcCaller
from pipeline.webrtc import CALL_RATE
from schemas import AdmissionSettings, ApiSettings, EventLogSettings, WebRtcSettings
from tests.support.api_harness import Harness, call_api
from tests.support.audio_fixtures import tone
from voxline.client import SessionInfo

pytestmark = pytest.mark.redis

CHANNEL = "voxline-events"
CALL_FORMATS = {"input_sample_rate": CALL_RATE, "output_sample_rate": CALL_RATE,
                "output_format": "pcm16"}


@pytest.fixture
async def harness(redis_url: str, key_prefix: str) -> AsyncIterator[Harness]:
    async with call_api(redis_url, key_prefix, words=60, delay=0.05) as harness:
        yield harness


async def _call(harness: Harness, session: SessionInfo, query: str = "") -> WebRtcCaller:
    caller = WebRtcCaller(channel=CHANNEL)
    answer = await caller.call(harness.url, f"/v1/sessions/{session.session_id}/calls{query}",
                               **{"X-Voxline-Token": session.token})
    assert answer.status_code == 201, answer.text
    assert caller.location is not None
    assert caller.location.startswith(f"/v1/sessions/{session.session_id}/calls/rtc_")
    return caller


async def test_a_call_carries_the_native_events_and_the_reply_on_the_track(
    harness: Harness
) -> None:
    session = await harness.client.create_session(**CALL_FORMATS)
    caller = await _call(harness, session)
    try:
        created = await caller.until("session.created")
        assert created["data"]["settings"]["input_sample_rate"] == CALL_RATE
        caller.send(type="input.text", text="Hi")
        await caller.until("response.done")
        chunks = [e for e in caller.events if e["type"] == "response.audio.chunk"]
        assert chunks and all(c["data"]["audio"] == "" for c in chunks)  # the track has it
        assert [c["data"]["end_ms"] for c in chunks] == sorted(c["data"]["end_ms"]
                                                               for c in chunks)
        ids = [e["id"] for e in caller.events[1:]]
        logged = [e.id for e in await harness.services.log.read_all(session.session_id)]
        assert ids == logged[-len(ids):]  # the log's events, in its order
        await caller.quiet(0.3)
        assert caller.loud  # the reply was heard on the track
        # a voice turn from the microphone
        caller.clear()
        await caller.say(tone(0.6, True) + tone(0.8, False), 16000)
        await caller.until("input.speech_started")
        await caller.until("input.audio")
        await caller.until("response.done")
    finally:
        await caller.close()


async def test_a_binary_message_on_the_channel_is_refused_and_the_call_goes_on(
    harness: Harness
) -> None:
    """The channel is served as a socket is: what is wrong with a message is an ``error``
    in the log, and the next message is applied."""
    session = await harness.client.create_session(**CALL_FORMATS)
    caller = await _call(harness, session)
    try:
        await caller.until("session.created")
        caller.channel.send(b"\x00\x01")
        error = await caller.until("error")
        assert error["data"]["code"] == "invalid_message"
        assert "JSON text" in error["data"]["message"]
        caller.send(type="input.text", text="Hi")
        await caller.until("response.done")
    finally:
        await caller.close()


async def test_a_reply_longer_than_the_track_holds_is_sent_to_its_end(
    redis_url: str, key_prefix: str
) -> None:
    """The track reads the log no faster than it plays (``max_buffer_s``), so a long reply
    holds the call's tail back until it falls behind the shared reader (``tail_queue``):
    the tail reads on from the log, every event once, and the call goes on (a socket's
    client would be closed and resume by itself; a call cannot)."""
    log = EventLogSettings(key_prefix=key_prefix, tail_queue=4)
    async with call_api(redis_url, key_prefix, words=30, delay=0.0, chunk_bytes=16000,
                        log=log, webrtc=WebRtcSettings(max_buffer_s=1)) as harness:
        session = await harness.client.create_session(**CALL_FORMATS)
        caller = await _call(harness, session)
        try:
            await caller.until("session.created")
            caller.send(type="input.text", text="Tell me a long story")
            done = await caller.until("response.done", timeout_s=60)
            assert done["data"]["status"] == "completed"
            assert "error" not in [e["type"] for e in caller.events]
            ids = [e["id"] for e in caller.events[1:]]
            logged = [e.id for e in await harness.services.log.read_all(session.session_id)]
            assert ids == logged[-len(ids):]  # each once, in the log's order
            chunks = [e for e in caller.events if e["type"] == "response.audio.chunk"]
            assert chunks[-1]["data"]["end_ms"] >= 5000  # 6 s of reply: 5 s held back
        finally:
            await caller.close()


async def test_a_cancelled_reply_stops_sounding_and_the_session_outlives_the_call(
    redis_url: str, key_prefix: str
) -> None:
    async with call_api(redis_url, key_prefix, words=60, chunk_bytes=16000) as harness:
        await _cancel_then_hang_up(harness)  # chunks of half a second: 12 s to say


async def _cancel_then_hang_up(harness: Harness) -> None:
    session = await harness.client.create_session(**CALL_FORMATS)
    caller = await _call(harness, session)
    try:
        await caller.until("session.created")
        caller.send(type="input.text", text="Tell me a long story")
        await caller.until("response.audio.chunk")
        for _ in range(100):  # it is sounding
            if caller.loud:
                break
            await asyncio.sleep(0.05)
        caller.send(type="response.cancel")
        cancelled = await caller.until("response.cancelled")
        truncated = await caller.until("response.truncated")
        assert truncated["turn_id"] == cancelled["turn_id"]
        heard = len(caller.loud)
        written = max(e["data"]["end_ms"] for e in caller.events
                      if e["type"] == "response.audio.chunk")
        unplayed_ms = written - truncated["data"]["audio_end_ms"]
        assert unplayed_ms >= 500  # uncut, 25 frames or more with sound would follow
        await asyncio.sleep(unplayed_ms / 1000)
        assert len(caller.loud) - heard <= 10  # what the jitter buffer held, at most
        async with httpx.AsyncClient() as http:
            hung = await http.post(f"{harness.url}{caller.location}/hangup",
                                   headers={"X-Voxline-Token": session.token})
        assert hung.status_code == 204
        for _ in range(100):
            if not harness.services.connections.calls and not harness.services.connections.live:
                break
            await asyncio.sleep(0.02)
        assert not harness.services.connections.calls and not harness.services.connections.live
    finally:
        await caller.close()
    events = await harness.services.log.read_all(session.session_id)
    assert events[-1].type != "session.closed"  # the session goes on: its socket works
    async with connect(f"{session.ws_url}?token={session.token}"
                       if "token=" not in session.ws_url else session.ws_url) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"


async def test_a_call_resumes_after_an_event_id_without_a_greeting(harness: Harness) -> None:
    session = await harness.client.create_session(**CALL_FORMATS)
    first = await _call(harness, session)
    try:
        await first.until("session.created")
        first.send(type="input.text", text="Hi")
        await first.until("response.done")
    finally:
        await first.close()
    logged = await harness.services.log.read_all(session.session_id)
    middle = logged[len(logged) // 2].id
    second = await _call(harness, session, f"?last_event_id={middle}")
    try:
        await second.until("response.done")
        after = [e.id for e in logged[len(logged) // 2 + 1:]]
        assert [e["id"] for e in second.events] == after[:len(second.events)]
        assert second.events[0]["type"] != "session.created"
    finally:
        await second.close()


async def test_a_call_is_refused_where_the_session_cannot_have_one(harness: Harness) -> None:
    plain = await harness.client.create_session()  # 16 kHz in, 24 kHz out
    caller = WebRtcCaller(channel=CHANNEL)
    try:
        path = f"/v1/sessions/{plain.session_id}/calls"
        answer = await caller.call(harness.url, path, **{"X-Voxline-Token": plain.token})
        assert answer.status_code == 415, answer.text
        assert answer.json()["error"]["code"] == "unsupported_format"
        assert (await caller.call(harness.url, path)).status_code == 401  # no token
        assert (await caller.call(harness.url, "/v1/sessions/nope/calls",
                                  **{"X-Voxline-Token": "x"})).status_code == 404
        assert not harness.services.connections.live and not harness.services.connections.calls
        assert harness.services.admission.in_use("sessions") == 0
    finally:
        await caller.close()


async def test_calls_need_the_api_key_and_a_place(redis_url: str, key_prefix: str) -> None:
    key = "sk-page"
    async with call_api(redis_url, key_prefix, api=ApiSettings(keys=(SecretStr(key),)),
                        admission=AdmissionSettings(max_sessions=1)) as harness:
        async with httpx.AsyncClient() as http:
            made, other = [(await http.post(f"{harness.url}/v1/sessions",
                                            json={"settings": CALL_FORMATS},
                                            headers={"Authorization": f"Bearer {key}"})).json()
                           for _ in range(2)]
        path = f"/v1/sessions/{made['session_id']}/calls"
        token = {"X-Voxline-Token": made["token"]}
        keyless, full, caller = (WebRtcCaller(channel=CHANNEL) for _ in range(3))
        try:
            assert (await keyless.call(harness.url, path, **token)).status_code == 401
            answer = await caller.call(harness.url, path, **token,
                                       Authorization=f"Bearer {key}")
            assert answer.status_code == 201, answer.text
            await caller.until("session.created")
            # the call holds the replica's one place: another session's is refused, and
            # says when (a second offer on the same session would replace this call)
            refused = await full.call(harness.url, f"/v1/sessions/{other['session_id']}/calls",
                                      Authorization=f"Bearer {key}",
                                      **{"X-Voxline-Token": other["token"]})
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "overloaded"
            assert int(refused.headers["retry-after"]) >= 1
            assert len(harness.services.connections.calls) == 1
        finally:
            for peer in (keyless, full, caller):
                await peer.close()
