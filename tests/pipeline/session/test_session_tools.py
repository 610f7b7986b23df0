"""Tools in a live session: a client's function handed to the client and its output taken
back, a server tool run once its start is in the log, and barge-in during a call.

The model is scripted (which round of a turn it is in is pure logic); the tools are small
test tools; the log is real Redis.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pipeline.audio import SpeechPause
from pipeline.log import EventLog
from pipeline.session import EngineChoices, LiveSession, merge_settings
from pipeline.session.creation import new_turn_id
from pipeline.session.speculation import Speculation
from pipeline.tools import CallContext, ServerTool, Toolbox
from schemas import (
    ErrorCode,
    Event,
    EventLogError,
    InputTextMessage,
    ProtocolError,
    SessionSettings,
    ToolCallDelta,
    ToolFunction,
    ToolOutput,
    ToolSettings,
)
from tests.support.engines import RoundsLLM
from tests.support.sessions import collect_until, engines

pytestmark = pytest.mark.redis

WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}


def call(name: str, arguments: str, call_id: str = "call_1", index: int = 0) -> ToolCallDelta:
    return ToolCallDelta(index=index, id=call_id, name=name, arguments=arguments)


class Counter(ServerTool):
    """Counts what it is asked to count; remembers whether its call's start was logged."""

    function = ToolFunction(name="count", parameters={
        "type": "object", "properties": {"what": {"type": "string"}}, "required": ["what"]})

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.logged_first: list[bool] = []
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()
        self.cancelled = 0

    async def call(self, arguments: dict[str, Any], context: CallContext) -> str:
        events = await self.log.read_all(context.session_id)
        self.logged_first.append(any(e.type == "tool.call.started"
                                     and e.data.call_id == context.call_id  # type: ignore[union-attr]
                                     for e in events))
        self.calls.append((context.call_id, arguments))
        self.entered.set()
        if self.gate is not None:
            try:
                await self.gate.wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        return f"{len(self.calls)} {arguments['what']}"


def toolbox_with(tool: ServerTool, **limits: Any) -> Toolbox:
    return Toolbox(ToolSettings(allow=(tool.name,), **limits), [tool])


def of_type(events: list[Event], kind: str) -> list[Any]:
    return [e for e in events if e.type == kind]


async def test_a_client_call_goes_to_the_client_and_its_output_lets_the_turn_go_on(
    event_log: EventLog, key_prefix: str,
) -> None:
    llm = RoundsLLM([["Let me check. ", call("get_weather", '{"city": "Paris"}')],
                     ["It is sunny in Paris."]])
    settings = SessionSettings(tools=[WEATHER])  # type: ignore[list-item]
    session = await LiveSession.open(f"{key_prefix}client", event_log,
                                     engines(llm), create=settings)
    await session.handle(InputTextMessage(text="Weather in Paris?"))
    seen = await collect_until(session, "response.done")
    [started] = of_type(seen, "tool.call.started")
    assert (started.data.call_id, started.data.name, started.data.runs_on) == (
        "call_1", "get_weather", "client")
    assert seen.index(started) > seen.index(of_type(seen, "response.sentence")[0])
    assert seen[-1].data.text == "Let me check. "  # type: ignore[union-attr]
    await session.wait_response()
    assert session.state.turns[started.turn_id].awaits_reply is False
    await session.handle(ToolOutput(call_id="call_1", output='{"sky": "sunny"}', respond=True))
    more = await collect_until(session, "response.done")
    assert [e.type for e in more[:2]] == ["tool.call.output", "response.started"]
    assert more[-1].data.text == "It is sunny in Paris."  # type: ignore[union-attr]
    assert {e.turn_id for e in more} == {started.turn_id}  # one turn, two responses
    second = llm.requests[1].messages
    assert [m.role for m in second[-3:]] == ["user", "assistant", "tool"]
    assert second[-2].content == "Let me check." and second[-2].tool_calls[0].id == "call_1"
    assert second[-1].tool_call_id == "call_1" and second[-1].content == '{"sky": "sunny"}'
    await session.wait_response()
    history = session.state.history()
    assert [m.role for m in history[1:]] == ["user", "assistant", "tool", "assistant"]
    assert history[-1].content == "It is sunny in Paris."
    with pytest.raises(ProtocolError) as told:  # answered already
        await session.handle(ToolOutput(call_id="call_1", output="again"))
    assert told.value.code is ErrorCode.TOOL_CALL_NOT_FOUND
    await session.close()


async def test_an_output_for_a_call_the_session_never_made_is_refused(
    event_log: EventLog, key_prefix: str,
) -> None:
    session = await LiveSession.open(f"{key_prefix}nocall", event_log, engines(),
                                     create=SessionSettings())
    with pytest.raises(ProtocolError) as told:
        await session.handle(ToolOutput(call_id="call_nope", output="x"))
    assert told.value.code is ErrorCode.TOOL_CALL_NOT_FOUND
    assert session.state.event_count == 1  # nothing appended
    await session.close()


async def test_a_server_call_runs_once_after_its_start_is_logged_and_the_model_reads_it(
    event_log: EventLog, key_prefix: str,
) -> None:
    counter = Counter(event_log)
    llm = RoundsLLM([[call("count", '{"what": "sheep"}')], ["One sheep."]])
    settings = SessionSettings(tools=[{"type": "server", "name": "count"}])  # type: ignore[list-item]
    session = await LiveSession.open(f"{key_prefix}server", event_log, engines(llm),
                                     create=settings, toolbox=toolbox_with(counter))
    await session.handle(InputTextMessage(text="Count sheep."))
    seen = await collect_until(session, "response.done")
    kinds = [e.type for e in seen]
    assert kinds.index("tool.call.started") < kinds.index("tool.call.output") < kinds.index(
        "response.text.delta")
    assert counter.calls == [("call_1", {"what": "sheep"})] and counter.logged_first == [True]
    [output] = of_type(seen, "tool.call.output")
    assert output.data.output == "1 sheep" and output.data.duration_ms is not None
    assert seen[-1].data.text == "One sheep." and seen[-1].data.status == "completed"  # type: ignore[union-attr]
    assert llm.requests[1].messages[-1].content == "1 sheep"
    assert llm.requests[1].tool_choice.mode == "auto"
    await session.close()


async def test_bad_arguments_and_unknown_tools_reach_the_model_as_outputs_not_runs(
    event_log: EventLog, key_prefix: str,
) -> None:
    counter = Counter(event_log)
    llm = RoundsLLM([[call("count", '{"what": 3}'),
                      call("launch", "{}", call_id="call_2", index=1)], ["Sorry."]])
    settings = SessionSettings(tools=[{"type": "server", "name": "count"}])  # type: ignore[list-item]
    session = await LiveSession.open(f"{key_prefix}bad", event_log, engines(llm),
                                     create=settings, toolbox=toolbox_with(counter))
    await session.handle(InputTextMessage(text="Count."))
    seen = await collect_until(session, "response.done")
    failed = {e.data.call_id: e.data.code for e in of_type(seen, "tool.call.failed")}
    assert failed == {"call_1": ErrorCode.TOOL_ARGUMENTS_INVALID,
                      "call_2": ErrorCode.TOOL_NOT_ALLOWED}
    assert counter.calls == []
    assert seen[-1].data.status == "completed"  # type: ignore[union-attr]
    tool_messages = [m for m in llm.requests[1].messages if m.role == "tool"]
    assert tool_messages[0].content.startswith("error (tool_arguments_invalid)")
    await session.close()


async def test_calls_past_the_turns_limit_are_not_run_and_the_model_must_answer_in_words(
    event_log: EventLog, key_prefix: str,
) -> None:
    counter = Counter(event_log)
    llm = RoundsLLM([[call("count", '{"what": "a"}', "call_1")],
                     [call("count", '{"what": "b"}', "call_2"),
                      call("count", '{"what": "c"}', "call_3", index=1)],
                     ["Enough."]])
    settings = SessionSettings(tools=[{"type": "server", "name": "count"}])  # type: ignore[list-item]
    session = await LiveSession.open(f"{key_prefix}limit", event_log, engines(llm),
                                     create=settings,
                                     toolbox=toolbox_with(counter, max_calls_per_turn=2))
    await session.handle(InputTextMessage(text="Count."))
    seen = await collect_until(session, "response.done")
    assert [c[0] for c in counter.calls] == ["call_1", "call_2"]
    [over] = of_type(seen, "tool.call.failed")
    assert (over.data.call_id, over.data.code) == ("call_3", ErrorCode.TOOL_CALL_LIMIT)
    assert llm.requests[2].tool_choice.mode == "none"
    assert seen[-1].data.text == "Enough."  # type: ignore[union-attr]
    await session.close()


async def test_barge_in_during_a_slow_server_call_cancels_it_and_logs_why(
    event_log: EventLog, key_prefix: str,
) -> None:
    counter = Counter(event_log)
    counter.gate = asyncio.Event()  # never set: the call waits until it is cancelled
    llm = RoundsLLM([[call("count", '{"what": "stars"}')], ["Never said."]])
    settings = SessionSettings(tools=[{"type": "server", "name": "count"}])  # type: ignore[list-item]
    session = await LiveSession.open(f"{key_prefix}barge", event_log, engines(llm),
                                     create=settings, toolbox=toolbox_with(counter))
    await session.handle(InputTextMessage(text="Count the stars."))
    await collect_until(session, "tool.call.started")
    await asyncio.wait_for(counter.entered.wait(), 10)
    await session.cancel_response("barge_in")
    seen = await collect_until(session, "response.cancelled")
    assert [e.type for e in seen[-2:]] == ["tool.call.cancelled", "response.cancelled"]
    assert seen[-2].data.reason == "barge_in" and counter.cancelled == 1  # type: ignore[union-attr]
    turn = session.state.turns[seen[-1].turn_id or ""]
    assert turn.tool_calls["call_1"].status == "cancelled"
    assert len(llm.requests) == 1  # the model was not asked again
    await session.close()


def test_a_server_tool_the_operator_did_not_allow_is_refused_when_declared() -> None:
    choices = EngineChoices(server_tools=frozenset({"search_documents"}))
    with pytest.raises(ProtocolError) as told:
        merge_settings(SessionSettings(), {"tools": [{"type": "server", "name": "rm_rf"}]},
                       choices)
    assert told.value.code is ErrorCode.TOOL_NOT_ALLOWED
    assert told.value.details["param"] == "tools.0"
    merged = merge_settings(SessionSettings(),
                            {"tools": [{"type": "server", "name": "search_documents"}, WEATHER],
                             "tool_choice": "required"}, choices)
    assert [t.name for t in merged.tools] == ["search_documents", "get_weather"]


@pytest.mark.parametrize("patch", [
    {"tools": [WEATHER, WEATHER]},
    {"tool_choice": {"type": "function", "name": "nope"}, "tools": [WEATHER]},
    {"tool_choice": "required"},
    {"tools": [{**WEATHER, "parameters": {"type": "string"}}]},
    {"tools": [{**WEATHER, "name": "no spaces"}]},
])
def test_tools_that_do_not_fit_together_are_invalid_settings(patch: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as told:
        merge_settings(SessionSettings(), patch)
    assert told.value.code is ErrorCode.INVALID_SETTINGS


async def test_a_call_whose_start_cannot_be_logged_is_never_run(
    event_log: EventLog, key_prefix: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    counter = Counter(event_log)
    llm = RoundsLLM([[call("count", '{"what": "sheep"}')], ["Never asked."]])
    settings = SessionSettings(tools=[{"type": "server", "name": "count"}])  # type: ignore[list-item]
    session = await LiveSession.open(f"{key_prefix}nolog", event_log, engines(llm),
                                     create=settings, toolbox=toolbox_with(counter))
    emit = session.emitter.emit

    async def failing_starts(*events: Any) -> list[Event]:
        if any(e.type == "tool.call.started" for e in events):
            raise EventLogError("the log is down")
        return await emit(*events)

    monkeypatch.setattr(session.emitter, "emit", failing_starts)
    await session.handle(InputTextMessage(text="Count sheep."))
    seen = await collect_until(session, "response.done")
    assert counter.calls == [] and len(llm.requests) == 1
    assert "tool.call.started" not in [e.type for e in seen]
    [error] = of_type(seen, "error")
    assert error.data.code is ErrorCode.LOG_WRITE_FAILED
    assert seen[-1].data.status == "failed"  # type: ignore[union-attr]
    await session.close()


async def test_a_speculative_reply_stops_at_a_tool_call_until_its_turn_is_real(
    event_log: EventLog, key_prefix: str,
) -> None:
    counter = Counter(event_log)
    llm = RoundsLLM([[call("count", '{"what": "sheep"}')],  # the dropped one asks once
                     [call("count", '{"what": "sheep"}', "call_2")], ["Sheep."]])
    settings = SessionSettings(tools=[{"type": "server", "name": "count"}])  # type: ignore[list-item]
    session = await LiveSession.open(f"{key_prefix}spec", event_log, engines(llm),
                                     create=settings, toolbox=toolbox_with(counter))
    pause = SpeechPause(audio_ms=800, audio=b"\0\0" * 1600, duration_s=0.1, start_ms=0,
                        end_bytes=3200)

    async def heard(audio: bytes, rate: int) -> str:
        return "Count sheep."

    def speculate() -> Speculation:
        return Speculation(new_turn_id(), pause, 16000, transcribe=heard,
                           reply=session.responder.source.reply)

    dropped = speculate()
    await asyncio.wait_for(dropped._task, 10)  # prepared as far as it goes unconfirmed
    assert [e.type for e in dropped.held][-1] == "tool.call.started"
    await asyncio.sleep(0.05)
    assert counter.calls == []  # nothing of a tool runs for a turn that may never be
    await dropped.discard()
    assert counter.calls == [] and len(llm.requests) == 1
    adopted = speculate()
    await asyncio.wait_for(adopted._task, 10)
    events = [event async for event in adopted.adopt(None)]  # the turn is real
    [started] = [e for e in events if e.type == "tool.call.started"]
    assert [c[0] for c in counter.calls] == [started.data.call_id]  # type: ignore[union-attr]
    assert events[-1].type == "response.done"
    await session.close()


async def test_a_slow_server_call_with_nothing_said_yet_gets_the_filler_spoken(
    event_log: EventLog, key_prefix: str,
) -> None:
    counter = Counter(event_log)
    counter.gate = asyncio.Event()
    llm = RoundsLLM([[call("count", '{"what": "sheep"}')], ["Done counting."]])
    settings = SessionSettings(tools=[{"type": "server", "name": "count"}],  # type: ignore[list-item]
                               tool_filler="Just a second.", output_sample_rate=16000)
    session = await LiveSession.open(f"{key_prefix}filler", event_log, engines(llm),
                                     create=settings,
                                     toolbox=toolbox_with(counter, filler_after_ms=50))
    await session.handle(InputTextMessage(text="Count sheep."))
    said = await collect_until(session, "response.sentence")  # cut and sent to TTS
    counter.gate.set()  # only then does the call answer
    seen = said + await collect_until(session, "response.done")
    kinds = [e.type for e in seen]
    [filler] = [e for e in seen if e.type == "response.sentence"][:1]
    assert filler.data.text == "Just a second."  # type: ignore[union-attr]
    assert kinds.index("tool.call.started") < seen.index(filler) < kinds.index(
        "tool.call.output")
    assert seen[-1].data.text == "Just a second. Done counting."  # type: ignore[union-attr]
    first_audio = kinds.index("response.audio.chunk")
    assert seen[first_audio].data.sentence_index == 0  # type: ignore[union-attr]
    await session.close()


async def test_a_call_that_finishes_on_barge_in_logs_its_output_after_the_cancel(
    event_log: EventLog, key_prefix: str,
) -> None:
    counter = Counter(event_log)
    counter.on_barge_in = "finish"
    counter.gate = asyncio.Event()
    llm = RoundsLLM([[call("count", '{"what": "votes"}')], ["Never said."], ["Counted."]])
    settings = SessionSettings(tools=[{"type": "server", "name": "count"}],  # type: ignore[list-item]
                               tool_filler="")
    session = await LiveSession.open(f"{key_prefix}finish", event_log, engines(llm),
                                     create=settings, toolbox=toolbox_with(counter))
    await session.handle(InputTextMessage(text="Count the votes."))
    await asyncio.wait_for(counter.entered.wait(), 10)
    await session.cancel_response("barge_in")
    seen = await collect_until(session, "response.cancelled")
    assert "tool.call.cancelled" not in [e.type for e in seen]  # it runs on
    counter.gate.set()
    [late] = await collect_until(session, "tool.call.output")
    assert late.data.output == "1 votes" and counter.cancelled == 0  # type: ignore[union-attr]
    await session.handle(InputTextMessage(text="So?"))
    await collect_until(session, "response.done")
    history = llm.requests[-1].messages
    assert any(m.role == "tool" and m.content == "1 votes" for m in history)
    assert len(counter.calls) == 1
    await session.close()


async def test_a_reply_that_must_call_says_its_filler_from_its_start_not_its_calls(
    event_log: EventLog, key_prefix: str,
) -> None:
    counter = Counter(event_log)
    llm = RoundsLLM([[call("count", '{"what": "sheep"}')], ["Three sheep."]])
    llm.gate = asyncio.Event()  # the model takes its time to write the call
    settings = SessionSettings(tools=[{"type": "server", "name": "count"}],  # type: ignore[list-item]
                               tool_choice="required", tool_filler="Let me see.")  # type: ignore[arg-type]
    session = await LiveSession.open(f"{key_prefix}forced", event_log, engines(llm),
                                     create=settings,
                                     toolbox=toolbox_with(counter, filler_after_ms=50))
    await session.handle(InputTextMessage(text="Count sheep."))
    said = await collect_until(session, "response.sentence")  # before any call was made
    assert "tool.call.started" not in [e.type for e in said]
    llm.gate.set()
    seen = said + await collect_until(session, "response.done")
    assert [e.data.text for e in seen if e.type == "response.sentence"] == [  # type: ignore[union-attr]
        "Let me see.", "Three sheep."]  # said once: the call's own wait adds none
    await session.close()
