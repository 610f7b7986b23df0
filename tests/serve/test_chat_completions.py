"""``/v1/chat/completions`` on the real Serve app (llama.cpp behind its replica, which
batches the streamed deltas), driven by the official SDK: usage counts the model's
tokens, a prompt past the context window never reaches the replica, text parts work."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import openai
import pytest

from tests.serve._app import App

pytestmark = [pytest.mark.serve, pytest.mark.models, pytest.mark.redis]

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
async def sdk(app: App) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=app.url + "/v1", api_key="unused",
                                  max_retries=0, timeout=180) as client:
        yield client


async def test_usage_counts_the_models_tokens_not_the_replicas_batches(
    sdk: openai.AsyncOpenAI
) -> None:
    whole = await sdk.chat.completions.create(model="any", messages=QUESTION)  # type: ignore[arg-type]
    reply = whole.choices[0].message.content or ""
    assert whole.usage is not None
    assert whole.usage.completion_tokens >= len(reply.split())  # a word is a token at least
    assert whole.usage.prompt_tokens > 0
    chunks = [c async for c in await sdk.chat.completions.create(
        model="any", messages=QUESTION, stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True})]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == reply
    assert chunks[-1].usage == whole.usage  # greedy: the same reply, the same count


async def test_a_prompt_past_the_window_is_refused_before_the_replica(
    sdk: openai.AsyncOpenAI
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.create(
            model="any", messages=[{"role": "user", "content": "x" * 4000}] * 256)
    assert caught.value.code == "context_length_exceeded"
    assert "maximum context length is 2048 tokens" in caught.value.message  # llama.cpp's


async def test_text_content_parts_are_answered(sdk: openai.AsyncOpenAI) -> None:
    completion = await sdk.chat.completions.create(model="any", messages=[
        {"role": "user", "content": [{"type": "text", "text": "What is the capital"},
                                     {"type": "text", "text": "of France?"}]}])
    assert completion.choices[0].message.content


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather now in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"], "additionalProperties": False}}}


async def test_a_tool_call_from_the_real_model_crosses_the_replica(
    sdk: openai.AsyncOpenAI
) -> None:
    """The CPU default calls the tool it must (a grammar keeps the arguments valid), and
    the call crosses the replica's batching whole, streamed or not."""
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    whole = await sdk.chat.completions.create(
        model="any", messages=ask, tools=[WEATHER], tool_choice="required")  # type: ignore[arg-type, list-item]
    choice = whole.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)
    pieces = [c async for c in await sdk.chat.completions.create(
        model="any", messages=ask, tools=[WEATHER], tool_choice="required",  # type: ignore[arg-type, list-item]
        stream=True)]
    streamed = [t for c in pieces if c.choices for t in c.choices[0].delta.tool_calls or []]
    assert streamed[0].function.name == "get_weather"
    assert json.loads("".join(t.function.arguments or "" for t in streamed)) == json.loads(
        call.function.arguments)  # greedy: the same call
    assert pieces[-1].choices[0].finish_reason == "tool_calls"
