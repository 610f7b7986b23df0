"""Tool calls on the CPU default (llama.cpp, the packaged Gemma 3 270M), one at a time and
decoded together: a call whose arguments always satisfy the tool's schema under every
``tool_choice`` that allows one, words under ``none``, an earlier call and its output read
back from the history, and a call that a cut budget leaves unfinished refused clearly."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import jsonschema
import pytest
import pytest_asyncio

from pipeline.engines.llm.llama_cpp import LlamaCppLanguageModel
from schemas import (
    ChatMessage,
    EngineError,
    GenerationRequest,
    GenerationUsage,
    SamplingSettings,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolFunction,
)

pytestmark = pytest.mark.models

WEATHER = ToolFunction(name="get_weather", description="The weather now in a city.",
                       parameters={"type": "object", "properties": {
                           "city": {"type": "string", "maxLength": 40},
                           "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                           "required": ["city", "unit"], "additionalProperties": False})
ALARM = ToolFunction(name="set_alarm", description="Set an alarm clock.",
                     parameters={"type": "object", "properties": {
                         "hour": {"type": "integer", "minimum": 0, "maximum": 23},
                         "minute": {"type": "integer", "minimum": 0, "maximum": 59}},
                         "required": ["hour", "minute"]})
GREEDY = SamplingSettings(temperature=0.0, max_tokens=60)


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=[1, 2],
                        ids=["serial", "parallel"])
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[LlamaCppLanguageModel]:
    llm = LlamaCppLanguageModel(n_ctx=1024, n_threads=1, parallel_sequences=request.param)
    await llm.load()
    try:
        yield llm
    finally:
        await llm.close()


def ask(text: str, mode: str = "auto", name: str | None = None,
        *history: ChatMessage) -> GenerationRequest:
    return GenerationRequest(
        request_id="tools", sampling=GREEDY, tools=(WEATHER, ALARM),
        tool_choice=ToolChoice(mode=mode, name=name),  # type: ignore[arg-type]
        messages=(ChatMessage(role="system", content="You are a helpful assistant."),
                  *history, ChatMessage(role="user", content=text)))


async def reply(engine: LlamaCppLanguageModel, request: GenerationRequest
                ) -> tuple[str, list[ToolCallDelta], GenerationUsage | None]:
    text, calls, usage = [], [], None
    async for item in engine.generate_with_usage(request):
        if isinstance(item, ToolCallDelta):
            calls.append(item)
        elif isinstance(item, GenerationUsage):
            usage = item
        else:
            text.append(item)
    return "".join(text), calls, usage


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("question", "mode", "name", "tool"), [
    ("What is the weather in Paris?", "required", None, None),
    ("Wake me at half past six.", "required", None, None),
    ("What is the weather in Oslo?", "function", "get_weather", WEATHER),
    ("Anything at all.", "function", "set_alarm", ALARM),
])
async def test_a_call_the_request_demands_always_satisfies_its_schema(
    engine: LlamaCppLanguageModel, question: str, mode: str, name: str | None,
    tool: ToolFunction | None,
) -> None:
    text, calls, usage = await reply(engine, ask(question, mode, name))
    assert text == "" and len(calls) == 1
    call = calls[0]
    assert call.id is not None and call.id.startswith("call_")
    assert call.name in {"get_weather", "set_alarm"}
    if tool is not None:
        assert call.name == tool.name
    chosen = WEATHER if call.name == "get_weather" else ALARM
    jsonschema.validate(json.loads(call.arguments), chosen.parameters)
    assert usage is not None and usage.finish_reason == "tool_calls"


@pytest.mark.asyncio(loop_scope="module")
async def test_with_auto_the_reply_is_a_valid_call_or_words(
    engine: LlamaCppLanguageModel
) -> None:
    for question in ("What is the weather in Rome?", "What is the capital of France?"):
        text, calls, usage = await reply(engine, ask(question))
        assert bool(text) != bool(calls), (text, calls)  # one or the other
        for call in calls:
            chosen = WEATHER if call.name == "get_weather" else ALARM
            jsonschema.validate(json.loads(call.arguments), chosen.parameters)
        assert usage is not None
        assert usage.finish_reason == ("tool_calls" if calls else "stop")


@pytest.mark.asyncio(loop_scope="module")
async def test_with_none_the_model_answers_in_words(engine: LlamaCppLanguageModel) -> None:
    text, calls, _ = await reply(engine, ask("What is the capital of France?", "none"))
    assert text and not calls


@pytest.mark.asyncio(loop_scope="module")
async def test_a_call_and_its_output_in_the_history_are_answered_in_words(
    engine: LlamaCppLanguageModel
) -> None:
    history = (
        ChatMessage(role="user", content="What is the weather in Paris?"),
        ChatMessage(role="assistant", tool_calls=(ToolCall(
            id="call_1", name="get_weather", arguments='{"city": "Paris", "unit": "celsius"}'),)),
        ChatMessage(role="tool", tool_call_id="call_1",
                    content='{"temperature": 21, "sky": "sunny"}'),
    )
    request = GenerationRequest(request_id="after", sampling=GREEDY, tools=(WEATHER,),
                                tool_choice=ToolChoice(mode="none"), messages=history)
    text, calls, _ = await reply(engine, request)
    assert not calls and text


@pytest.mark.asyncio(loop_scope="module")
async def test_a_call_cut_by_the_budget_is_a_clear_error(engine: LlamaCppLanguageModel) -> None:
    request = ask("What is the weather in Paris?", "required").model_copy(
        update={"sampling": SamplingSettings(temperature=0.0, max_tokens=4)})
    with pytest.raises(EngineError) as failed:
        await reply(engine, request)
    assert failed.value.details["reason"] == "tool_call_incomplete"
