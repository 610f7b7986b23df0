"""The llama.cpp engine's parallel sequences, with the real packaged Gemma 3 270M on CPU.

Several requests decoded together must be invisible to each of them: the same replies as
one at a time (greedy), a failure or a cancel that stays with its own request, and a
bounded queue that refuses with a code. By default (``decode_together=1``) the replies'
first pieces take their steps one at a time, oldest first, their tails together after,
and a reply nobody reads holds up no other.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from pipeline.engines.llm._llama_cpp_parallel import HEAD_TOKENS
from pipeline.engines.llm.llama_cpp import LlamaCppLanguageModel
from schemas import (
    ChatMessage,
    EngineError,
    ErrorCode,
    GenerationRequest,
    GenerationUsage,
    OverloadedError,
    SamplingSettings,
)
from tests.support.llama_model import counting, with_model

_module_loop = pytest.mark.asyncio(loop_scope="module")

N_CTX = 512
QUESTIONS = (
    "What is the capital of Italy?",
    "How many legs does a spider have?",
    "Who wrote Romeo and Juliet?",
    "What do bees make?",
)


def _ask(i: int, question: str, **sampling: object) -> GenerationRequest:
    return GenerationRequest(
        request_id=f"q{i}",
        messages=(
            ChatMessage(role="system", content="You are Voxline, a friendly voice assistant."),
            ChatMessage(role="user", content=question),
        ),
        sampling=SamplingSettings.model_validate(
            {"temperature": 0.0, "max_tokens": 40, **sampling}
        ),
    )


async def _text(engine: LlamaCppLanguageModel, request: GenerationRequest) -> str:
    return "".join([delta async for delta in engine.generate(request)])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engines() -> AsyncIterator[tuple[LlamaCppLanguageModel, LlamaCppLanguageModel]]:
    """The voice defaults (worked examples, one line), one at a time and 4 together (every
    running reply in each step)."""
    serial = LlamaCppLanguageModel(n_ctx=N_CTX, n_threads=1, parallel_sequences=1)
    parallel = LlamaCppLanguageModel(n_ctx=N_CTX, n_threads=1, parallel_sequences=4,
                                     decode_together=None, max_waiting=1)
    await serial.load()
    await parallel.load()
    try:
        yield serial, parallel
    finally:
        await serial.close()
        await parallel.close()


@with_model
@_module_loop
async def test_replies_are_the_same_with_parallel_sequences_on_and_off(
    engines: tuple[LlamaCppLanguageModel, LlamaCppLanguageModel],
) -> None:
    serial, parallel = engines
    alone = [await _text(serial, _ask(i, q)) for i, q in enumerate(QUESTIONS)]
    together = await asyncio.gather(*(_text(parallel, _ask(i, q)) for i, q in enumerate(QUESTIONS)))
    assert list(together) == alone
    assert "Rome" in alone[0] and "honey" in alone[3]
    # Again, now that every sequence's cache holds a prompt of its own (prefix reuse).
    again = await asyncio.gather(
        *(_text(parallel, _ask(i, q)) for i, q in reversed(list(enumerate(QUESTIONS))))
    )
    assert list(again) == alone[::-1]
    assert not parallel.busy


@with_model
@_module_loop
async def test_an_over_long_prompt_fails_that_request_only(
    engines: tuple[LlamaCppLanguageModel, LlamaCppLanguageModel],
) -> None:
    serial, parallel = engines
    expected = [await _text(serial, _ask(i, q)) for i, q in enumerate(QUESTIONS[:2])]
    results = await asyncio.gather(
        _text(parallel, _ask(0, QUESTIONS[0])),
        _text(parallel, _ask(9, "word " * (N_CTX * 2))),
        _text(parallel, _ask(1, QUESTIONS[1])),
        return_exceptions=True,
    )
    assert [results[0], results[2]] == expected
    err = results[1]
    assert isinstance(err, EngineError) and err.code is ErrorCode.LLM_FAILED
    assert err.details["reason"] == "context_overflow"
    assert err.details["prompt_tokens"] > err.details["n_ctx"] == N_CTX  # per sequence
    assert not parallel.busy


@with_model
@_module_loop
async def test_cancelling_one_stream_never_cancels_another(
    engines: tuple[LlamaCppLanguageModel, LlamaCppLanguageModel],
) -> None:
    _, parallel = engines
    expected = [item async for item in parallel.generate_with_usage(counting("b", max_tokens=24))]
    a = parallel.generate(counting("a", max_tokens=400))
    b = parallel.generate_with_usage(counting("b", max_tokens=24))
    got_b = [await anext(b)]
    assert await anext(a)
    a_stats = parallel.last_stats
    await a.aclose()  # leaves mid-reply while b decodes beside it
    assert a_stats is not None and a_stats.request_id == "a"
    assert a_stats.finish_reason == "cancelled" and a_stats.worker_done
    got_b += [item async for item in b]
    assert got_b == expected  # the same text, tokens and finish as alone
    assert isinstance(got_b[-1], GenerationUsage) and got_b[-1].completion_tokens > 3
    assert not parallel.busy

async def _all_busy_and_one_waiting(parallel: LlamaCppLanguageModel) -> tuple[
    list[AsyncGenerator[object, None]], AsyncGenerator[object, None], asyncio.Task[object], Any
]:
    """Four long replies holding the four sequences, and a fifth waiting for one."""
    running: list[AsyncGenerator[object, None]] = [
        parallel.generate(counting(f"r{i}", max_tokens=400)) for i in range(4)
    ]
    for stream in running:
        assert await anext(stream)
    waiting: AsyncGenerator[object, None] = parallel.generate(counting("w", max_tokens=400))
    waiter: asyncio.Task[object] = asyncio.create_task(anext(waiting))
    scheduler = parallel._scheduler
    assert scheduler is not None
    await asyncio.sleep(0)  # the waiter's first step: it submits, and waits for a sequence
    assert len(scheduler._waiting) == 1
    return running, waiting, waiter, scheduler


@with_model
@_module_loop
async def test_a_full_queue_refuses_with_a_code(
    engines: tuple[LlamaCppLanguageModel, LlamaCppLanguageModel],
) -> None:
    """4 sequences decoding and max_waiting=1 waiting: the sixth is refused at once."""
    _, parallel = engines
    running, waiting, waiter, _ = await _all_busy_and_one_waiting(parallel)
    refused = parallel.generate(counting("refused", max_tokens=4))
    with pytest.raises(OverloadedError) as info:
        await anext(refused)
    assert info.value.code is ErrorCode.OVERLOADED and info.value.transient
    assert info.value.details["reason"] == "llm_queue_full"
    # The waiting one is served once a sequence is free; the others are untouched.
    await running[0].aclose()
    assert await waiter
    for stream in (*running[1:], waiting):
        assert await anext(stream)
        await stream.aclose()
    assert not parallel.busy
    assert await _text(parallel, counting("after", max_tokens=3))


@with_model
@_module_loop
async def test_a_request_cancelled_while_waiting_leaves_no_trace(
    engines: tuple[LlamaCppLanguageModel, LlamaCppLanguageModel],
) -> None:
    _, parallel = engines
    running, waiting, waiter, scheduler = await _all_busy_and_one_waiting(parallel)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await waiting.aclose()
    assert not scheduler._waiting
    stats = parallel.last_stats
    assert stats is not None and stats.request_id == "w"
    assert stats.finish_reason == "cancelled" and stats.worker_done
    for stream in running:
        assert await anext(stream)
        await stream.aclose()
    assert not parallel.busy


def _turns(name: str, *lines: str) -> GenerationRequest:
    """A dialogue after the voice system message: user and assistant lines by turns."""
    roles = ("user", "assistant")
    return GenerationRequest(
        request_id=name,
        messages=(
            ChatMessage(role="system", content="You are Voxline, a friendly voice assistant."),
            *(ChatMessage(role=roles[i % 2], content=line) for i, line in enumerate(lines)),
        ),
        sampling=SamplingSettings(temperature=0.0, max_tokens=24),
    )


@with_model
@_module_loop
async def test_two_dialogues_by_turns_each_find_their_own_history_cached(
    engines: tuple[LlamaCppLanguageModel, LlamaCppLanguageModel],
) -> None:
    """Dialogues that open the same way (system message, worked examples), turn about:
    the second never takes the first's sequence over, its opening is copied from the
    first's cache rather than evaluated, and every reply is the one-at-a-time one."""
    serial, parallel = engines
    asked: dict[str, tuple[str, ...]] = {
        "a": ("Name a large ocean.",), "b": ("Name a musical instrument.",)
    }
    stats = {}
    for turn in range(2):
        for name in ("a", "b"):
            request = _turns(f"{name}{turn}", *asked[name])
            reply = await _text(parallel, request)
            assert reply == await _text(serial, request)
            stats[name, turn] = parallel.last_stats
            asked[name] += (reply, "And another one?")
    opened = stats["b", 0]
    assert opened is not None and opened.cached_tokens is not None
    assert opened.cached_tokens > 40  # the system message and worked examples: a's
    for name in ("a", "b"):
        first, second = stats[name, 0], stats[name, 1]
        assert first is not None and first.prompt_tokens is not None and second is not None
        # all of the first turn's prompt and most of its reply were still cached
        assert second.cached_tokens is not None and second.cached_tokens > first.prompt_tokens


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def oldest_first() -> AsyncIterator[LlamaCppLanguageModel]:
    """Four sequences, first pieces one at a time (the default ``decode_together=1``)."""
    engine = LlamaCppLanguageModel(n_ctx=N_CTX, n_threads=1, parallel_sequences=4)
    await engine.load()
    try:
        yield engine
    finally:
        await engine.close()


def _steps_of(engine: LlamaCppLanguageModel) -> list[list[str]]:
    """From now on, the request ids of each decoding step of ``engine``'s scheduler."""
    scheduler = engine._scheduler
    assert scheduler is not None
    steps: list[list[str]] = []
    step = scheduler._step

    def recorded(runnable: list[Any]) -> None:
        steps.append([request.stats.request_id for request in runnable])
        step(runnable)

    scheduler._step = recorded  # type: ignore[method-assign]
    return steps


@with_model
@_module_loop
async def test_first_pieces_go_one_at_a_time_in_the_order_they_came(
    engines: tuple[LlamaCppLanguageModel, LlamaCppLanguageModel],
    oldest_first: LlamaCppLanguageModel,
) -> None:
    serial, parallel = engines
    asks = [counting(f"c{i}", max_tokens=24) for i in range(3)]
    alone = [await _text(serial, ask) for ask in asks]
    steps = _steps_of(oldest_first)
    replies = await asyncio.gather(*(_text(oldest_first, ask) for ask in asks))
    assert list(replies) == alone
    seen: dict[str, int] = {}  # each request's steps so far: its first HEAD_TOKENS, alone
    for ids in steps:
        for request_id in ids:
            seen[request_id] = seen.get(request_id, 0) + 1
            if seen[request_id] <= HEAD_TOKENS:
                assert ids == [request_id], (request_id, steps)
    assert list(seen) == ["c0", "c1", "c2"]  # begun in the order they came
    assert max(len(ids) for ids in steps) > 1  # past their first pieces, together
    # decode_together unset: every running reply shares each step
    shared = _steps_of(parallel)
    await asyncio.gather(*(_text(parallel, ask) for ask in asks))
    assert max(len(ids) for ids in shared) == 3


@with_model
@_module_loop
async def test_a_reply_nobody_reads_holds_up_no_other(oldest_first: LlamaCppLanguageModel) -> None:
    expected = [item async for item in oldest_first.generate_with_usage(
        counting("b", max_tokens=24))]
    unread = oldest_first.generate(counting("a", max_tokens=400))
    assert await anext(unread)  # the oldest: it decodes until its queue is full, then waits
    got = [item async for item in oldest_first.generate_with_usage(counting("b", max_tokens=24))]
    assert got == expected
    await unread.aclose()
    assert not oldest_first.busy
