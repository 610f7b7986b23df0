"""Tool calls for dialogue models (:mod:`pipeline.engines.llm.tool_calls`), the grammar that
keeps them whole (:mod:`pipeline.engines.llm._llama_grammar`), how a dialogue prompt writes
calls and their outputs, and how a replica joins a stream's text without moving its
calls (:func:`pipeline.engines.coalesced`)."""

from __future__ import annotations

import json
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.engines import coalesced
from pipeline.engines.llm._llama_grammar import MAX_STRING_CHARS, reply_gbnf, tightened
from pipeline.engines.llm.prompting import build_dialogue_prompt
from pipeline.engines.llm.tool_calls import (
    ReplySplitter,
    call_schema,
    render_call,
    tools_preamble,
    with_tools,
)
from schemas import (
    ChatMessage,
    EngineError,
    GenerationRequest,
    GenerationUsage,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolFunction,
)

WEATHER = ToolFunction(name="get_weather", description="The weather in a city.",
                       parameters={"type": "object", "properties": {"city": {"type": "string"}},
                                   "required": ["city"]})
ALARM = ToolFunction(name="set_alarm", parameters={"type": "object", "properties": {
    "hour": {"type": "integer"}}})


def request(mode: str = "auto", name: str | None = None) -> GenerationRequest:
    return GenerationRequest(
        request_id="r", tools=(WEATHER, ALARM),
        tool_choice=ToolChoice(mode=mode, name=name),  # type: ignore[arg-type]
        messages=(ChatMessage(role="system", content="Be brief."),
                  ChatMessage(role="user", content="Weather in Paris?")))


def test_the_call_schema_is_every_allowed_tool_or_the_named_one() -> None:
    both = call_schema(request())
    assert [v["properties"]["name"]["const"] for v in both["anyOf"]] == ["get_weather",
                                                                        "set_alarm"]
    named = call_schema(request("function", "set_alarm"))
    assert named["properties"]["arguments"] == ALARM.parameters
    with pytest.raises(EngineError):
        call_schema(request("function", "missing"))


def test_the_tools_are_told_after_the_persona() -> None:
    messages = with_tools(request())
    assert [m.role for m in messages] == ["system", "system", "user"]
    assert messages[0].content == "Be brief."
    told = messages[1].content
    assert "get_weather: The weather in a city." in told and "Otherwise answer" in told
    assert "Otherwise" not in tools_preamble(request("required"))
    assert with_tools(request("none")) == request("none").messages


@pytest.mark.parametrize("pieces", [
    [' {"name": "get_weather", ', '"arguments": {"city": "Paris"}}'],
    ['{"name":"get_weather","arguments":{"city":"Paris"}}'],
])
def test_a_call_is_held_until_whole(pieces: list[str]) -> None:
    splitter = ReplySplitter(request())
    assert [item for piece in pieces for item in splitter.feed(piece)] == []
    (call,) = splitter.finish()
    assert isinstance(call, ToolCallDelta) and call.name == "get_weather"
    assert call.id is not None and call.id.startswith("call_")
    assert json.loads(call.arguments) == {"city": "Paris"}


def test_words_pass_on_as_they_come() -> None:
    splitter = ReplySplitter(request())
    assert splitter.feed(" ") == []
    assert splitter.feed(" It is") == ["  It is"]
    assert splitter.feed(" sunny.") == [" sunny."]
    assert splitter.finish() == [] and splitter.is_call is False


@pytest.mark.parametrize(("text", "reason"), [
    ('{"name": "get_weather", "argu', "tool_call_incomplete"),
    ('{"name": "launch_missiles", "arguments": {}}', None),
    ('{"name": "get_weather", "arguments": "Paris"}', None),
])
def test_a_call_that_is_not_one_the_request_allows_fails_clearly(
    text: str, reason: str | None
) -> None:
    splitter = ReplySplitter(request())
    splitter.feed(text)
    with pytest.raises(EngineError) as failed:
        splitter.finish()
    assert failed.value.details.get("reason") == reason


def test_a_dialogue_writes_a_call_with_its_output_on_a_tool_line() -> None:
    call = ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}')
    prompt = build_dialogue_prompt((
        ChatMessage(role="user", content="Weather in Paris?"),
        ChatMessage(role="assistant", tool_calls=(call,)),
        ChatMessage(role="tool", tool_call_id="call_1", content='{"sky": "sunny"}'),
    ))
    lines = prompt.text.splitlines()
    assert lines[-3:] == ["User: Weather in Paris?",
                          f'Tool: {render_call(call)} returned {{"sky": "sunny"}}',
                          "Assistant:"]
    assert json.loads(render_call(call)) == {"name": "get_weather",
                                             "arguments": {"city": "Paris"}}


def test_the_grammar_allows_words_only_with_auto() -> None:
    auto, required = reply_gbnf(request()), reply_gbnf(request("required"))
    assert auto.startswith('root ::= " "? (voxline-call | voxline-words)')
    assert "voxline-words" not in required and required.count("root ::=") == 1
    # strings hold no raw control characters: the line stop cannot cut a call
    assert '\\x00-\\x1F' in required


items = st.lists(st.one_of(
    st.text(max_size=5),
    st.builds(ToolCallDelta, index=st.integers(0, 2), arguments=st.text(max_size=3)),
    st.just(GenerationUsage(completion_tokens=1))), max_size=12)


@given(batch=items)
def test_coalescing_joins_text_runs_and_keeps_everything_else_in_place(batch: list) -> None:  # type: ignore[type-arg]
    out = coalesced(batch)
    assert "".join(i for i in out if isinstance(i, str)) == "".join(
        i for i in batch if isinstance(i, str))
    assert [i for i in out if not isinstance(i, str)] == [
        i for i in batch if not isinstance(i, str)]
    assert "" not in out
    assert not any(isinstance(a, str) and isinstance(b, str) for a, b in pairwise(out))


def test_the_grammar_holds_integers_to_their_range_and_strings_to_a_length() -> None:
    schema = {"type": "object", "properties": {
        "minutes": {"type": "integer", "minimum": 1, "maximum": 3},
        "year": {"type": "integer", "minimum": 0, "maximum": 100_000},  # too wide to list
        "query": {"type": "string"}, "code": {"type": "string", "pattern": "^[A-Z]{3}$"}}}
    held = tightened(schema)["properties"]
    assert held["minutes"] == {"enum": [1, 2, 3]}
    assert held["year"] == schema["properties"]["year"]
    assert held["query"]["maxLength"] == MAX_STRING_CHARS
    assert "maxLength" not in held["code"]


def test_arguments_the_schema_refuses_are_a_clear_error() -> None:
    """What a grammar cannot hold a model to (a number's bounds it could not list) is
    checked before the call goes out (measured: a timer of 10^15 minutes)."""
    timer = ToolFunction(name="start_timer", parameters={"type": "object", "properties": {
        "minutes": {"type": "integer", "minimum": 1, "maximum": 600}}})
    splitter = ReplySplitter(GenerationRequest(
        request_id="r", tools=(timer,), tool_choice=ToolChoice(mode="required"),
        messages=(ChatMessage(role="user", content="Timer."),)))
    splitter.feed('{"name": "start_timer", "arguments": {"minutes": 1000000000000000}}')
    with pytest.raises(EngineError) as failed:
        splitter.finish()
    assert failed.value.details["reason"] == "tool_arguments_invalid"
