"""``/v1/chat/completions`` on the real Serve app (llama.cpp behind its replica, which
batches the streamed deltas), driven by the official SDK: usage counts the model's
tokens, a prompt past the context window never reaches the replica, text parts work."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest

from tests.serve.conftest import App

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
