"""Bounds and strictness of the OpenAI-compatible protocols, through the API harness (the
real app on scripted engines, real Redis), with the official SDK where a client would use
it: a chat completion's whole prompt is bounded before the LLM sees it; text content
parts are taken, other parts refused with a code; usage counts the engine's tokens; the
realtime audio buffer of manual turns is bounded in seconds; unknown modalities and
binary frames on ``/v1/realtime`` are errors; every ``overloaded`` says when to retry.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import httpx
import openai
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from schemas import (
    AdmissionSettings,
    ApiSettings,
    EngineError,
    ErrorCode,
    EventLogSettings,
    GenerationRequest,
    GenerationUsage,
    HistorySettings,
)
from tests.support.api_harness import Harness, serve_api
from tests.support.engines import RecordingLLM, ScriptedLLM, ScriptedSTT, ScriptedTTS
from tests.support.openai_sdk import sdk

pytestmark = pytest.mark.redis

WINDOW = 2048  # the CPU LLM's context window
RETRY_MS = 2500  # not the default: the hint must come from the settings


class WindowedLLM(RecordingLLM):
    """A scripted LLM that knows its context window, as llama.cpp's engine does."""

    @property
    def context_tokens(self) -> int:
        return WINDOW


@pytest.fixture
async def llm() -> WindowedLLM:
    return WindowedLLM(["Hello", " there", "."])


@pytest.fixture
async def harness(redis_url: str, key_prefix: str, llm: WindowedLLM) -> AsyncIterator[Harness]:
    async with serve_api(redis_url, EventLogSettings(key_prefix=key_prefix), llm=llm,
                         tts=ScriptedTTS(chunks_per_piece=1), stt=ScriptedSTT("Hello there"),
                         api=ApiSettings(max_buffer_seconds=1.0),
                         admission=AdmissionSettings(retry_after_ms=RETRY_MS)) as harness:
        yield harness


# ---- the whole prompt is bounded (context_length_exceeded) ------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_a_prompt_over_the_context_window_is_400_and_never_reaches_the_llm(
    harness: Harness, llm: WindowedLLM, stream: bool
) -> None:
    """256 messages of 4,000 characters: each within its limit, 340k tokens together."""
    messages = [{"role": "user", "content": "x" * 4000}] * 256
    async with sdk(harness) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(
                model="any", messages=messages, stream=stream)  # type: ignore[call-overload]
    assert caught.value.status_code == 400
    assert caught.value.code == "context_length_exceeded"
    assert f"maximum context length is {WINDOW} tokens" in caught.value.message
    assert llm.requests == []
    assert harness.services.admission.in_use("turns") == 0


async def test_a_prompt_within_the_window_is_answered(
    harness: Harness, llm: WindowedLLM
) -> None:
    per_token = HistorySettings().chars_per_token
    fits = "x" * (int((WINDOW - 2 * 4) * per_token) // 2)  # two messages at the window
    async with sdk(harness) as client:
        completion = await client.chat.completions.create(
            model="any", messages=[{"role": "system", "content": fits},
                                   {"role": "user", "content": fits}])
    assert completion.choices[0].message.content == "Hello there."
    assert len(llm.requests) == 1


async def test_the_setting_bounds_the_prompt_below_the_window(
    redis_url: str, key_prefix: str
) -> None:
    llm = WindowedLLM(["Hi."])
    async with (
        serve_api(redis_url, EventLogSettings(key_prefix=key_prefix), llm=llm, tts=None,
                  api=ApiSettings(max_prompt_tokens=20)) as harness,
        sdk(harness) as client,
    ):
        await client.chat.completions.create(
            model="any", messages=[{"role": "user", "content": "x" * 30}])  # 14 tokens
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(
                model="any", messages=[{"role": "user", "content": "x" * 60}])  # 24
    assert caught.value.code == "context_length_exceeded"
    assert "maximum context length is 20 tokens" in caught.value.message
    assert len(llm.requests) == 1


class OverflowingLLM(ScriptedLLM):
    """An engine whose own tokenizer finds the prompt too long (the estimate did not)."""

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[str, None]:
        raise EngineError("the conversation is too long for the model",
                          code=ErrorCode.LLM_FAILED, stage="llm", reason="context_overflow",
                          prompt_tokens=2100, n_ctx=WINDOW)
        yield ""  # pragma: no cover - a generator


async def test_the_engines_own_overflow_is_context_length_exceeded(
    redis_url: str, key_prefix: str
) -> None:
    async with serve_api(redis_url, EventLogSettings(key_prefix=key_prefix),
                         llm=OverflowingLLM(["x"]), tts=None) as harness, sdk(harness) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(
                model="any", messages=[{"role": "user", "content": "Hi"}])
        stream = await client.chat.completions.create(
            model="any", messages=[{"role": "user", "content": "Hi"}], stream=True)
        with pytest.raises(openai.APIError) as in_stream:
            _ = [chunk async for chunk in stream]
    assert caught.value.code == "context_length_exceeded"
    assert "2100 tokens" in caught.value.message
    assert "maximum context length is 2048" in in_stream.value.message


# ---- content parts ----------------------------------------------------------------------


async def test_text_content_parts_are_joined(harness: Harness, llm: WindowedLLM) -> None:
    async with sdk(harness) as client:
        completion = await client.chat.completions.create(model="any", messages=[
            {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": [{"type": "text", "text": "Say"},
                                         {"type": "text", "text": "hello."}]}])
    assert completion.choices[0].message.content == "Hello there."
    [request] = llm.requests
    assert [m.content for m in request.messages] == ["Be brief.", "Say\nhello."]


@pytest.mark.parametrize("part", [
    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
    {"type": "file", "file": {"file_id": "file-1"}},
])
async def test_other_content_parts_are_400_unsupported_content(
    harness: Harness, llm: WindowedLLM, part: dict[str, Any]
) -> None:
    body = {"model": "any", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "What is this?"}, part]}]}
    async with httpx.AsyncClient(base_url=harness.url) as client:
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "unsupported_content"
    assert part["type"] in error["message"]
    assert error["details"]["param"] == "messages.0.content.1"
    assert llm.requests == []


async def test_joined_parts_keep_the_text_limit(harness: Harness) -> None:
    limit = harness.services.settings.api.max_text_chars
    parts = [{"type": "text", "text": "x" * 1000}] * (limit // 1000 + 1)
    async with sdk(harness) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(
                model="any", messages=[{"role": "user", "content": parts}])  # type: ignore[misc]
    assert caught.value.status_code == 413
    assert caught.value.body["code"] == "text_too_long"  # type: ignore[index]


# ---- usage counts tokens ----------------------------------------------------------------


class BatchingLLM(ScriptedLLM):
    """Deltas of several tokens each, as the LLM replica streams them, and the engine's
    own count after them (llama.cpp's: "The capital of France is Paris." is 7 tokens)."""

    async def generate_with_usage(
        self, request: GenerationRequest
    ) -> AsyncGenerator[str | GenerationUsage, None]:
        async for delta in self.generate(request):
            yield delta
        yield GenerationUsage(completion_tokens=7, prompt_tokens=31, finish_reason="stop")


BATCHES = ["The capital", " of France is", " Paris."]


@pytest.mark.parametrize("stream", [False, True])
async def test_usage_is_the_engines_token_count_not_the_batches(
    redis_url: str, key_prefix: str, stream: bool
) -> None:
    async with serve_api(redis_url, EventLogSettings(key_prefix=key_prefix),
                         llm=BatchingLLM(BATCHES), tts=None) as harness, sdk(harness) as client:
        messages = [{"role": "user", "content": "What is the capital of France?"}]
        if stream:
            chunks = [c async for c in await client.chat.completions.create(
                model="any", messages=messages, stream=True,  # type: ignore[arg-type]
                stream_options={"include_usage": True})]
            usage = chunks[-1].usage
        else:
            completion = await client.chat.completions.create(
                model="any", messages=messages)  # type: ignore[arg-type]
            usage = completion.usage
    assert usage is not None
    assert (usage.completion_tokens, usage.prompt_tokens, usage.total_tokens) == (7, 31, 38)


async def test_an_engine_that_counts_nothing_gets_the_estimate_not_the_deltas(
    redis_url: str, key_prefix: str
) -> None:
    async with (
        serve_api(redis_url, EventLogSettings(key_prefix=key_prefix),
                  llm=ScriptedLLM(BATCHES, counts=False), tts=None) as harness,
        sdk(harness) as client,
    ):
        completion = await client.chat.completions.create(
            model="any", messages=[{"role": "user", "content": "Capital of France?"}])
    assert completion.usage is not None
    reply = "".join(BATCHES)
    assert completion.usage.completion_tokens == math.ceil(
        len(reply) / HistorySettings().chars_per_token) != len(BATCHES)


# ---- /v1/realtime: strict settings and frames ------------------------------------------


def _ws_url(harness: Harness, query: str = "") -> str:
    return "ws" + harness.url.removeprefix("http") + "/v1/realtime?model=voxline" + query


async def _recv(ws: ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await ws.recv())
    return frame


async def _send(ws: ClientConnection, **event: Any) -> None:
    await ws.send(json.dumps(event))


async def _until(ws: ClientConnection, kind: str) -> list[dict[str, Any]]:
    frames = []
    while True:
        frames.append(await _recv(ws))
        if frames[-1]["type"] == kind:
            return frames


async def _answers_a_text_turn(ws: ClientConnection) -> None:
    """The session goes on: a typed turn is answered."""
    await _send(ws, type="conversation.item.create", item={
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]})
    await _send(ws, type="response.create")
    frames = await _until(ws, "response.done")
    assert frames[-1]["response"]["status"] == "completed"


@pytest.mark.parametrize(("event", "param"), [
    ({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["video"]}},
     "session.output_modalities"),
    ({"type": "session.update", "session": {"modalities": ["text", "video"]}},
     "session.modalities"),
    ({"type": "session.update", "session": {"output_modalities": []}},
     "session.output_modalities"),
    ({"type": "response.create", "response": {"output_modalities": ["video"]}},
     "response.output_modalities"),
    ({"type": "response.create", "response": {"modalities": ["smell"]}}, "response.modalities"),
])
async def test_unknown_modalities_are_invalid_settings(
    harness: Harness, event: dict[str, Any], param: str
) -> None:
    async with connect(_ws_url(harness)) as ws:
        await _recv(ws)
        await _send(ws, event_id="e1", **event)
        error = await _recv(ws)
        assert error["type"] == "error", error
        assert error["error"]["code"] == "invalid_settings"
        assert (error["error"]["param"], error["error"]["event_id"]) == (param, "e1")
        # the session kept its settings and goes on
        await _send(ws, type="session.update", session={"output_modalities": ["text"]})
        updated = await _recv(ws)
        assert updated["session"]["output_modalities"] == ["text"]
        await _answers_a_text_turn(ws)


async def test_a_binary_frame_on_the_realtime_socket_is_answered_with_an_error(
    harness: Harness
) -> None:
    async with connect(_ws_url(harness)) as ws:
        await _recv(ws)
        await ws.send(bytes(4800))
        error = await _recv(ws)
        assert error["type"] == "error", error
        assert error["error"]["code"] == "invalid_message"
        assert "input_audio_buffer.append" in error["error"]["message"]
        await _answers_a_text_turn(ws)


# ---- the audio buffer of manual turns is bounded (audio_too_long) -----------------------


def _silence_b64(seconds: float, rate: int = 24000) -> str:
    return base64.b64encode(bytes(int(seconds * rate) * 2)).decode()


async def test_the_manual_audio_buffer_is_bounded_and_the_session_goes_on(
    harness: Harness
) -> None:
    async with connect(_ws_url(harness)) as ws:
        await _recv(ws)
        await _send(ws, type="session.update", session={
            "type": "realtime", "audio": {"input": {"turn_detection": None}}})
        assert (await _recv(ws))["type"] == "session.updated"
        await _send(ws, type="input_audio_buffer.append", audio=_silence_b64(0.75))
        await _send(ws, type="input_audio_buffer.append", audio=_silence_b64(0.75),
                    event_id="over")
        error = await _recv(ws)
        assert error["type"] == "error", error
        assert (error["error"]["code"], error["error"]["event_id"]) == ("audio_too_long", "over")
        # the buffer did not grow: what was taken is committed as one turn
        await _send(ws, type="input_audio_buffer.commit")
        frames = await _until(ws, "conversation.item.done")  # whole: transcribed
        assert "input_audio_buffer.committed" in [f["type"] for f in frames]
        stt = harness.services.engines.stt
        assert isinstance(stt, ScriptedSTT)
        assert stt.heard[-1] <= 16000 * 2  # 0.75 s at the detector's 16 kHz, not 1.5 s
        # a commit empties the buffer: as much again is taken
        await _send(ws, type="input_audio_buffer.append", audio=_silence_b64(0.75))
        await ws.send("{}")  # answered with an error: nothing came in between
        assert (await _recv(ws))["error"]["code"] == "unknown_message_type"
        await _send(ws, type="input_audio_buffer.clear")
        assert (await _recv(ws))["type"] == "input_audio_buffer.cleared"
        await _send(ws, type="input_audio_buffer.append", audio=_silence_b64(0.75))
        await _send(ws, type="response.create")  # the committed turn is still answered
        frames = await _until(ws, "response.done")
        assert frames[-1]["response"]["status"] == "completed"


async def test_server_vad_audio_is_not_bounded_by_the_buffer(harness: Harness) -> None:
    """With turn detection the detector cuts utterances (max_utterance_s): an open
    microphone streams on without a commit."""
    async with connect(_ws_url(harness)) as ws:
        await _recv(ws)
        for _ in range(4):  # 3 s of silence, past the 1 s buffer
            await _send(ws, type="input_audio_buffer.append", audio=_silence_b64(0.75))
        await ws.send("{}")  # answered with an error: nothing came in between
        assert (await _recv(ws))["error"]["code"] == "unknown_message_type"


async def test_the_native_socket_bounds_its_binary_audio_the_same_way(
    harness: Harness
) -> None:
    session = await harness.client.create_session(auto_response=False,
                                                  input_sample_rate=16000)
    async with connect(f"{session.ws_url}?token={session.token}") as ws:
        assert (await _recv(ws))["type"] == "session.created"
        await ws.send(bytes(16000 * 2 * 3 // 4))  # 0.75 s
        await ws.send(bytes(16000 * 2 * 3 // 4))
        error = await _recv(ws)
        assert error["type"] == "error", error
        assert error["data"]["code"] == "audio_too_long"
        assert error["data"]["details"]["limit_s"] == 1.0


# ---- every overloaded says when to retry ------------------------------------------------


async def test_every_overloaded_carries_retry_after_ms(redis_url: str, key_prefix: str) -> None:
    async with (
        serve_api(redis_url, EventLogSettings(key_prefix=key_prefix), llm=ScriptedLLM(["Hi."]),
                  tts=None, admission=AdmissionSettings(max_sessions=1, max_turns=1,
                                                        retry_after_ms=RETRY_MS)) as harness,
        connect(_ws_url(harness)) as first,
    ):
        created = await _recv(first)
        # a voice session past capacity, on both sockets and over HTTP
        async with connect(_ws_url(harness)) as second:
            refusal = await _recv(second)
            with pytest.raises(ConnectionClosed):
                await second.recv()
        assert refusal["error"]["code"] == "overloaded"
        assert refusal["error"]["retry_after_ms"] == RETRY_MS
        native = await harness.client.create_session()
        async with connect(f"{native.ws_url}?token={native.token}") as third:
            refusal = await _recv(third)
        assert refusal["type"] == "error" and refusal["data"]["code"] == "overloaded"
        assert refusal["data"]["details"]["retry_after_ms"] == RETRY_MS
        async with httpx.AsyncClient(base_url=harness.url) as http:
            chat = await http.post("/v1/chat/stream", json={"message": "Hi"})
            assert chat.status_code == 503 and chat.headers["retry-after"] == "3"
            assert chat.json()["error"]["details"]["retry_after_ms"] == RETRY_MS
            with harness.services.admission.admit("turns"):  # the one turn is taken
                done = await http.post("/v1/chat/completions", json={
                    "model": "any", "messages": [{"role": "user", "content": "Hi"}]})
                assert done.json()["error"]["details"]["retry_after_ms"] == RETRY_MS
                # a turn refused on a live realtime session
                await _send(first, type="conversation.item.create", item={
                    "type": "message", "role": "user",
                    "content": [{"type": "input_text", "text": "Hi"}]})
                await _send(first, type="response.create")
                frames = await _until(first, "error")
        assert frames[-1]["error"]["code"] == "overloaded"
        assert frames[-1]["error"]["retry_after_ms"] == RETRY_MS
        assert created["type"] == "session.created"
