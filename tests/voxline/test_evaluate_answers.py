"""The answers of ``voxline evaluate``: logged turns asked again with the dialogue as it
stood (the candidate's prompt and sampling over the session's, its function tools
offered), compared with the logged reply by words (F1) and calls; the word F1 is
symmetric and bounded, whatever the texts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.log import EventLog
from pipeline.session import LiveSession, SessionEngines
from schemas import FunctionTool, HistorySettings, SessionSettings, ToolCallDelta
from tests.support.engines import RecordingLLM, RoundsLLM
from tests.support.sessions import collect_until
from voxline.candidates import parse_candidate
from voxline.evaluate_answers import _ask, _measures, asked_turns, word_f1
from voxline.word_errors import normalize

WEATHER = FunctionTool(name="weather", description="the weather in a city",
                       parameters={"type": "object",
                                   "properties": {"city": {"type": "string"}}})


def _f1(logged: str, answered: str) -> float:
    """The word F1, written again here from its definition."""
    a, b = normalize(logged), normalize(answered)
    common = sum(min(a.count(w), b.count(w)) for w in set(a))
    return 0.0 if not common else 2 * common / (len(a) + len(b))


@given(st.text(max_size=60), st.text(max_size=60))
def test_word_f1_is_symmetric_bounded_and_one_for_the_same_words(a: str, b: str) -> None:
    assert word_f1(a, b) == pytest.approx(word_f1(b, a))
    assert 0.0 <= word_f1(a, b) <= 1.0
    assert word_f1(a, " ".join(reversed(normalize(a)))) == 1.0
    if normalize(a) or normalize(b):
        assert word_f1(a, b) == pytest.approx(_f1(a, b))


@pytest.mark.redis
async def test_each_completed_turn_is_asked_again_with_the_dialogue_before_it(
        event_log: EventLog, key_prefix: str) -> None:
    sid = f"{key_prefix}answers"
    created = SessionSettings(system_prompt="You are a tour guide.", tools=(WEATHER,))
    session = await LiveSession.open(
        sid, event_log, SessionEngines(llm=RecordingLLM(["Paris", " it", " is."])),
        create=created)
    for question in ("What is the capital of France?", "And its weather?"):
        await session.submit_text(question)
        await collect_until(session, "response.done")
    await session.close()
    events = await event_log.read_all(sid)

    asked = asked_turns(sid, events, HistorySettings())
    assert [turn.logged for turn in asked] == ["Paris it is.", "Paris it is."]
    assert [m.content for m in asked[1].messages] == [
        "You are a tour guide.", "What is the capital of France?", "Paris it is.",
        "And its weather?"]
    assert [m.content for m in asked[0].messages] == [
        "You are a tour guide.", "What is the capital of France?"]

    llm = RoundsLLM([["Paris", ", France."],
                     [ToolCallDelta(index=0, id="c1", name="weather"),
                      ToolCallDelta(index=0, arguments='{"city": '),
                      ToolCallDelta(index=0, arguments='"Paris"}')]])
    candidate = parse_candidate('terse={"system_prompt": "Be terse.", "max_tokens": 9}')
    rows, complete = await _ask(llm, candidate, asked, deadline=float("inf"))
    assert complete
    first, second = llm.requests
    assert first.messages[0].content == "Be terse."  # the candidate's prompt
    assert [m.content for m in second.messages[1:]] == [
        "What is the capital of France?", "Paris it is.", "And its weather?"]
    assert first.sampling.max_tokens == 9  # the candidate's sampling over the session's
    assert first.sampling.temperature == created.sampling.temperature
    assert [tool.name for tool in first.tools] == ["weather"]  # the session's function

    measures = _measures(rows)
    assert measures["turns"] == 2 and measures["changed"] == 2
    assert measures["similarity"] == round(
        (_f1("Paris it is.", "Paris, France.") + _f1("Paris it is.", "")) / 2, 4)
    assert measures["calls_made"] == 1 and measures["calls_logged"] == 0
    assert measures["calls_changed"] == 1
    assert measures["calls"] == [{"session_id": sid, "turn_id": asked[1].turn_id,
                                  "name": "weather", "arguments": '{"city": "Paris"}'}]
    assert measures["answer_ms"] is not None

    # a candidate's own tools replace the session's (and its tool_choice holds)
    clock = parse_candidate(
        'clock={"tools": [{"type": "function", "name": "clock", "description": "the time", '
        '"parameters": {"type": "object", "properties": {}}}], "tool_choice": "required"}')
    other = RoundsLLM([["It is noon."], ["It is noon."]])
    await _ask(other, clock, asked, deadline=float("inf"))
    assert [tool.name for tool in other.requests[0].tools] == ["clock"]
    assert other.requests[0].tool_choice.mode == "required"
    assert other.requests[0].messages[0].content == "You are a tour guide."  # the session's


@pytest.mark.redis
async def test_a_cancelled_turn_is_not_asked_again(event_log: EventLog, key_prefix: str) -> None:
    sid = f"{key_prefix}cancelled"
    llm = RecordingLLM(["one", " two", " three", " four"] * 50)
    session = await LiveSession.open(sid, event_log, SessionEngines(llm=llm),
                                     create=SessionSettings())
    await session.submit_text("Count for me.")
    await collect_until(session, "response.text.delta")
    await session.cancel_response("client")
    await collect_until(session, "response.cancelled")
    await session.close()
    assert asked_turns(sid, await event_log.read_all(sid), HistorySettings()) == []


def test_a_candidate_that_changes_no_reply_setting_leaves_the_answers_alone() -> None:
    assert not parse_candidate("quick=end_of_speech_ms=500").tries_answers
    assert parse_candidate('p={"temperature": 0}').tries_answers
    assert parse_candidate('m={"llm_model": "gemma"}').tries_answers
