"""The runner's bounds: every way a call can go wrong is an outcome the model reads, in
bounded time, and the tool never sees arguments that miss its schema."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from pipeline.reply import ToolOutcome
from pipeline.tools import CallContext, ServerTool, ToolRunner
from schemas import (
    ErrorCode,
    ProtocolError,
    SessionSettings,
    ToolCall,
    ToolFunction,
    ToolSettings,
    VoxlineError,
)


class Echo(ServerTool):
    """Answers what it is told to, after ``delay`` seconds, or raises ``error``."""

    function = ToolFunction(name="echo", parameters={
        "type": "object", "properties": {"say": {"type": "string", "maxLength": 50}},
        "required": ["say"], "additionalProperties": False})

    def __init__(self, delay: float = 0.0, error: Exception | None = None,
                 output: Any = None) -> None:
        self.delay, self.error, self.output = delay, error, output
        self.seen: list[dict[str, Any]] = []
        self.running = 0
        self.most_running = 0

    async def call(self, arguments: dict[str, Any], context: CallContext) -> str:
        self.seen.append(arguments)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.running -= 1
        if self.error is not None:
            raise self.error
        return self.output if self.output is not None else arguments["say"]


CONTEXT = CallContext("sess", "turn", "call_1", SessionSettings())


async def run(tool: Echo, arguments: str, **limits: Any) -> ToolOutcome:
    runner = ToolRunner(ToolSettings(**limits))
    return await runner.run(tool, ToolCall(id="call_1", name="echo", arguments=arguments),
                            CONTEXT)


async def test_a_call_within_its_bounds_returns_its_output_and_its_time() -> None:
    outcome = await run(Echo(), '{"say": "hi"}')
    assert (outcome.output, outcome.code, outcome.truncated) == ("hi", None, False)
    assert outcome.duration_ms is not None and outcome.duration_ms >= 0


@pytest.mark.parametrize("arguments", [
    "not json", "[1, 2]", '{"say": 3}', '{"say": "x", "rm": "-rf /"}', "{}",
    json.dumps({"say": "y" * 51}), "{" * 40 + "}" * 40,
])
async def test_arguments_that_miss_the_schema_are_never_run(arguments: str) -> None:
    tool = Echo()
    outcome = await run(tool, arguments)
    assert outcome.code is ErrorCode.TOOL_ARGUMENTS_INVALID and tool.seen == []


async def test_a_tool_that_never_answers_times_out_in_its_time() -> None:
    started = asyncio.get_running_loop().time()
    outcome = await run(Echo(delay=60), '{"say": "hi"}', timeout_s=0.2)
    assert outcome.code is ErrorCode.TOOL_TIMEOUT and "0.2 s" in outcome.output
    assert asyncio.get_running_loop().time() - started < 5


class Reconnecting(Echo):
    """An Echo that first takes ``connect_s`` to get ready (an MCP server restarting), or
    cannot (``refuse``)."""

    def __init__(self, connect_s: float, refuse: bool = False) -> None:
        super().__init__()
        self.connect_s, self.refuse = connect_s, refuse

    async def ready(self) -> None:
        await asyncio.sleep(self.connect_s)
        if self.refuse:
            raise VoxlineError("the server could not be started", code=ErrorCode.TOOL_FAILED)


async def test_getting_ready_is_not_the_calls_time_and_failing_to_is_a_coded_outcome() -> None:
    outcome = await run(Reconnecting(connect_s=0.3), '{"say": "hi"}', timeout_s=0.2)
    assert (outcome.code, outcome.output) == (None, "hi")
    refused = Reconnecting(connect_s=0, refuse=True)
    outcome = await run(refused, '{"say": "hi"}')
    assert outcome.code is ErrorCode.TOOL_FAILED and "could not be started" in outcome.output
    assert refused.seen == []


async def test_a_failing_tool_is_a_coded_outcome_with_its_own_code_when_it_has_one() -> None:
    crashed = await run(Echo(error=RuntimeError("secret path /etc")), '{"say": "hi"}')
    assert crashed.code is ErrorCode.TOOL_FAILED and "secret" not in crashed.output
    refused = await run(Echo(error=ProtocolError("no such city",
                                                 code=ErrorCode.NOT_FOUND)), '{"say": "x"}')
    assert (refused.code, refused.output) == (ErrorCode.NOT_FOUND, "no such city")


async def test_a_huge_output_is_cut_to_the_limit_and_says_so() -> None:
    outcome = await run(Echo(output="z" * 10_000), '{"say": "hi"}', max_output_chars=100)
    assert outcome.output == "z" * 100 and outcome.truncated


async def test_calls_past_the_pool_wait_for_a_place() -> None:
    tool = Echo(delay=0.05)
    runner = ToolRunner(ToolSettings(concurrency=2))
    calls = [runner.run(tool, ToolCall(id=f"call_{n}", name="echo", arguments='{"say": "a"}'),
                        CONTEXT) for n in range(6)]
    outcomes = await asyncio.gather(*calls)
    assert all(o.code is None for o in outcomes) and tool.most_running == 2
    assert runner.runs == {"echo": 6}


async def test_a_call_whose_end_is_logged_is_not_run_again() -> None:
    tool = Echo()
    runner = ToolRunner(ToolSettings())
    logged = ToolOutcome("from the log")
    outcome = await runner.run(tool, ToolCall(id="call_1", name="echo",
                                              arguments='{"say": "hi"}'),
                               CONTEXT, lambda call_id: logged if call_id == "call_1" else None)
    assert outcome is logged and tool.seen == []
