"""A stage called in the caller's process keeps its deployment's bounds, meters and window."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from pipeline.engines import StageBound, bounded_stage
from pipeline.engines.bounded import BoundedLanguageModel, BoundedSynthesizer
from pipeline.meters import StageCalls
from schemas import (
    EngineError,
    ErrorCode,
    GenerationRequest,
    GenerationUsage,
    OverloadedError,
    SynthesisRequest,
)
from tests.support.engines import ScriptedLLM, ScriptedTTS

HANG = 5.0


def request(n: int = 0) -> GenerationRequest:
    return GenerationRequest(request_id=f"r{n}", messages=[{"role": "user", "content": "hi"}])


async def test_a_bound_runs_its_places_queues_in_order_and_refuses_past_its_line() -> None:
    bound = StageBound("llm", ongoing=1, queued=1, retry_after_ms=750)
    await bound.take()  # the one place
    waiter = asyncio.create_task(bound.take())
    await asyncio.sleep(0)
    assert (bound.running, bound.waiting) == (1, 1)
    with pytest.raises(OverloadedError) as refused:
        await bound.take()
    assert refused.value.code is ErrorCode.OVERLOADED
    assert refused.value.retry_after_ms == 750 and refused.value.stage == "llm"
    bound.give_back()
    async with asyncio.timeout(HANG):
        await waiter  # the one in line got the place
    assert (bound.running, bound.waiting) == (1, 0)
    bound.give_back()
    assert bound.running == 0


async def test_a_call_that_leaves_the_line_frees_its_spot() -> None:
    bound = StageBound("tts", ongoing=1, queued=1)
    await bound.take()
    waiter = asyncio.create_task(bound.take())
    await asyncio.sleep(0)
    waiter.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiter
    assert (bound.running, bound.waiting) == (1, 0)
    bound.give_back()
    async with asyncio.timeout(HANG):
        await bound.take()  # the place came back, not to the one that left
    bound.give_back()


def test_a_bound_needs_a_place() -> None:
    with pytest.raises(ValueError, match="ongoing >= 1"):
        StageBound("stt", ongoing=0, queued=4)


async def test_a_stream_holds_its_place_until_it_ends_and_is_counted() -> None:
    calls = StageCalls()
    llm = bounded_stage(ScriptedLLM(["a", "b"]), StageBound("llm", 1, 0), calls)
    assert isinstance(llm, BoundedLanguageModel)
    stream = llm.generate(request())
    assert await anext(stream) == "a"
    assert calls.counts["llm"].in_flight == 1
    with pytest.raises(OverloadedError):  # the one place is held, and no line
        await anext(llm.generate(request(1)))
    assert calls.counts["llm"].refused == 1 and calls.counts["llm"].in_flight == 1
    assert [item async for item in stream] == ["b"]
    assert calls.counts["llm"].in_flight == 0
    assert [item async for item in llm.generate(request(2))] == ["a", "b"]  # free again
    assert calls.counts["llm"].calls == 3  # the refused one too, as a remote call counts


async def test_a_consumer_that_leaves_early_gives_its_place_back() -> None:
    llm = bounded_stage(ScriptedLLM(["a", "b", "c"]), StageBound("llm", 1, 0))
    stream = llm.generate(request())
    assert await anext(stream) == "a"
    await stream.aclose()
    assert [item async for item in llm.generate(request(1))] == ["a", "b", "c"]


async def test_the_engines_errors_pass_as_they_are_and_free_the_place() -> None:
    llm = bounded_stage(ScriptedLLM(["a", "b"], fail_at=1), StageBound("llm", 1, 0))
    with pytest.raises(EngineError) as failed:
        _ = [item async for item in llm.generate(request())]
    assert failed.value.code is ErrorCode.LLM_FAILED
    with pytest.raises(EngineError):  # the place was given back: the call runs (and fails)
        _ = [item async for item in llm.generate(request(1))]


async def test_the_window_joins_text_deltas_after_the_eager_ones() -> None:
    window = {"max_items": 16, "max_wait_s": 0.05, "eager_items": 2}
    llm = bounded_stage(ScriptedLLM(["a", "b", "c", "d"]), StageBound("llm", 1, 0),
                        window=window)
    assert [item async for item in llm.generate(request())] == ["a", "b", "cd"]
    usage = [item async for item in llm.generate_with_usage(request(1))]
    assert usage[:3] == ["a", "b", "cd"] and isinstance(usage[-1], GenerationUsage)
    plain = bounded_stage(ScriptedLLM(["a", "b", "c"]), StageBound("llm", 1, 0))
    assert [item async for item in plain.generate(request(2))] == ["a", "b", "c"]


async def test_a_synthesizer_says_what_its_engine_learned_when_loaded() -> None:
    tts = bounded_stage(ScriptedTTS(sample_rate=22050, chunks_per_piece=2),
                        StageBound("tts", 2, 2), settings={"voice": "joe", "key": "secret"})
    assert isinstance(tts, BoundedSynthesizer)
    await tts.load()
    assert tts.sample_rate == 22050 and tts.name == "scripted-tts"
    chunks = [c async for c in tts.synthesize(SynthesisRequest(text="Hello there."))]
    assert len(chunks) == 2 and {c.sample_rate for c in chunks} == {22050}
    info = await tts.describe()
    assert info["stage"] == "tts" and info["sample_rate"] == 22050
    assert info["voice"] == "joe" and "key" not in info  # never the options at large
    assert tts.ready
