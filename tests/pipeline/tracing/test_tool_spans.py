"""A turn with tool calls, drawn from its log: a ``tool.call`` span per call, and the
transcript of ``voxline replay`` with the calls where they were made."""

from __future__ import annotations

from pipeline.tracing import turn_trace
from schemas import (
    ErrorCode,
    Event,
    InputText,
    InputTextData,
    ResponseDone,
    ResponseDoneData,
    ResponseStarted,
    ResponseStartedData,
    ResponseTextDelta,
    TextDeltaData,
    ToolCallFailed,
    ToolCallFailedData,
    ToolCallOutput,
    ToolCallOutputData,
    ToolCallStarted,
    ToolCallStartedData,
)
from voxline.inspect import SessionRecord, session_table, transcript_lines

SID, TURN = "sess_t", "turn_t"


def tool_turn() -> list[Event]:
    common = {"session_id": SID, "turn_id": TURN}
    ids = iter(f"{n}-0" for n in range(1, 100))

    def at(ms: int) -> dict[str, object]:
        return {"id": next(ids), "ts": 1_000_000 + ms, **common}

    return [
        InputText(**at(0), data=InputTextData(text="Weather and a booking?")),
        ResponseStarted(**at(10), data=ResponseStartedData(mode="text")),
        ResponseTextDelta(**at(20), data=TextDeltaData(delta="Let me check. ")),
        ToolCallStarted(**at(30), data=ToolCallStartedData(
            call_id="call_a", name="get_weather", arguments='{"city": "Oslo"}',
            runs_on="server")),
        ToolCallStarted(**at(31), data=ToolCallStartedData(
            call_id="call_b", name="book", arguments="{}", runs_on="server", index=1)),
        ToolCallOutput(**at(230), data=ToolCallOutputData(call_id="call_a", output="grey")),
        ToolCallFailed(**at(531), data=ToolCallFailedData(
            call_id="call_b", code=ErrorCode.TOOL_TIMEOUT, message="slow")),
        ResponseTextDelta(**at(600), data=TextDeltaData(delta="It is grey.")),
        ResponseDone(**at(650), data=ResponseDoneData(text="Let me check. It is grey.")),
    ]


def test_each_call_is_a_span_from_its_start_to_its_end() -> None:
    trace = turn_trace(SID, TURN, tool_turn())
    assert trace is not None
    calls = {s.attributes["voxline.call_id"]: s for s in trace.spans if s.name == "tool.call"}
    assert calls["call_a"].duration_ms == 200
    assert calls["call_a"].attributes["voxline.tool_status"] == "output"
    assert calls["call_b"].duration_ms == 500
    assert calls["call_b"].attributes["voxline.tool_status"] == "failed"
    assert calls["call_a"].span_id != calls["call_b"].span_id
    assert all(s.parent_id == trace.root.span_id for s in calls.values())


def test_the_replay_transcript_and_the_table_show_the_calls() -> None:
    record = SessionRecord(SID, tuple(tool_turn()))
    assert transcript_lines(record) == [
        "user: Weather and a booking?",
        "assistant: Let me check.",
        'tool: get_weather({"city": "Oslo"}) [server]',
        "tool: book({}) [server]",
        "tool: → grey",
        "tool: → error (tool_timeout): slow",
        "assistant: It is grey.",
    ]
    table = session_table(record)
    assert "tools" in [column.header for column in table.columns]
