"""Tools on chat completions, driven by the official ``openai`` SDK through the API harness:
the request's tools and choice reach the model as its own, a call comes back as
``message.tool_calls`` (whole) or ``delta.tool_calls`` pieces (streamed) with
``finish_reason: "tool_calls"``, the client's ``role: "tool"`` output goes back into the
dialogue, and bad tools are refused in plain words. The model is a double that calls when
offered tools and otherwise answers from the last tool output (the translation is under
test here; the real model's calls: tests/pipeline/engines/llm/test_llm_llama_tools.py and
tests/serve/test_chat_completions.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator

import openai
import pytest

from pipeline.engines import LanguageModel
from schemas import EventLogSettings, GenerationRequest, GenerationUsage, ToolCallDelta
from tests.support.api_harness import Harness, serve_api
from tests.support.engines import ScriptedTTS
from tests.support.openai_sdk import sdk

pytestmark = pytest.mark.redis

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather now in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}


class CallingLLM(LanguageModel):
    """Calls ``get_weather`` in three pieces when the request may call it; else says
    what the last tool message said. Keeps every request it was given."""

    name = "calling-llm"

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[GenerationRequest] = []

    async def generate(
        self, request: GenerationRequest
    ) -> AsyncGenerator[str | ToolCallDelta, None]:
        self.requests.append(request)
        if request.calls_tools:
            yield ToolCallDelta(index=0, id="call_abc", name="get_weather")
            yield ToolCallDelta(index=0, arguments='{"city": ')
            yield ToolCallDelta(index=0, arguments='"Paris"}')
            return
        said = [m.content for m in request.messages if m.role == "tool"]
        yield f"It is {json.loads(said[-1])['sky']}." if said else "Hello."

    async def generate_with_usage(
        self, request: GenerationRequest
    ) -> AsyncGenerator[str | ToolCallDelta | GenerationUsage, None]:
        async for item in self.generate(request):
            yield item
        yield GenerationUsage(completion_tokens=3, prompt_tokens=10,
                              finish_reason="tool_calls" if request.calls_tools else "stop")


@pytest.fixture
async def llm() -> CallingLLM:
    return CallingLLM()


@pytest.fixture
async def harness(redis_url: str, key_prefix: str, llm: CallingLLM) -> AsyncIterator[Harness]:
    async with serve_api(redis_url, EventLogSettings(key_prefix=key_prefix), llm=llm,
                         tts=ScriptedTTS(chunks_per_piece=1)) as harness:
        yield harness


QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]


async def test_a_call_comes_back_whole_and_its_output_is_answered(
    harness: Harness, llm: CallingLLM
) -> None:
    async with sdk(harness) as client:
        first = await client.chat.completions.create(
            model="voxline", messages=QUESTION, tools=[WEATHER], tool_choice="required")
        choice = first.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content is None
        (call,) = choice.message.tool_calls or []
        assert (call.id, call.type, call.function.name) == ("call_abc", "function",
                                                           "get_weather")
        assert json.loads(call.function.arguments) == {"city": "Paris"}
        request = llm.requests[-1]
        assert [t.name for t in request.tools] == ["get_weather"]
        assert request.tools[0].parameters == WEATHER["function"]["parameters"]
        assert request.tool_choice.mode == "required"
        # the client runs it and sends the output back
        second = await client.chat.completions.create(
            model="voxline", tools=[WEATHER], tool_choice="none", messages=[
                *QUESTION, choice.message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id,
                 "content": json.dumps({"sky": "sunny"})}])
    assert second.choices[0].message.content == "It is sunny."
    assert second.choices[0].finish_reason == "stop"
    history = llm.requests[-1].messages
    assert [m.role for m in history] == ["user", "assistant", "tool"]
    assert history[1].tool_calls[0].id == "call_abc"
    assert history[2].tool_call_id == "call_abc"


async def test_a_streamed_call_comes_in_pieces_openais_sdk_puts_together(
    harness: Harness, llm: CallingLLM
) -> None:
    async with sdk(harness) as client:
        stream = await client.chat.completions.create(
            model="voxline", messages=QUESTION, stream=True, tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "get_weather"}})
        pieces, finish = [], None
        async for chunk in stream:
            delta = chunk.choices[0].delta
            pieces.extend(delta.tool_calls or [])
            finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert pieces[0].id == "call_abc" and pieces[0].function.name == "get_weather"
    assert all(p.index == 0 for p in pieces)
    assert json.loads("".join(p.function.arguments or "" for p in pieces)) == {"city": "Paris"}
    assert llm.requests[-1].tool_choice.name == "get_weather"


@pytest.mark.parametrize(("change", "says"), [
    ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "not a tool name"),
    ({"tools": [WEATHER, WEATHER]}, "same name"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function",
                                          "function": {"name": "other"}}}, "not one of"),
    ({"tool_choice": "required"}, "needs tools"),
    ({"tools": [{"type": "function", "function": {
        "name": "f", "parameters": {"type": "array"}}}]}, "JSON Schema object"),
    ({"messages": [{"role": "tool", "content": "{}"}]}, "tool_call_id"),
])
async def test_bad_tools_are_refused_in_plain_words(
    harness: Harness, change: dict[str, object], says: str
) -> None:
    body = {"model": "voxline", "messages": QUESTION, **change}
    async with sdk(harness) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(**body)  # type: ignore[call-overload]
    assert refused.value.status_code == 400
    error = refused.value.body  # the SDK unwraps {"error": ...}
    assert isinstance(error, dict)
    assert error["code"] == "invalid_message" and says in error["message"]


async def test_too_many_tools_are_refused(harness: Harness) -> None:
    tools = [{"type": "function", "function": {"name": f"t{i}"}} for i in range(65)]
    async with sdk(harness) as client:
        with pytest.raises(openai.APIStatusError) as refused:
            await client.chat.completions.create(model="voxline", messages=QUESTION,
                                                 tools=tools)  # type: ignore[arg-type]
    assert refused.value.status_code == 413
