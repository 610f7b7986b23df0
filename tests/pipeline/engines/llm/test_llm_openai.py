"""The OpenAI-compatible engine against a real HTTP server on loopback.

The server is a small Starlette app under uvicorn in a thread, bound to 127.0.0.1 on a
random port. The request's ``model`` picks what it does: stream a canned reply, answer
with an error status, stall, break the stream, or stream until the client goes away.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from pipeline.engines import create_engine
from pipeline.engines.llm.openai_remote import (
    OpenAICompatibleLanguageModel,
    _sse_data,
)
from schemas import (
    ChatMessage,
    ConfigurationError,
    EngineError,
    ErrorCode,
    GenerationRequest,
    SamplingSettings,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolFunction,
)


def _chunk(content: str | None = None, finish: str | None = None) -> str:
    delta = {} if content is None else {"content": content}
    payload = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(payload)}\n\n"


@dataclass
class FakeServer:
    base_url: str
    requests: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    disconnected: threading.Event = field(default_factory=threading.Event)
    chunks_sent: int = 0


def _app(state: FakeServer) -> Starlette:
    async def chat(request: Request) -> Response:
        body = await request.json()
        state.requests.append((dict(request.headers), body))
        mode = body["model"]

        if mode.startswith("status-"):
            status = int(mode.removeprefix("status-"))
            headers = {"Retry-After": "7"} if status == 429 else None
            body = {"error": {"message": f"canned {status}"}}
            return JSONResponse(body, status_code=status, headers=headers)

        async def events() -> AsyncIterator[str]:
            if mode == "ok":
                yield 'data: {"choices":[{"index":0,"delta":{"role":"assistant"}}]}\n\n'
                yield ": keep-alive\n\n"
                for piece in ("Hel", "lo", "", " wörld", "!"):
                    yield _chunk(piece)
                yield _chunk(finish="stop")
                yield 'data: {"choices":[],"usage":{"completion_tokens":4}}\n\n'
                yield "data: [DONE]\n\n"
            elif mode == "tools":
                first = {"index": 0, "id": "call_9", "type": "function",
                         "function": {"name": "get_weather", "arguments": ""}}
                for delta in ({"tool_calls": [first]},
                              {"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]},
                              {"tool_calls": [{"index": 0, "function": {"arguments": 'ty": 1}'}}]},
                              {"tool_calls": ["not a piece"]}):
                    yield "data: " + json.dumps({"choices": [{"index": 0, "delta": delta}]})
                    yield "\n\n"
                yield _chunk(finish="tool_calls")
                yield "data: [DONE]\n\n"
            elif mode == "length":
                yield _chunk("cut")
                yield _chunk(finish="length")
                yield "data: [DONE]\n\n"
            elif mode == "truncated":
                yield _chunk("half a rep")
            elif mode == "stream-error":
                yield _chunk("Hi")
                yield 'data: {"error":{"message":"out of memory"}}\n\n'
            elif mode == "garbage":
                yield "data: {not json\n\n"
            elif mode == "stall":
                yield _chunk("first")
                await asyncio.sleep(30)
            elif mode == "endless":
                try:
                    while True:
                        yield _chunk("tick ")
                        state.chunks_sent += 1
                        await asyncio.sleep(0.02)
                finally:
                    state.disconnected.set()

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    state = FakeServer(base_url=f"http://127.0.0.1:{port}/v1")
    config = uvicorn.Config(_app(state), log_level="warning", lifespan="off", ws="none")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if uv.started:
                break
            threading.Event().wait(0.01)
        assert uv.started, "the test server did not start"
        yield state
    finally:
        uv.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def fresh(server: FakeServer) -> FakeServer:
    server.requests.clear()
    server.disconnected.clear()
    server.chunks_sent = 0
    return server


def _request(**sampling: Any) -> GenerationRequest:
    return GenerationRequest(
        request_id="r1",
        messages=(
            ChatMessage(role="system", content="Be brief."),
            ChatMessage(role="user", content="Hi"),
        ),
        sampling=SamplingSettings(**sampling),
    )


async def _collect(engine: OpenAICompatibleLanguageModel, request: GenerationRequest) -> list[str]:
    return [delta async for delta in engine.generate(request)]


async def _engine(server: FakeServer, model: str, **options: Any) -> OpenAICompatibleLanguageModel:
    engine = OpenAICompatibleLanguageModel(base_url=server.base_url, model=model, **options)
    await engine.load()
    return engine


async def test_streams_content_deltas_and_sends_the_request(fresh: FakeServer) -> None:
    engine = await _engine(fresh, "ok", api_key="sk-test", extra_body={"top_k": 20})
    try:
        request = _request(temperature=0.2, max_tokens=7, seed=3, stop=("X",))
        deltas = await _collect(engine, request)
    finally:
        await engine.close()
    assert deltas == ["Hel", "lo", " wörld", "!"]  # the empty delta is dropped
    assert engine.last_finish_reason == "stop"
    headers, body = fresh.requests[-1]
    assert headers["authorization"] == "Bearer sk-test"
    assert body == {
        "top_k": 20,
        "model": "ok",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
        ],
        "stream": True,
        "temperature": 0.2,
        "top_p": 0.95,
        "max_tokens": 7,
        "seed": 3,
        "stop": ["X"],
    }


async def test_unset_fields_are_left_out_and_no_key_sends_no_auth(fresh: FakeServer) -> None:
    engine = await _engine(fresh, "length")
    try:
        assert await _collect(engine, _request()) == ["cut"]
    finally:
        await engine.close()
    assert engine.last_finish_reason == "length"
    headers, body = fresh.requests[-1]
    assert "authorization" not in headers
    assert "seed" not in body and "stop" not in body


@pytest.mark.parametrize(("status", "transient"), [(429, True), (503, True), (401, False)])
async def test_http_error_status_is_an_engine_error(
    fresh: FakeServer, status: int, transient: bool
) -> None:
    engine = await _engine(fresh, f"status-{status}")
    try:
        with pytest.raises(EngineError) as info:
            await _collect(engine, _request())
    finally:
        await engine.close()
    err = info.value
    assert err.code is ErrorCode.LLM_FAILED
    assert err.transient is transient
    assert err.details["status"] == status
    assert f"canned {status}" in err.message
    assert err.details.get("retry_after_s") == (7 if status == 429 else None)


async def test_connection_refused_is_a_clear_transient_error() -> None:
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine = OpenAICompatibleLanguageModel(base_url=f"http://127.0.0.1:{port}/v1", model="m")
    try:
        with pytest.raises(EngineError) as info:
            await _collect(engine, _request())
    finally:
        await engine.close()
    assert info.value.transient is True
    assert info.value.code is ErrorCode.LLM_FAILED
    assert "cannot connect" in info.value.message


@pytest.mark.parametrize(
    ("model", "transient", "text"),
    [
        ("truncated", True, "before the reply was finished"),
        ("stream-error", False, "out of memory"),
        ("garbage", False, "not JSON"),
    ],
)
async def test_broken_streams_raise(
    fresh: FakeServer, model: str, transient: bool, text: str
) -> None:
    engine = await _engine(fresh, model)
    try:
        with pytest.raises(EngineError) as info:
            await _collect(engine, _request())
    finally:
        await engine.close()
    assert info.value.transient is transient
    assert text in info.value.message


async def test_a_stalled_stream_times_out(fresh: FakeServer) -> None:
    engine = await _engine(fresh, "stall", timeout_s=0.3)
    received: list[str] = []
    try:
        with pytest.raises(EngineError) as info:
            async for delta in engine.generate(_request()):
                received.append(delta)
    finally:
        await engine.close()
    assert received == ["first"]
    assert info.value.transient is True
    assert "timed out" in info.value.message


async def test_cancel_mid_stream_closes_the_connection(fresh: FakeServer) -> None:
    engine = await _engine(fresh, "endless")
    try:
        stream = engine.generate(_request())
        assert await anext(stream) == "tick "
        assert await anext(stream) == "tick "
        await stream.aclose()
        assert engine.last_finish_reason == "cancelled"
        # The server's generator is cancelled when it sees the client go away.
        assert await asyncio.to_thread(fresh.disconnected.wait, 5.0)
    finally:
        await engine.close()


async def test_task_cancellation_propagates_and_closes_the_connection(fresh: FakeServer) -> None:
    engine = await _engine(fresh, "endless")
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in engine.generate(_request()):
            first.set()

    task = asyncio.create_task(consume())
    try:
        await asyncio.wait_for(first.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await asyncio.to_thread(fresh.disconnected.wait, 5.0)
    finally:
        await engine.close()


async def test_sse_decoder_joins_multiline_data_and_skips_comments() -> None:
    async def lines() -> AsyncIterator[str]:
        for line in [": ping", "event: message", "data: a", "data:b", "", "", "id: 7", "data: c"]:
            yield line

    assert [d async for d in _sse_data(lines())] == ["a\nb", "c"]


def test_options_are_validated_and_the_registry_builds_it() -> None:
    with pytest.raises(ConfigurationError) as info:
        OpenAICompatibleLanguageModel(model="m", base_ulr="http://x")
    assert "base_ulr" in info.value.message
    engine = create_engine("llm", "openai", {"model": "m", "api_key": "secret"})
    assert isinstance(engine, OpenAICompatibleLanguageModel)
    assert "secret" not in repr(engine.options)


async def test_tools_go_through_and_calls_come_back_as_pieces(server: FakeServer) -> None:
    llm = OpenAICompatibleLanguageModel(base_url=server.base_url, model="tools")
    request = GenerationRequest(
        request_id="t", tool_choice=ToolChoice(mode="function", name="get_weather"),
        tools=(ToolFunction(name="get_weather", parameters={"type": "object"}),),
        messages=(ChatMessage(role="user", content="Weather?"),
                  ChatMessage(role="assistant", tool_calls=(
                      ToolCall(id="call_1", name="get_weather", arguments="{}"),)),
                  ChatMessage(role="tool", tool_call_id="call_1", content="sunny"),
                  ChatMessage(role="user", content="And now?")))
    try:
        items = [item async for item in llm.generate(request)]
    finally:
        await llm.close()
    body = server.requests[-1][1]
    assert body["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "", "parameters": {"type": "object"}}}]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["messages"][1] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": "{}"}}]}
    assert body["messages"][2] == {"role": "tool", "content": "sunny", "tool_call_id": "call_1"}
    assert items == [ToolCallDelta(index=0, id="call_9", name="get_weather"),
                     ToolCallDelta(index=0, arguments='{"ci'),
                     ToolCallDelta(index=0, arguments='ty": 1}')]
    assert llm.last_finish_reason == "tool_calls"
