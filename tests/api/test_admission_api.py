"""Admission control through the API (plain uvicorn, scripted engines, small limits): the
N+1-th concurrent session, turn, transcription or speech request is refused at once with
503 + ``Retry-After`` (or the socket's ``overloaded`` error event), while the admitted
ones complete; a place given back is free again."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import wave

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from schemas import (
    AdmissionSettings,
    EventLogSettings,
    parse_event,
)
from tests.support.api_harness import Harness, serve_api
from tests.support.engines import ScriptedLLM, ScriptedSTT, ScriptedTTS
from tests.support.waiting import until
from voxline.client import FINAL_TYPES

pytestmark = pytest.mark.redis

TOKENS = ["Hello ", "there. ", "How ", "are ", "you? "]
RETRY_MS = 1500  # sent as Retry-After: 2 (seconds, rounded up)


def wav(seconds: float = 0.2, rate: int = 16000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(int(seconds * rate) * 2))
    return out.getvalue()


def harness_with(
    redis_url: str, key_prefix: str, llm: ScriptedLLM, *, gated_tts: bool = False,
    **limits: int,
) -> contextlib.AbstractAsyncContextManager[Harness]:
    return serve_api(
        redis_url, EventLogSettings(key_prefix=key_prefix), llm=llm,
        tts=ScriptedTTS(gated=gated_tts), stt=ScriptedSTT("hello", gated=True),
        admission=AdmissionSettings(retry_after_ms=RETRY_MS, **limits),  # type: ignore[arg-type]
    )


def assert_refused(response: httpx.Response, work: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "2"
    error = response.json()["error"]
    assert error["code"] == "overloaded" and error["transient"] is True
    assert error["details"]["retry_after_ms"] == RETRY_MS
    assert error["details"]["work"] == work


async def test_the_turn_past_capacity_gets_overloaded_and_the_admitted_complete(
    redis_url: str, key_prefix: str
) -> None:
    llm = ScriptedLLM(TOKENS, gate_at=1)
    async with harness_with(redis_url, key_prefix, llm, max_turns=2) as harness:
        client = harness.client
        sessions = [await client.create_session(realtime_tts=False) for _ in range(3)]
        async with client.connect(sessions[0]) as a, client.connect(sessions[1]) as b, \
                client.connect(sessions[2]) as c:
            await a.send_text("one")
            await b.send_text("two")
            await until(lambda: llm.active == 2, "two turns generating")
            await c.send_text("three")
            # a client waiting for the reply is told there will be none, and stops
            async with asyncio.timeout(30):  # a bound on a hang, not a latency
                refused = [e async for e in c.until_done()]
            assert [e.type for e in refused] == ["error"]
            error = refused[0].data.model_dump(mode="json")
            assert error["code"] == "overloaded"
            assert error["details"]["retry_after_ms"] == RETRY_MS  # type: ignore[index]
            assert harness.services.admission.in_use("turns") == 2
            # the refused turn appended nothing but the error: no input, no response
            log = await harness.services.log.read_all(sessions[2].session_id)
            assert [e.type for e in log] == ["session.created", "error"]
            llm.gate.set()
            for conn in (a, b):
                finals = [e async for e in conn.until_done() if e.type in FINAL_TYPES]
                assert finals[-1].type == "response.done"
            await until(lambda: harness.services.admission.in_use("turns") == 0, "turns freed")
            await c.send_text("three again")  # a freed place is free again
            finals = [e async for e in c.until_done() if e.type in FINAL_TYPES]
            assert finals[-1].type == "response.done"


async def test_the_session_past_capacity_is_refused_on_the_socket_and_over_http(
    redis_url: str, key_prefix: str
) -> None:
    async with harness_with(redis_url, key_prefix, ScriptedLLM(TOKENS),
                            max_sessions=2) as harness:
        client = harness.client
        sessions = [await client.create_session() for _ in range(3)]
        async with client.connect(sessions[0]), client.connect(sessions[1]):
            await until(lambda: harness.services.admission.in_use("sessions") == 2, "2 open")
            url = f"{sessions[2].ws_url}?token={sessions[2].token}"
            async with connect(url) as ws:
                frame = parse_event(json.loads(await ws.recv()))
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
                assert ws.close_code == 4503 and ws.close_reason == "overloaded"
            assert frame.type == "error" and frame.data.code == "overloaded"  # type: ignore[union-attr]
            response = await client.http.post("/v1/chat/stream", json={"message": "hi"})
            assert_refused(response, "sessions")
        await until(lambda: harness.services.admission.in_use("sessions") == 0, "closed")
        async with client.connect(sessions[2]) as conn:  # admitted now
            await conn.send_text("hello")
            finals = [e async for e in conn.until_done() if e.type in FINAL_TYPES]
            assert finals[-1].type == "response.done"


async def test_a_chat_turn_past_capacity_is_a_503_and_creates_no_session(
    redis_url: str, key_prefix: str
) -> None:
    llm = ScriptedLLM(TOKENS, gate_at=1)
    async with harness_with(redis_url, key_prefix, llm, max_turns=1) as harness:
        client = harness.client

        async def chat() -> list[tuple[str, dict[str, object]]]:
            return [m async for m in client.chat_stream("first")]

        first = asyncio.create_task(chat())
        await until(lambda: llm.active == 1, "the first chat generating")
        sessions_before = harness.services.admission.in_use("sessions")
        response = await client.http.post("/v1/chat/stream", json={"message": "second"})
        assert_refused(response, "turns")
        assert "x-voxline-token" not in response.headers  # no session was made for it
        assert harness.services.admission.in_use("sessions") == sessions_before
        llm.gate.set()
        messages = await first
        assert messages[-1][0] == "done" and messages[-1][1]["status"] == "completed"
        await until(lambda: harness.services.admission.in_use("sessions") == 0, "released")


async def test_speech_past_capacity_is_a_503_and_the_admitted_one_completes(
    redis_url: str, key_prefix: str
) -> None:
    async with harness_with(redis_url, key_prefix, ScriptedLLM(TOKENS), max_speech=1,
                            gated_tts=True) as harness:
        client = harness.client
        tts = harness.services.engines.tts
        assert isinstance(tts, ScriptedTTS) and tts.gate is not None
        body = {"input": "Hello there. How are you?", "response_format": "pcm"}
        first = asyncio.create_task(client.http.post("/v1/audio/speech", json=body))
        await until(lambda: tts.active == 1, "the first speech synthesizing")
        assert_refused(await client.http.post("/v1/audio/speech", json=body), "speech")
        for _ in range(8):
            tts.gate.release()
        response = await first
        assert response.status_code == 200 and response.content
        await until(lambda: harness.services.admission.in_use("speech") == 0, "released")
        tts.gate.release(), tts.gate.release(), tts.gate.release(), tts.gate.release()
        again = await client.http.post("/v1/audio/speech", json=body)
        assert again.status_code == 200


async def test_a_transcription_past_capacity_is_a_503_and_the_admitted_one_completes(
    redis_url: str, key_prefix: str
) -> None:
    async with harness_with(redis_url, key_prefix, ScriptedLLM(TOKENS),
                            max_transcriptions=1) as harness:
        client = harness.client
        stt = harness.services.engines.stt
        assert isinstance(stt, ScriptedSTT)
        first = asyncio.create_task(client.transcribe(wav()))
        await until(lambda: stt.entered == 1, "the first transcription running")
        response = await client.http.post("/v1/audio/transcriptions",
                                          files={"file": ("a.wav", wav())})
        assert_refused(response, "transcriptions")
        stt.gate.set()
        assert await first == {"text": "hello"}
        assert harness.services.admission.in_use("transcriptions") == 0
        assert await client.transcribe(wav()) == {"text": "hello"}
