"""The OpenAI Agents SDK for Python (``openai-agents``) with a ``function_tool``, over
Voxline's chat completions, on the real CPU default model (llama.cpp, the packaged Gemma
3 270M) behind the API harness: the agent's model calls the tool with arguments its
schema takes, the SDK runs it once, sends its output back as a ``tool`` message, and the
model answers from it in words (the SDK resets ``tool_choice`` to ``auto`` after a call;
the dialogue writes the call with its output on a ``Tool:`` line, and the model answers
instead of calling again). Tracing stays off: nothing leaves loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest
from agents import (
    Agent,
    ModelSettings,
    OpenAIChatCompletionsModel,
    Runner,
    set_tracing_disabled,
)

from tests.support.api_harness import Harness
from tests.support.tool_agents import model_api, weather_tool

pytestmark = [pytest.mark.redis, pytest.mark.models]


@pytest.fixture
async def harness(redis_url: str, key_prefix: str) -> AsyncIterator[Harness]:
    async with model_api(redis_url, key_prefix) as harness:
        yield harness


async def test_an_agent_calls_its_function_tool_and_answers_after_it(harness: Harness) -> None:
    set_tracing_disabled(True)
    asked: list[str] = []
    get_weather = weather_tool(asked)

    async with openai.AsyncOpenAI(base_url=harness.url + "/v1", api_key="unused",
                                  max_retries=0, timeout=180) as client:
        agent = Agent(
            name="weather", instructions="You are a helpful assistant.", tools=[get_weather],
            model=OpenAIChatCompletionsModel(model="voxline", openai_client=client),
            model_settings=ModelSettings(tool_choice="required", temperature=0.0,
                                         max_tokens=60))
        result = await Runner.run(agent, "What is the weather in Paris?", max_turns=3)
    assert len(asked) == 1 and asked[0].strip()  # the SDK ran the call once
    kinds = [item.type for item in result.new_items]
    assert kinds[:2] == ["tool_call_item", "tool_call_output_item"]
    assert kinds[-1] == "message_output_item"
    # answered from the tool's output (greedy: the same words every run)
    assert isinstance(result.final_output, str) and "sunny" in result.final_output.lower()
