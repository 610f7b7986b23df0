"""Tools over ``WS /v1/realtime`` with the official clients, on the real CPU default model
(llama.cpp, the packaged Gemma 3 270M) behind the API harness: the OpenAI Agents SDK's
``RealtimeAgent`` with a ``function_tool`` (the SDK runs the call once, sends its output as
a ``function_call_output`` item and asks for the reply), and the ``openai`` SDK's own
Realtime client doing the same by hand. The session's ``tool_choice: required`` makes the
call; the turn's second response is asked for words (a forced call is made once a turn)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator

import openai
import pytest
from agents import set_tracing_disabled
from agents.realtime import RealtimeAgent, RealtimeRunner
from agents.realtime.model_inputs import RealtimeModelSendRawMessage

from schemas import McpServerSettings, ToolSettings
from tests.support.api_harness import Harness
from tests.support.tool_agents import WEATHER, model_api, weather_tool
from voxline.mcp_weather import forecast

pytestmark = [pytest.mark.redis, pytest.mark.models]



@pytest.fixture
async def harness(redis_url: str, key_prefix: str) -> AsyncIterator[Harness]:
    async with model_api(redis_url, key_prefix) as harness:
        yield harness


def ws_url(harness: Harness) -> str:
    return "ws" + harness.url.removeprefix("http") + "/v1/realtime?model=voxline"


async def test_a_realtime_agent_calls_its_tool_once_and_answers_after_it(
    harness: Harness,
) -> None:
    set_tracing_disabled(True)
    asked: list[str] = []
    get_weather = weather_tool(asked)

    agent = RealtimeAgent(name="weather", instructions="You are a helpful assistant.",
                          tools=[get_weather])
    runner = RealtimeRunner(agent, config={"model_settings": {
        "model_name": "voxline", "tool_choice": "required", "output_modalities": ["text"],
        "turn_detection": {"type": "server_vad"}}})  # the harness has no end-of-turn model
    session = await runner.run(model_config={"url": ws_url(harness), "api_key": "unused"})
    kinds: list[str] = []
    async with session:
        # greedy, so the same words every run (the SDK has no setting for it)
        await session.model.send_event(RealtimeModelSendRawMessage(message={
            "type": "session.update", "other_data": {"session": {"temperature": 0.0}}}))
        await session.send_message("What is the weather in Paris?")
        async with asyncio.timeout(180):
            async for event in session:
                kinds.append(event.type)
                assert event.type != "error", event
                # the end of the response that began after the tool's output went back
                # (the first one may end after the call ran: its filler, said while the
                # model was slow to call, is not the answer)
                if event.type == "agent_end" and "tool_end" in kinds and (
                        "agent_start" in kinds[kinds.index("tool_end"):]):
                    break
        history = list(session._history)
    assert len(asked) == 1 and asked[0].strip()  # the SDK ran the call once
    assert kinds.index("tool_start") < kinds.index("tool_end")
    calls = [item for item in history if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].output is not None
    answers = [item for item in history if item.type == "message" and item.role == "assistant"
               and any(getattr(part, "text", None) for part in item.content)]
    said = " ".join(part.text for item in answers for part in item.content if part.text)
    assert "sunny" in said.lower(), history  # words from the output (greedy: every run)


async def test_the_openai_realtime_client_sends_a_function_call_output_and_gets_words(
    harness: Harness,
) -> None:
    client = openai.AsyncOpenAI(base_url=harness.url + "/v1", api_key="unused", max_retries=0)
    async with client, client.realtime.connect(model="voxline") as conn:
        await conn.session.update(session={
            "type": "realtime", "output_modalities": ["text"], "tool_choice": "required",
            "instructions": "You are a helpful assistant.", "temperature": 0.0,
            "tools": [{"type": "function", "name": "get_weather",
                       "description": "The weather now in a city.",
                       "parameters": {"type": "object", "required": ["city"],
                                      "properties": {"city": {"type": "string"}}}}]})
        await conn.conversation.item.create(item={
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "What is the weather in Paris?"}]})
        await conn.response.create()
        call = None
        async with asyncio.timeout(180):
            async for event in conn:
                assert event.type != "error", event
                if event.type == "response.function_call_arguments.done":
                    call = event
                if event.type == "response.done":
                    break
        assert call is not None and call.name == "get_weather"
        assert json.loads(call.arguments)["city"].strip()
        await conn.conversation.item.create(item={
            "type": "function_call_output", "call_id": call.call_id,
            "output": json.dumps(WEATHER)})
        await conn.response.create()
        added = done = None
        async with asyncio.timeout(180):
            async for event in conn:
                assert event.type != "error", event
                if (event.type == "conversation.item.added"
                        and event.item.type == "function_call_output"):
                    added = event
                if event.type == "response.done":
                    done = event
                    break
    assert added is not None and added.item.call_id == call.call_id
    assert done is not None and done.response.status == "completed"
    [message] = [item for item in done.response.output if item.type == "message"]
    assert "sunny" in message.content[0].text.lower()  # words from the output


@pytest.fixture
async def weather_harness(redis_url: str, key_prefix: str) -> AsyncIterator[Harness]:
    """The harness with the example MCP server configured (a process per test)."""
    tools = ToolSettings(mcp_servers={"weather": McpServerSettings(
        command=(sys.executable, "-m", "voxline.mcp_weather"))})
    async with model_api(redis_url, key_prefix, tools=tools) as harness:
        yield harness


async def test_an_mcp_servers_tool_runs_on_the_server_and_the_reply_is_spoken(
    weather_harness: Harness,
) -> None:
    client = openai.AsyncOpenAI(base_url=weather_harness.url + "/v1", api_key="unused",
                                max_retries=0)
    async with client, client.realtime.connect(model="voxline") as conn:
        await conn.session.update(session={
            "type": "realtime", "tool_choice": "required", "temperature": 0.0,
            "instructions": "You are a helpful assistant.",
            "tools": [{"type": "mcp", "server_label": "weather", "require_approval": "never"}]})
        await conn.conversation.item.create(item={
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "What is the weather in Paris?"}]})
        await conn.response.create()
        kinds: list[str] = []
        async with asyncio.timeout(180):
            async for event in conn:
                assert event.type != "error", event
                kinds.append(event.type)
                if event.type == "response.done":
                    done = event
                    break
    assert "response.mcp_call.completed" in kinds and "response.function_call_arguments.done" \
        not in kinds  # the server ran it: nothing for the client to run
    assert "response.output_audio.delta" in kinds  # spoken
    [call] = [item for item in done.response.output if item.type == "mcp_call"]
    assert call.name == "weather__get_forecast" and call.error is None
    answer = json.loads(call.output)
    assert answer == forecast(answer["city"], answer["day"])  # the server's own answer
    [message] = [item for item in done.response.output if item.type == "message"]
    assert answer["sky"] in message.content[0].transcript.lower()  # told from the output
