"""The official OpenAI SDK's realtime client against the real Serve app (Whisper tiny.en,
Gemma, Piper): a text turn, a voice turn at a speaker's pace, manual turns, a cancel, and
a dropped socket resumed by Voxline's extension with nothing repeated or missing."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.serve._app import App
from tests.support.audio_fixtures import piper_pcm16
from voxline.demo import with_pauses
from voxline.mcp_weather import forecast

pytestmark = [pytest.mark.serve, pytest.mark.models, pytest.mark.redis]

QUESTION = "What is the capital of France?"
RATE = 24000
FRAME = 2 * RATE * 20 // 1000  # 20 ms of PCM16
GREEDY = {"temperature": 0.0, "max_output_tokens": 40}


@pytest.fixture
async def sdk(app: App) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=f"{app.url}/v1", api_key="sk-anything", max_retries=0)
    try:
        yield client
    finally:
        await client.close()


async def _until(conn: Any, kind: str, seen: list[Any] | None = None) -> list[Any]:
    seen = [] if seen is None else seen
    while True:
        event = await asyncio.wait_for(conn.recv(), 300)
        seen.append(event)
        assert event.type != "error", event
        if event.type == kind:
            return seen


async def _speak(conn: Any, audio: bytes) -> None:
    """``audio`` appended in 20 ms frames, paced like a microphone."""
    start = time.perf_counter()
    for n, offset in enumerate(range(0, len(audio), FRAME)):
        await conn.input_audio_buffer.append(
            audio=base64.b64encode(audio[offset:offset + FRAME]).decode())
        await asyncio.sleep(max(0.0, start + (n + 1) * 0.02 - time.perf_counter()))


async def _ask(conn: Any, text: str) -> None:
    await conn.conversation.item.create(item={
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
    await conn.response.create()


async def test_a_text_turn(sdk: openai.AsyncOpenAI) -> None:
    async with sdk.realtime.connect(model="voxline") as conn:
        created = await conn.recv()
        assert created.type == "session.created"
        await conn.session.update(session={"type": "realtime", "instructions": "Answer briefly.",
                                           **GREEDY})
        await _until(conn, "session.updated")
        await _ask(conn, QUESTION)
        events = await _until(conn, "response.done")
    types = [e.type for e in events]
    assert types[:3] == ["conversation.item.added", "conversation.item.done",
                         "response.created"]
    transcript = "".join(e.delta for e in events
                         if e.type == "response.output_audio_transcript.delta")
    assert "paris" in transcript.lower()
    audio = b"".join(base64.b64decode(e.delta) for e in events
                     if e.type == "response.output_audio.delta")
    assert len(audio) > RATE  # more than half a second of 24 kHz PCM16
    done = events[-1].response
    assert done.status == "completed" and done.usage.output_tokens > 0
    assert done.output[0].content[0].transcript == transcript


async def test_a_voice_turn_at_a_speakers_pace(sdk: openai.AsyncOpenAI,
                                               spoken_question: bytes) -> None:
    audio = with_pauses(spoken_question, RATE)
    async with sdk.realtime.connect(model="voxline") as conn:
        await conn.recv()
        await conn.session.update(session={"type": "realtime", **GREEDY, "audio": {
            "input": {"format": {"type": "audio/pcm", "rate": RATE},
                      "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}},
            "output": {"format": {"type": "audio/pcm", "rate": RATE}, "voice": "alloy"}}})
        await _until(conn, "session.updated")
        await _speak(conn, audio)
        events = await _until(conn, "response.done")
    types = [e.type for e in events]
    order = ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
             "input_audio_buffer.committed", "conversation.item.added",
             "conversation.item.input_audio_transcription.completed",
             "conversation.item.done", "response.created",
             "response.output_audio.delta", "response.output_audio.done", "response.done"]
    assert [types.index(t) for t in order] == sorted(types.index(t) for t in order)
    heard = next(e for e in events
                 if e.type == "conversation.item.input_audio_transcription.completed")
    assert "capital" in heard.transcript.lower() and "france" in heard.transcript.lower()
    deltas = [e for e in events if e.type == "response.output_audio.delta"]
    assert sum(len(base64.b64decode(e.delta)) for e in deltas) > RATE
    assert events[-1].response.status == "completed"


async def test_manual_turns_wait_for_response_create(sdk: openai.AsyncOpenAI,
                                                     spoken_question: bytes) -> None:
    async with sdk.realtime.connect(model="voxline") as conn:
        await conn.recv()
        await conn.session.update(session={"type": "realtime", **GREEDY,
                                           "audio": {"input": {"turn_detection": None}}})
        updated = await _until(conn, "session.updated")
        assert updated[-1].session.audio.input.turn_detection is None
        for offset in range(0, len(spoken_question), 32 * FRAME):
            await conn.input_audio_buffer.append(
                audio=base64.b64encode(spoken_question[offset:offset + 32 * FRAME]).decode())
        await conn.input_audio_buffer.commit()
        heard = await _until(conn, "conversation.item.done")  # whole: transcribed
        [done] = [e for e in heard
                  if e.type == "conversation.item.input_audio_transcription.completed"]
        assert "france" in done.transcript.lower()
        assert "response.created" not in [e.type for e in heard]
        # nothing replies on its own: the next event is the answer to a bad event ...
        await conn.send({"type": "conversation.item.truncate", "item_id": "x",
                         "content_index": 0, "audio_end_ms": 0})
        error = await asyncio.wait_for(conn.recv(), 60)
        assert error.type == "error" and error.error.code == "not_found"  # no such reply
        # ... and a reply comes when asked for
        await conn.response.create()
        events = await _until(conn, "response.done")
    assert events[0].type == "response.created"
    assert events[-1].response.status == "completed"


async def test_cancel_mid_response(sdk: openai.AsyncOpenAI) -> None:
    async with sdk.realtime.connect(model="voxline") as conn:
        await conn.recv()
        await conn.session.update(session={"type": "realtime", "max_output_tokens": 300})
        await _until(conn, "session.updated")
        await _ask(conn, "Tell me a long story about a dragon and a knight.")
        await _until(conn, "response.output_audio_transcript.delta")
        await conn.response.cancel()
        events = await _until(conn, "response.done")
    assert events[-1].response.status == "cancelled"
    assert events[-1].response.status_details.reason == "client_cancelled"


async def test_a_dropped_socket_resumes_with_nothing_repeated_or_missing(
    sdk: openai.AsyncOpenAI,
) -> None:
    async with sdk.realtime.connect(model="voxline") as conn:
        created = await conn.recv()
        extension = created.session.voxline
        attach = {"session_id": extension["session_id"], "token": extension["token"]}
        await _ask(conn, QUESTION)
        first = await _until(conn, "response.output_audio_transcript.delta")
    # the socket is gone mid-reply; the reply goes on into the log
    resume = {**attach, "last_event_id": first[-1].event_id}
    async with sdk.realtime.connect(model="voxline", extra_query=resume) as conn:
        rest = await _until(conn, "response.done")
    # the whole turn, read again from the greeting's position
    replay = {**attach, "last_event_id": created.event_id}
    async with sdk.realtime.connect(model="voxline", extra_query=replay) as conn:
        whole = await _until(conn, "response.done")
    assert [e.event_id for e in first + rest] == [e.event_id for e in whole]
    assert [e.type for e in first + rest] == [e.type for e in whole]


async def test_an_unknown_websocket_path_closes_with_a_reason(app: App) -> None:
    url = "ws" + app.url.removeprefix("http") + "/v1/realtime/nothing-here"
    async with connect(url) as ws:
        frame = json.loads(await ws.recv())
        assert frame["type"] == "error" and frame["error"]["code"] == "not_found"
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4404, "not_found")


async def test_a_spoken_question_runs_the_mcp_servers_tool_and_the_answer_is_spoken(
    sdk: openai.AsyncOpenAI,
) -> None:
    """The example MCP server (``voxline.mcp_weather``, started by the Gateway) attached
    to a session; the question spoken, the forecast answered in speech from its output."""
    audio = with_pauses(piper_pcm16("What is the weather in Paris?", RATE), RATE)
    async with sdk.realtime.connect(model="voxline") as conn:
        await conn.recv()
        await conn.session.update(session={
            "type": "realtime", **GREEDY, "tool_choice": "required",
            "instructions": "You are a helpful assistant.",
            "tools": [{"type": "mcp", "server_label": "weather"}],
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": RATE},
                                "turn_detection": {"type": "server_vad",
                                                   "silence_duration_ms": 500}},
                      "output": {"format": {"type": "audio/pcm", "rate": RATE}}}})
        await _until(conn, "session.updated")
        await _speak(conn, audio)
        events = await _until(conn, "response.done")
    types = [e.type for e in events]
    assert "response.mcp_call.completed" in types
    done = events[-1].response
    [call] = [item for item in done.output if item.type == "mcp_call"]
    answer = json.loads(call.output)
    assert call.name == "weather__get_forecast" and answer == forecast(answer["city"],
                                                                        answer["day"])
    assert "response.output_audio.delta" in types[types.index("response.mcp_call.completed"):]
    [message] = [item for item in done.output if item.type == "message"]
    print(f"\nspoken answer: {message.content[0].transcript!r} from {answer}")
    assert done.status == "completed" and message.content[0].transcript.strip()
