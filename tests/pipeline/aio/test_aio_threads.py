"""The one thread bridge: a blocking iterator on a worker thread, consumed as an async stream.

Every engine with a blocking model streams through it, so its contract is tested here on
plain generators: order, the buffer bound, errors, cancellation (the worker stops and the
generator's cleanup runs on the worker thread), abort, executor reuse, closed loops.
Waits are bounded: a broken bridge fails a test, it never hangs one.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from pipeline.aio import ThreadStream, iterate_in_thread

HANG = 10.0  # seconds; only reached when something hangs


@dataclass
class Probe:
    """A generator's view of its own life: what it made, where, how it ended."""

    produced: int = 0
    made_on: set[int] = field(default_factory=set)
    ended: str | None = None  # "done", "cancelled"
    closed_on: int | None = None
    at_gate: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def numbers(self, count: int, *, gate_at: int | None = None, fail_at: int | None = None
                ) -> Iterator[int]:
        self.made_on.add(threading.get_ident())
        try:
            for n in range(count):
                if n == gate_at:
                    self.at_gate.set()
                    self.release.wait(HANG)
                if n == fail_at:
                    raise ValueError(f"failed at {n}")
                self.made_on.add(threading.get_ident())
                self.produced += 1
                yield n
            self.ended = "done"
        except GeneratorExit:
            self.ended = "cancelled"
            raise
        finally:
            self.closed_on = threading.get_ident()


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(int(HANG / 0.002)):
        if condition():
            return
        await asyncio.sleep(0.002)
    raise AssertionError("the condition never came true")


async def joined(stream: ThreadStream[Any]) -> bool:
    """Wait (bounded) for the stream's worker to leave; True when it has."""
    async with asyncio.timeout(HANG):
        await stream.wait()
    return stream.done()


async def test_items_arrive_in_order_and_the_stream_ends() -> None:
    probe = Probe()
    stream = iterate_in_thread(lambda: probe.numbers(50), buffer=4)
    assert [n async for n in stream] == list(range(50))
    assert probe.ended == "done" and stream.closed
    assert await joined(stream) and stream.done()
    assert threading.get_ident() not in probe.made_on  # never on the event loop


async def test_a_plain_iterable_works_too() -> None:
    assert [n async for n in iterate_in_thread(lambda: [3, 1, 2])] == [3, 1, 2]


@pytest.mark.parametrize("buffer", [1, 3])
async def test_at_most_buffer_items_wait_for_the_consumer(buffer: int) -> None:
    probe = Probe()
    stream = iterate_in_thread(lambda: probe.numbers(100), buffer=buffer)
    async with contextlib.aclosing(stream):
        # The worker fills the buffer, makes one more item and waits for room for it.
        await until(lambda: probe.produced == buffer + 1)
        await asyncio.sleep(0.1)
        assert probe.produced == buffer + 1
        assert await anext(stream) == 0
        await until(lambda: probe.produced == buffer + 2)
        await asyncio.sleep(0.05)
        assert probe.produced == buffer + 2


async def test_without_a_bound_the_worker_runs_ahead() -> None:
    probe = Probe()
    stream = iterate_in_thread(lambda: probe.numbers(200), buffer=None)
    await until(lambda: probe.ended == "done")
    assert [n async for n in stream] == list(range(200))


async def test_an_error_comes_after_the_items_before_it() -> None:
    probe = Probe()
    stream = iterate_in_thread(lambda: probe.numbers(10, fail_at=4), buffer=2)
    got: list[int] = []
    with pytest.raises(ValueError, match="failed at 4"):
        async for n in stream:
            got.append(n)
    assert got == [0, 1, 2, 3]
    assert stream.closed and await joined(stream)


async def test_an_error_in_produce_itself_reaches_the_consumer() -> None:
    def produce() -> Iterator[int]:
        raise LookupError("no model")

    with pytest.raises(LookupError, match="no model"):
        await anext(iterate_in_thread(produce))


async def test_aclose_stops_the_worker_and_closes_the_generator_on_its_thread() -> None:
    probe = Probe()
    stream = iterate_in_thread(lambda: probe.numbers(1000), buffer=1)
    assert await anext(stream) == 0
    await stream.aclose()
    assert await joined(stream)
    assert probe.ended == "cancelled"
    assert probe.closed_on in probe.made_on  # the worker thread, not the loop
    assert probe.closed_on != threading.get_ident()
    assert probe.produced <= 3  # the one taken, one waiting, one made before the stop
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    await stream.aclose()  # idempotent


async def test_a_cancelled_consumer_task_stops_the_worker() -> None:
    probe = Probe()
    got_first = asyncio.Event()

    async def consume() -> None:
        stream = iterate_in_thread(lambda: probe.numbers(1000, gate_at=1), buffer=1)
        async with contextlib.aclosing(stream):
            async for _ in stream:
                got_first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_first.wait(), HANG)
    await until(probe.at_gate.is_set)
    task.cancel()  # the consumer waits for item 1, which waits for the gate
    with pytest.raises(asyncio.CancelledError):
        await task
    assert probe.ended is None  # the item in progress cannot be interrupted ...
    probe.release.set()
    await until(lambda: probe.ended is not None)
    assert probe.ended == "cancelled"  # ... but nothing after it is made
    assert probe.produced == 2 and probe.closed_on in probe.made_on


async def test_break_leaves_the_stream_like_aclose() -> None:
    probe = Probe()
    stream = iterate_in_thread(lambda: probe.numbers(1000))
    async with contextlib.aclosing(stream):
        async for n in stream:
            if n == 2:
                break
    await joined(stream)
    assert probe.ended == "cancelled" and probe.produced <= 5


async def test_aclose_waits_for_the_worker_at_most_join_timeout() -> None:
    probe = Probe()
    stream = iterate_in_thread(lambda: probe.numbers(10, gate_at=1), join_timeout_s=0.2)
    assert await anext(stream) == 0
    await until(probe.at_gate.is_set)
    started = time.perf_counter()
    await stream.aclose()  # the worker is stuck in item 1: aclose gives up after 0.2 s
    assert 0.15 <= time.perf_counter() - started < 2.0
    assert not stream.done()
    probe.release.set()
    assert await joined(stream) and probe.ended == "cancelled"

    quick = Probe()
    stream = iterate_in_thread(lambda: quick.numbers(1000), join_timeout_s=HANG)
    await anext(stream)
    await stream.aclose()  # returns as soon as the worker has left
    assert stream.done() and quick.ended == "cancelled"


async def test_abort_ends_the_stream_with_an_error_after_the_waiting_items() -> None:
    probe = Probe()
    stream = iterate_in_thread(lambda: probe.numbers(1000), buffer=3)
    await until(lambda: probe.produced == 4)  # three waiting, one made
    stream.abort(ConnectionAbortedError("engine closed"))
    got = []
    with pytest.raises(ConnectionAbortedError):
        async for n in stream:
            got.append(n)
    assert got == [0, 1, 2]
    assert await joined(stream)
    assert probe.ended == "cancelled" and probe.closed_on in probe.made_on
    stream.abort(RuntimeError("too late"))  # nothing happens once the consumer is done
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


async def test_one_executor_thread_runs_every_stream_in_order() -> None:
    with ThreadPoolExecutor(max_workers=1) as executor:
        first, second = Probe(), Probe()
        a = iterate_in_thread(lambda: first.numbers(5, gate_at=2), executor=executor)
        b = iterate_in_thread(lambda: second.numbers(5), executor=executor)
        await asyncio.sleep(0.05)
        assert second.produced == 0  # queued behind the first on the one thread
        first.release.set()
        assert [n async for n in a] == [n async for n in b] == list(range(5))
        # created and driven on the same single thread: thread-affine code is safe
        assert len(first.made_on) == 1 and first.made_on == second.made_on
        assert first.closed_on in first.made_on


async def test_a_stream_left_before_its_worker_started_never_runs() -> None:
    with ThreadPoolExecutor(max_workers=1) as executor:
        busy, queued = Probe(), Probe()
        a = iterate_in_thread(lambda: busy.numbers(3, gate_at=0), executor=executor)
        calls: list[int] = []

        def produce() -> Iterator[int]:
            calls.append(1)
            return queued.numbers(3)

        b = iterate_in_thread(produce, executor=executor)
        await b.aclose()
        busy.release.set()
        assert [n async for n in a] == [0, 1, 2]
        assert await joined(b)
        assert calls == [] and not b.started and queued.produced == 0


async def test_a_shut_down_executor_is_refused_or_reported() -> None:
    executor = ThreadPoolExecutor(max_workers=1)
    gate = Probe()
    running = iterate_in_thread(lambda: gate.numbers(2, gate_at=0), executor=executor)
    queued = iterate_in_thread(lambda: Probe().numbers(2), executor=executor)
    await until(gate.at_gate.is_set)  # running, so the shutdown cancels only the queued one
    executor.shutdown(wait=False, cancel_futures=True)
    with pytest.raises(RuntimeError):
        iterate_in_thread(lambda: [1], executor=executor)
    with pytest.raises(RuntimeError, match="shut down"):
        await asyncio.wait_for(anext(queued), HANG)  # never started: told so, not left hanging
    gate.release.set()
    assert [n async for n in running] == [0, 1]


async def test_a_dedicated_thread_is_named_and_joined() -> None:
    names: list[str] = []

    def produce() -> Iterator[str]:
        names.append(threading.current_thread().name)
        yield "x"

    stream = iterate_in_thread(produce, thread_name="unit-worker-1")
    assert [x async for x in stream] == ["x"]
    assert await joined(stream)
    assert names == ["unit-worker-1"]
    assert not [t for t in threading.enumerate() if t.name == "unit-worker-1"]


async def test_a_dropped_stream_stops_its_worker() -> None:
    probe = Probe()
    stream: ThreadStream[int] | None = iterate_in_thread(lambda: probe.numbers(1000))
    assert stream is not None and await anext(stream) == 0
    del stream
    gc.collect()
    await until(lambda: probe.ended is not None)
    assert probe.ended == "cancelled"


async def test_the_stop_event_is_set_for_blocking_calls_that_poll_it() -> None:
    stop = threading.Event()
    polled: list[bool] = []
    waiting = threading.Event()

    def produce() -> Iterator[int]:
        yield 0
        waiting.set()
        polled.append(stop.wait(HANG))  # a long call with a progress callback, say
        yield 1

    stream = iterate_in_thread(produce, stop=stop, buffer=2)
    assert await anext(stream) == 0
    await until(waiting.is_set)
    await stream.aclose()
    assert await joined(stream) and polled == [True]


def test_a_closed_event_loop_never_crashes_the_worker() -> None:
    probe = Probe()
    loop = asyncio.new_event_loop()

    async def start() -> ThreadStream[int]:
        stream = iterate_in_thread(lambda: probe.numbers(1000, gate_at=1), buffer=None)
        assert await anext(stream) == 0
        return stream

    stream = loop.run_until_complete(start())
    loop.close()  # the consumer's loop is gone while the worker computes item 1
    failures: list[BaseException] = []
    previous, threading.excepthook = threading.excepthook, lambda a: failures.append(a.exc_value)
    try:
        probe.release.set()
        deadline = time.monotonic() + HANG
        while probe.ended is None and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        threading.excepthook = previous
    assert probe.ended == "cancelled" and failures == []
    assert stream.closed is False  # nobody consumed it: the worker alone noticed


async def test_buffer_must_hold_an_item() -> None:
    with pytest.raises(ValueError):
        iterate_in_thread(lambda: [1], buffer=0)


async def test_abort_wakes_a_consumer_that_is_waiting() -> None:
    probe = Probe()
    stream = iterate_in_thread(lambda: probe.numbers(5, gate_at=1))
    assert await anext(stream) == 0
    waiting = asyncio.create_task(anext(stream))  # item 1 waits for the gate
    await until(probe.at_gate.is_set)
    stream.abort(ConnectionAbortedError("engine closed"))
    with pytest.raises(ConnectionAbortedError):
        await asyncio.wait_for(waiting, HANG)
    probe.release.set()
    assert await joined(stream) and probe.ended == "cancelled"
