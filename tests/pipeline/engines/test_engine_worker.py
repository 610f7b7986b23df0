"""ModelWorker: the thread an engine's model lives on, and the streams running on it.

Plain generators stand in for models, so what the engines rely on is checked without
one: calls and streams share one thread in order, ``busy`` follows the worker (not the
consumer), ``close()`` ends running streams with a transient error and refuses new work,
and a worker with a thread per stream names and joins its threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

import pytest

from pipeline.engines._worker import ModelWorker
from schemas import EngineError, ErrorCode

HANG = 10.0


def gated(gate: threading.Event, entered: threading.Event, count: int = 3) -> Iterator[int]:
    """Yields 0, then waits for ``gate`` (a model step that takes a while), then the rest."""
    yield 0
    entered.set()
    gate.wait(HANG)
    yield from range(1, count)


async def settle(condition: object) -> None:
    for _ in range(int(HANG / 0.005)):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.005)
    raise AssertionError("never settled")


async def test_calls_and_streams_share_the_one_model_thread() -> None:
    worker = ModelWorker("unit", "stt", thread_name="unit-model")
    worker.start()
    try:
        loaded_on = await worker.call(threading.get_ident)
        seen: list[int] = []

        def produce() -> Iterator[int]:
            seen.append(threading.get_ident())
            yield 1

        stream = worker.stream(produce, buffer=None)
        assert [n async for n in stream] == [1]
        assert seen == [loaded_on] != [threading.get_ident()]
    finally:
        await worker.close()


async def test_busy_follows_the_worker_and_serving_the_consumer() -> None:
    worker = ModelWorker("unit", "stt", thread_name="unit-busy")
    worker.start()
    gate, entered = threading.Event(), threading.Event()
    stream = worker.stream(lambda: gated(gate, entered), buffer=None)
    assert await anext(stream) == 0
    await settle(entered.is_set)
    assert worker.busy and worker.serving == 1
    await stream.aclose()  # the consumer has left at once ...
    assert worker.serving == 0
    assert worker.busy  # ... the model step in progress has not
    gate.set()
    await settle(lambda: not worker.busy)
    await worker.close()


async def test_close_ends_running_and_queued_streams_with_a_transient_error() -> None:
    worker = ModelWorker("unit", "llm", thread_name="unit-close")
    worker.start()
    gate, entered = threading.Event(), threading.Event()
    running = worker.stream(lambda: gated(gate, entered), buffer=None)
    queued = worker.stream(lambda: iter([7]), buffer=None)
    assert await anext(running) == 0
    await settle(entered.is_set)
    closing = asyncio.create_task(worker.close())  # waits for the worker to leave the model
    for stream in (running, queued):
        with pytest.raises(EngineError) as info:
            await asyncio.wait_for(anext(stream), HANG)
        assert info.value.transient and info.value.code is ErrorCode.LLM_FAILED
    assert not closing.done()
    gate.set()
    await asyncio.wait_for(closing, HANG)
    assert not worker.busy and not queued.started
    with pytest.raises(EngineError, match="closed"):
        worker.stream(lambda: iter([1]), buffer=None)
    worker.start()  # open again, as an engine's load() after close() does
    assert [n async for n in worker.stream(lambda: iter([1]), buffer=None)] == [1]
    await worker.close()


async def test_a_thread_per_stream_runs_streams_side_by_side() -> None:
    worker = ModelWorker("unit", "tts", thread_name="unit-tts", shared=False)
    gate = threading.Event()
    first_in, second_in = threading.Event(), threading.Event()
    first = worker.stream(lambda: gated(gate, first_in), buffer=1)
    second = worker.stream(lambda: gated(gate, second_in), buffer=1)
    async with contextlib.aclosing(first), contextlib.aclosing(second):
        assert await anext(first) == await anext(second) == 0
        await settle(lambda: first_in.is_set() and second_in.is_set())  # both at once
        assert worker.active == 2
        pool = [t for t in threading.enumerate() if t.name.startswith("unit-tts")]
        assert len(pool) == 2
    gate.set()
    async with asyncio.timeout(HANG):
        await worker.wait_idle()
    assert worker.active == 0
    # the threads stay for the next streams, under the engine's name (CPU by thread)
    assert [t for t in threading.enumerate() if t.name.startswith("unit-tts")] == pool
    await worker.close()  # nothing running: its threads end, and the worker stays usable
    assert not any(t.is_alive() for t in pool)
    assert [n async for n in worker.stream(lambda: iter([5]), buffer=1)] == [5]
    await worker.close()
