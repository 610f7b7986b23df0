"""MCP servers as server tools, each a real server process started by the test: the
example weather server over stdio and over streamable HTTP, and a misbehaving one whose
every fault is a coded outcome in bounded time (and the server usable again after)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from pipeline.log import EventLog
from pipeline.session import LiveSession
from pipeline.tools import CallContext, Toolbox
from schemas import (
    ErrorCode,
    InputTextMessage,
    McpServerSettings,
    SessionSettings,
    ToolCall,
    ToolCallDelta,
    ToolSettings,
)
from tests.support.engines import RoundsLLM
from tests.support.sessions import collect_until, engines
from voxline.mcp_weather import forecast
from voxline.redis_server import free_port

WEATHER = McpServerSettings(command=(sys.executable, "-m", "voxline.mcp_weather"))
FAULTS = McpServerSettings(command=(sys.executable, "-m", "tests.support.mcp_faults"))


@pytest.fixture
async def toolbox() -> AsyncIterator[Toolbox]:
    box = Toolbox(ToolSettings(mcp_servers={"weather": WEATHER, "faults": FAULTS},
                               timeout_s=3.0))
    await box.start()
    yield box
    await box.aclose()


async def run(box: Toolbox, name: str, arguments: dict[str, Any]) -> Any:
    tool = box.tools[name]
    return await box.runner.run(tool, ToolCall(id="call_m", name=name,
                                               arguments=json.dumps(arguments)),
                                CallContext("sess_m", "turn", "call_m", SessionSettings()))


async def test_the_weather_servers_tools_are_offered_and_answer_over_stdio(
    toolbox: Toolbox,
) -> None:
    tool = toolbox.tools["weather__get_forecast"]
    assert tool.idempotent  # read-only, as the server annotates it
    assert tool.function.parameters["required"] == ["city"]
    outcome = await run(toolbox, "weather__get_forecast", {"city": "Oslo", "day": "tomorrow"})
    assert outcome.code is None and json.loads(outcome.output) == forecast("Oslo", "tomorrow")


async def test_each_fault_is_a_coded_outcome_in_bounded_time_and_the_server_comes_back(
    toolbox: Toolbox,
) -> None:
    failed = await run(toolbox, "faults__fail", {"reason": "no such booking"})
    assert failed.code is ErrorCode.TOOL_FAILED and "no such booking" in failed.output
    started = asyncio.get_running_loop().time()
    slow = await run(toolbox, "faults__slow", {"seconds": 30})
    assert slow.code is ErrorCode.TOOL_TIMEOUT
    assert asyncio.get_running_loop().time() - started < 10
    big = await run(toolbox, "faults__big", {"chars": 50_000})
    assert big.truncated and len(big.output) == toolbox.settings.max_output_chars
    crashed = await run(toolbox, "faults__crash", {})
    assert crashed.code in (ErrorCode.TOOL_FAILED, ErrorCode.TOOL_TIMEOUT)
    again = await run(toolbox, "faults__big", {"chars": 3})  # a new process, connected
    assert again.code is None and again.output == "xxx"
    bad = await run(toolbox, "faults__slow", {"seconds": "soon"})
    assert bad.code is ErrorCode.TOOL_ARGUMENTS_INVALID  # never sent to the server


async def test_the_weather_server_over_streamable_http() -> None:
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voxline.mcp_weather", "--http", str(port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(200):
                try:
                    await http.get(url, timeout=1)
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        box = Toolbox(ToolSettings(mcp_servers={"weather": McpServerSettings(url=url)}))
        await box.start()
        try:
            outcome = await run(box, "weather__get_forecast", {"city": "Lima"})
            assert json.loads(outcome.output) == forecast("Lima", "today")
        finally:
            await box.aclose()
    finally:
        server.kill()
        await server.wait()


@pytest.mark.redis
async def test_a_session_attaches_the_server_and_the_model_reads_its_answer(
    toolbox: Toolbox, event_log: EventLog, key_prefix: str,
) -> None:
    llm = RoundsLLM([[ToolCallDelta(index=0, id="call_w", name="weather__get_forecast",
                                    arguments='{"city": "Paris"}')], ["Cloudy."]])
    settings = SessionSettings(tools=[{"type": "mcp", "server_label": "weather",  # type: ignore[list-item]
                                       "allowed_tools": ["get_forecast"]}])
    session = await LiveSession.open(f"{key_prefix}mcp", event_log, engines(llm),
                                     create=settings, toolbox=toolbox)
    await session.handle(InputTextMessage(text="Weather in Paris?"))
    seen = await collect_until(session, "response.done")
    [output] = [e for e in seen if e.type == "tool.call.output"]
    assert json.loads(output.data.output) == forecast("Paris", "today")  # type: ignore[union-attr]
    offered = [f.name for f in llm.requests[0].tools]
    assert offered == ["weather__get_forecast"]  # only the tools it allowed
    await session.close()
