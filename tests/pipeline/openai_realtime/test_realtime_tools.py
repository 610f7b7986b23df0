"""Tools in the Realtime API's shapes, without a socket: ``session.tools`` and
``tool_choice`` in, ``function_call_output`` items in; a client's call as a
``function_call`` item and a server's as an ``mcp_call`` item out, a turn's second response
named apart from its first, and every frame valid against the official SDK's models."""

from __future__ import annotations

import json

import pytest

from pipeline.openai_realtime import ClientTranslator, ServerTranslator, session_object
from schemas import (
    ErrorCode,
    InputText,
    InputTextData,
    ProtocolError,
    ResponseDone,
    ResponseDoneData,
    ResponseStarted,
    ResponseStartedData,
    SessionSettings,
    SessionUpdate,
    ToolCallCancelled,
    ToolCallCancelledData,
    ToolCallFailed,
    ToolCallFailedData,
    ToolCallOutput,
    ToolCallOutputData,
    ToolCallStarted,
    ToolCallStartedData,
    ToolOutput,
)
from tests.support.openai_sdk import realtime_server_events

CLIENT = ClientTranslator()
SID, TURN = "sess_1", "turn_a"
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather now.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


def _messages(event: dict[str, object]) -> tuple[object, ...]:
    return CLIENT.actions(CLIENT.parse(json.dumps(event))).messages


def test_session_tools_and_tool_choice_become_the_sessions() -> None:
    [update] = _messages({"type": "session.update", "session": {
        "type": "realtime", "tools": [WEATHER, {"type": "server", "name": "search_documents"}],
        "tool_choice": {"type": "function", "name": "get_weather"}}})
    assert isinstance(update, SessionUpdate)
    settings = SessionSettings().merged(update.settings)
    assert [t.name for t in settings.tools] == ["get_weather", "search_documents"]
    assert settings.tool_choice.name == "get_weather"
    shown = session_object(SID, settings, model="voxline")
    assert shown["tools"][0]["parameters"] == WEATHER["parameters"]
    assert shown["tool_choice"] == {"type": "function", "name": "get_weather"}
    [update] = _messages({"type": "session.update", "session": {"tool_choice": "required"}})
    assert update.settings == {"tool_choice": "required"}  # type: ignore[attr-defined]
    with pytest.raises(ProtocolError) as told:
        _messages({"type": "session.update", "session": {"tools": [
            {"type": "web_search_preview"}]}})
    assert told.value.code is ErrorCode.INVALID_SETTINGS


def test_a_function_call_output_item_is_the_clients_output() -> None:
    [output] = _messages({"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": "call_1", "output": '{"sky": "grey"}'}})
    assert output == ToolOutput(call_id="call_1", output='{"sky": "grey"}')
    with pytest.raises(ProtocolError) as told:
        _messages({"type": "conversation.item.create",
                   "item": {"type": "function_call_output", "output": "x"}})
    assert told.value.code is ErrorCode.INVALID_MESSAGE


def _client_call_turn() -> list:
    ids = iter(f"200-{i}" for i in range(100))
    common = {"session_id": SID, "turn_id": TURN}
    started = ToolCallStartedData(call_id="call_1", name="get_weather",
                                  arguments='{"city": "Oslo"}', runs_on="client")
    return [
        InputText(id=next(ids), **common, data=InputTextData(text="Weather?")),
        ResponseStarted(id=next(ids), **common, data=ResponseStartedData(mode="text")),
        ToolCallStarted(id=next(ids), **common, data=started),
        ResponseDone(id=next(ids), **common, data=ResponseDoneData(text="")),
        ToolCallOutput(id=next(ids), **common, data=ToolCallOutputData(
            call_id="call_1", output="grey")),
        ResponseStarted(id=next(ids), **common, data=ResponseStartedData(mode="text")),
        ResponseDone(id=next(ids), **common, data=ResponseDoneData(text="It is grey.")),
    ]


def test_a_client_call_is_a_function_call_item_and_the_turn_goes_on_in_a_new_response() -> None:
    translator = ServerTranslator(model="voxline")
    frames = [f for e in _client_call_turn() for f in translator.frames(e)]
    kinds = [f["type"] for f in frames]
    added = next(f for f in frames if f["type"] == "response.output_item.added"
                 and f["item"]["type"] == "function_call")
    assert added["output_index"] == 1 and added["item"]["call_id"] == "call_1"
    done = next(f for f in frames if f["type"] == "response.function_call_arguments.done")
    assert (done["name"], done["arguments"]) == ("get_weather", '{"city": "Oslo"}')
    first, second = [f["response"] for f in frames if f["type"] == "response.done"]
    assert first["id"] == "resp_turn_a" and second["id"] == "resp_turn_a_1"
    assert [i["type"] for i in first["output"]] == ["message", "function_call"]
    assert second["output"][0]["id"] == "item_turn_a_out_1"
    output = next(f for f in frames if f["type"] == "conversation.item.added"
                  and f["item"]["type"] == "function_call_output")
    assert output["item"]["call_id"] == "call_1" and output["item"]["output"] == "grey"
    assert kinds.count("response.created") == 2


def _server_call_turn(ending: object) -> list:
    ids = iter(f"300-{i}" for i in range(100))
    common = {"session_id": SID, "turn_id": TURN}
    started = ToolCallStartedData(call_id="call_9", name="search_documents",
                                  arguments='{"query": "tram"}', runs_on="server")
    return [
        ResponseStarted(id=next(ids), **common, data=ResponseStartedData(mode="text")),
        ToolCallStarted(id=next(ids), **common, data=started),
        ending.model_copy(update={"id": next(ids)}),  # type: ignore[attr-defined]
        ResponseDone(id=next(ids), **common, data=ResponseDoneData(text="Trams run.")),
    ]


@pytest.mark.parametrize(("ending", "status"), [
    (ToolCallOutput(session_id=SID, turn_id=TURN, data=ToolCallOutputData(
        call_id="call_9", output="every six minutes")), "completed"),
    (ToolCallFailed(session_id=SID, turn_id=TURN, data=ToolCallFailedData(
        call_id="call_9", code=ErrorCode.TOOL_TIMEOUT, message="slow")), "failed"),
    (ToolCallCancelled(session_id=SID, turn_id=TURN, data=ToolCallCancelledData(
        call_id="call_9", reason="barge_in")), "failed"),
])
def test_a_server_call_is_an_mcp_call_item_the_client_never_runs(
    ending: object, status: str
) -> None:
    translator = ServerTranslator(model="voxline")
    frames = [f for e in _server_call_turn(ending) for f in translator.frames(e)]
    kinds = [f["type"] for f in frames]
    assert "response.function_call_arguments.done" not in kinds
    assert f"response.mcp_call.{status}" in kinds
    item = next(f for f in frames if f["type"] == "response.output_item.done"
                and f["item"]["type"] == "mcp_call")["item"]
    assert item["server_label"] == "voxline" and item["name"] == "search_documents"
    if status == "completed":
        assert item["output"] == "every six minutes" and item["error"] is None
    else:
        assert item["error"]["code"] in ("tool_timeout", "tool_interrupted")


def test_every_tool_frame_is_a_valid_sdk_event() -> None:
    classes = realtime_server_events()
    translator = ServerTranslator(model="voxline")
    ending = ToolCallOutput(session_id=SID, turn_id=TURN, data=ToolCallOutputData(
        call_id="call_9", output="x"))
    frames = [f for e in [*_client_call_turn(), *_server_call_turn(ending)]
              for f in translator.frames(e)]
    assert any(f["type"] == "response.mcp_call.completed" for f in frames)
    for frame in frames:
        assert frame["type"] in classes, frame["type"]
        classes[frame["type"]].model_validate(frame)
