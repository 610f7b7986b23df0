"""Tools on ``POST /v1/chat/stream`` and the native socket: a function call ends the
stream with a ``tool_call`` event; the app posts its output (``tool_outputs``) and a
second stream carries the ``tool_result`` and the reply that goes on; a socket dropped
after the call and resumed sends the output and sees the turn go on. The model is
scripted (which round it is in is pure logic); the API is real."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import connect

from loadtests._scripted import RoundsLLM
from schemas import EventLogSettings, ToolCallDelta, ToolSettings
from tests.support.api_harness import Harness, serve_api
from voxline.client import SessionInfo, VoxlineAPIError

pytestmark = pytest.mark.redis

WEATHER = {"type": "function", "name": "get_weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


@pytest.fixture
async def harness(redis_url: str, key_prefix: str) -> AsyncIterator[Harness]:
    llm = RoundsLLM([
        ["Checking. ", ToolCallDelta(id="call_w", name="get_weather",
                                     arguments='{"city": "Rome"}')],
        ["It is hot in Rome."],
    ])
    async with serve_api(redis_url, EventLogSettings(key_prefix=key_prefix), llm=llm,
                         tts=None, tools=ToolSettings()) as harness:
        yield harness


async def messages(stream: AsyncIterator[tuple[str, dict[str, Any]]]) -> list[tuple[str, Any]]:
    return [message async for message in stream]


async def test_a_function_call_goes_to_the_app_and_its_output_lets_the_reply_go_on(
    harness: Harness,
) -> None:
    client = harness.client
    first = await messages(client.chat_stream("Weather in Rome?", tools=[WEATHER]))
    names = [name for name, _ in first]
    assert names[0] == "session" and names[-1] == "done"
    [call] = [data for name, data in first if name == "tool_call"]
    assert (call["call_id"], call["name"], call["runs_on"]) == ("call_w", "get_weather",
                                                               "client")
    thread = first[0][1]
    session = SessionInfo(thread["thread_id"], thread["token"], "", "", {})
    second = await messages(client.chat_stream(
        None, session=session, tool_outputs={"call_w": '{"temp": 35}'}))
    [result] = [data for name, data in second if name == "tool_result"]
    assert result["status"] == "output" and result["output"] == '{"temp": 35}'
    assert second[-1][0] == "done" and second[-1][1]["text"] == "It is hot in Rome."
    assert second[-1][1]["turn_id"] == call["turn_id"]  # the same turn, going on
    with pytest.raises(VoxlineAPIError) as told:  # answered already
        await messages(client.chat_stream(None, session=session,
                                          tool_outputs={"call_w": "again"}))
    assert told.value.code == "tool_call_not_found"


async def test_a_message_or_tool_outputs_one_of_them(harness: Harness) -> None:
    with pytest.raises(VoxlineAPIError) as told:
        await messages(harness.client.chat_stream(None, tool_outputs={"call_x": "1"}))
    assert told.value.code == "invalid_message"


async def test_a_socket_resumed_after_the_call_sends_its_output_and_the_turn_goes_on(
    harness: Harness,
) -> None:
    session = await harness.client.create_session(tools=[WEATHER])
    url = f"{session.ws_url}?token={session.token}"
    seen: list[dict[str, Any]] = []
    async with connect(url) as ws:  # the first socket: the call, then it is gone
        await ws.send(json.dumps({"type": "input.text", "text": "Weather in Rome?"}))
        async for frame in ws:
            seen.append(json.loads(frame))
            if seen[-1]["type"] == "response.done":
                break
        ws.transport.abort()
    [call] = [e for e in seen if e["type"] == "tool.call.started"]
    after = call["id"]  # resumed right after the call: its reply's end comes again
    async with connect(f"{url}&last_event_id={after}") as ws:
        await ws.send(json.dumps({"type": "tool.output", "call_id": call["data"]["call_id"],
                                  "output": '{"temp": 35}', "respond": True}))
        resumed: list[dict[str, Any]] = []
        async for frame in ws:
            resumed.append(json.loads(frame))
            if resumed[-1]["type"] == "response.done" and len(
                    [e for e in resumed if e["type"] == "response.done"]) == 2:
                break
    kinds = [e["type"] for e in resumed]
    assert kinds[0] == "response.done"  # the first reply's end, not seen before the drop
    assert kinds[1:3] == ["tool.call.output", "response.started"]
    assert resumed[-1]["data"]["text"] == "It is hot in Rome."
    assert {e["turn_id"] for e in resumed} == {call["turn_id"]}
