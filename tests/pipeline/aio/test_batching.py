"""``batched``: the first item alone, then batches bounded by count and by a time window.

No assertion depends on how long anything took: the fake source is held at gates the
test opens, so which items can share a batch is fixed by the test, and the assertions are
on the grouping. Waits only bound a hang (``asyncio.wait_for``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.aio import batched
from schemas import EngineError, ErrorCode
from tests.support.gated_source import GatedSource, finish

T = TypeVar("T")

HANG = 5.0  # seconds; only ever reached when the code under test hangs


async def next_batch(batches: AsyncIterator[list[int]]) -> list[int]:
    return await asyncio.wait_for(anext(batches), HANG)


async def collect(batches: AsyncIterator[list[int]]) -> list[list[int]]:
    async def run() -> list[list[int]]:
        return [batch async for batch in batches]

    return await asyncio.wait_for(run(), HANG)


def expected_instant(items: list[int], max_items: int) -> list[list[int]]:
    """The grouping of a source that has everything ready at once."""
    if not items:
        return []
    rest = items[1:]
    return [items[:1]] + [rest[i : i + max_items] for i in range(0, len(rest), max_items)]


# --- the first item ---------------------------------------------------------------------


async def test_first_item_goes_out_alone_without_waiting_for_the_window() -> None:
    # The source hands out one item and then stalls forever; with a window of a minute,
    # the first batch can only arrive now if it is not held for the window.
    source = GatedSource([1, 2], gates=[1])
    batches = batched(source.stream(), max_items=8, max_wait_s=60)
    assert await next_batch(batches) == [1]
    assert source.waiting.is_set()
    await finish(batches.aclose())


async def test_first_batch_is_alone_even_when_more_items_are_ready() -> None:
    batches = batched(GatedSource(range(5)).stream(), max_items=8, max_wait_s=60)
    assert await collect(batches) == [[0], [1, 2, 3, 4]]


async def test_the_eager_items_go_out_alone_then_batching_starts() -> None:
    batches = batched(GatedSource(range(8)).stream(), max_items=8, max_wait_s=60, eager_items=3)
    assert await collect(batches) == [[0], [1], [2], [3, 4, 5, 6, 7]]


async def test_no_eager_item_batches_the_first_one_too() -> None:
    batches = batched(GatedSource(range(5)).stream(), max_items=2, max_wait_s=60, eager_items=0)
    assert await collect(batches) == [[0, 1], [2, 3], [4]]


async def test_an_eager_item_never_waits_for_the_window() -> None:
    source = GatedSource([1, 2, 3], gates=[2])
    batches = batched(source.stream(), max_items=8, max_wait_s=60, eager_items=2)
    assert await next_batch(batches) == [1]
    assert await next_batch(batches) == [2]
    assert source.waiting.is_set()
    await finish(batches.aclose())


# --- later batches ----------------------------------------------------------------------


async def test_later_batches_are_bounded_by_max_items() -> None:
    batches = batched(GatedSource(range(11)).stream(), max_items=3, max_wait_s=60)
    assert await collect(batches) == [[0], [1, 2, 3], [4, 5, 6], [7, 8, 9], [10]]


async def test_items_that_arrive_while_a_batch_waits_join_it() -> None:
    # Every item is a separate step of the event loop; the window never closes, so only
    # the count closes a batch.
    source = GatedSource(range(8), yield_between=True)
    batches = batched(source.stream(), max_items=3, max_wait_s=60)
    assert await collect(batches) == [[0], [1, 2, 3], [4, 5, 6], [7]]


async def test_a_batch_closes_when_its_window_closes() -> None:
    # Items 1 and 2 are ready, then the source stalls before item 3 until the test opens
    # the gate: the batch [1, 2] can only come out because its window closed.
    source = GatedSource(range(6), gates=[3])
    batches = batched(source.stream(), max_items=10, max_wait_s=0.01)
    assert await next_batch(batches) == [0]
    assert await next_batch(batches) == [1, 2]
    assert source.waiting.is_set()
    source.open(3)
    assert await collect(batches) == [[3, 4, 5]]
    assert source.outcome == "completed"


async def test_the_window_does_not_hold_a_single_late_item_forever() -> None:
    source = GatedSource([0, 1, 2], gates=[2])
    batches = batched(source.stream(), max_items=10, max_wait_s=0.01)
    assert await next_batch(batches) == [0]
    assert await next_batch(batches) == [1]
    source.open(2)
    assert await collect(batches) == [[2]]


async def test_a_zero_window_hands_out_what_is_ready() -> None:
    batches = batched(GatedSource(range(6)).stream(), max_items=2, max_wait_s=0)
    assert await collect(batches) == [[0], [1, 2], [3, 4], [5]]


async def test_an_empty_source_yields_no_batch() -> None:
    source = GatedSource([])
    assert await collect(batched(source.stream())) == []
    assert source.outcome == "completed"


@settings(max_examples=150, deadline=None)
@given(
    items=st.lists(st.integers(), max_size=60),
    max_items=st.integers(min_value=1, max_value=20),
    max_wait_s=st.sampled_from([0.0, 0.001, 60.0]),
)
def test_batches_concatenate_to_the_source_in_order(
    items: list[int], max_items: int, max_wait_s: float
) -> None:
    async def run() -> list[list[int]]:
        return await collect(
            batched(GatedSource(items).stream(), max_items=max_items, max_wait_s=max_wait_s)
        )

    result = asyncio.run(run())
    assert [x for batch in result for x in batch] == items
    assert all(batch for batch in result)
    assert all(len(batch) <= max_items for batch in result)
    # an instant source has everything ready: the grouping is fixed
    assert result == expected_instant(items, max_items)


# --- errors -----------------------------------------------------------------------------


async def test_a_source_error_comes_after_the_items_before_it() -> None:
    source = GatedSource(range(4), fail_after=True)
    batches = batched(source.stream(), max_items=10, max_wait_s=60)
    seen: list[list[int]] = []
    with pytest.raises(EngineError) as info:
        async for batch in batches:
            seen.append(batch)
    assert seen == [[0], [1, 2, 3]]
    assert info.value.code is ErrorCode.LLM_FAILED
    assert source.outcome == "failed"


async def test_a_source_error_after_a_quiet_spell_is_raised_at_once() -> None:
    # The error arrives while nothing is pending: it is the next thing the consumer sees.
    source = GatedSource([0, 1], gates=[1], fail_after=True)
    batches = batched(source.stream(), max_items=10, max_wait_s=0.01)
    assert await next_batch(batches) == [0]
    source.open(1)
    assert await next_batch(batches) == [1]
    with pytest.raises(EngineError):
        await next_batch(batches)


async def test_a_source_that_fails_at_once_raises_before_any_batch() -> None:
    source = GatedSource([], fail_after=True)
    with pytest.raises(EngineError):
        await next_batch(batched(source.stream()))


# --- closing and cancelling -------------------------------------------------------------


async def test_closing_the_consumer_cancels_the_source() -> None:
    before = asyncio.all_tasks()
    source = GatedSource([0, 1], gates=[1])
    batches = batched(source.stream(), max_items=4, max_wait_s=60)
    assert await next_batch(batches) == [0]
    assert source.waiting.is_set()
    await finish(batches.aclose())
    assert source.outcome in ("cancelled", "closed")
    assert source.handed_out == 1
    assert asyncio.all_tasks() == before  # the reading task is gone


async def test_closing_the_consumer_mid_batch_cancels_the_source() -> None:
    # The consumer waits in a batch's window (item 1 taken, item 2 gated) when it is
    # cancelled from outside.
    before = asyncio.all_tasks()
    source = GatedSource([0, 1, 2], gates=[2])
    batches = batched(source.stream(), max_items=4, max_wait_s=60)
    assert await next_batch(batches) == [0]
    consumer = asyncio.ensure_future(anext(batches))
    await asyncio.wait_for(source.waiting.wait(), HANG)
    for _ in range(3):  # let the consumer take item 1 and start waiting
        await asyncio.sleep(0)
    assert not consumer.done()
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await finish(consumer)
    assert source.outcome in ("cancelled", "closed")
    await finish(batches.aclose())
    assert asyncio.all_tasks() == before


async def test_cancelling_the_consuming_task_cancels_the_source() -> None:
    before = asyncio.all_tasks()
    source = GatedSource([0, 1], gates=[1])
    received: list[list[int]] = []

    async def consume() -> None:
        async with contextlib.aclosing(batched(source.stream(), max_wait_s=60)) as batches:
            async for batch in batches:
                received.append(batch)

    task = asyncio.create_task(consume())
    await asyncio.wait_for(source.waiting.wait(), HANG)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await finish(task)
    assert received == [[0]]
    assert source.outcome == "cancelled"
    assert asyncio.all_tasks() == before


async def test_a_cancel_that_lands_while_the_source_aborts_is_not_swallowed() -> None:
    aborting = asyncio.Event()
    release = asyncio.Event()
    went_on = False

    async def slow_to_abort() -> AsyncIterator[int]:
        yield 0
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            aborting.set()
            await release.wait()  # an engine stopping its model call
            raise

    async def consume() -> None:
        nonlocal went_on
        batches = batched(slow_to_abort(), max_wait_s=60)
        await anext(batches)
        await batches.aclose()
        went_on = True

    task = asyncio.create_task(consume())
    await asyncio.wait_for(aborting.wait(), HANG)
    task.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await finish(task)
    assert not went_on


# --- arguments --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_items", "max_wait_s", "eager_items"),
    [(0, 0.04, 1), (-1, 0.04, 1), (16, -0.001, 1), (0, -1.0, 1), (16, 0.04, -1)],
)
async def test_invalid_arguments_raise_value_error(
    max_items: int, max_wait_s: float, eager_items: int
) -> None:
    source = GatedSource([1, 2])
    with pytest.raises(ValueError):
        await anext(batched(source.stream(), max_items=max_items, max_wait_s=max_wait_s,
                            eager_items=eager_items))
    assert source.outcome == "not started"


async def test_limits_of_the_valid_range_are_accepted() -> None:
    batches = batched(GatedSource(range(4)).stream(), max_items=1, max_wait_s=0)
    assert await collect(batches) == [[0], [1], [2], [3]]
