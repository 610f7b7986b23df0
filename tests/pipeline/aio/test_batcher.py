"""``Batcher``: one model call for many callers' items, invisible to each of them.

The wait bound is checked on a virtual clock (the running loop's ``time`` is replaced by
one the test moves), so no assertion depends on how fast this machine is. Waits with
``HANG`` only bound a hang of the code under test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.aio import Batcher
from schemas import EngineError, ErrorCode, OverloadedError, VoxlineError

HANG = 5.0


class Model:
    """A fake batched model: doubles each item, records every call, can be held."""

    def __init__(self, *, bad: set[int] | None = None, raise_whole: bool = True) -> None:
        self.calls: list[list[int]] = []
        self.bad = bad or set()
        self.raise_whole = raise_whole
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()

    async def __call__(self, items: Sequence[int]) -> list[int | BaseException]:
        self.calls.append(list(items))
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.bad & set(items):
            if self.raise_whole:
                raise EngineError("the model choked", code=ErrorCode.STT_FAILED)
            return [
                EngineError(f"bad {i}", code=ErrorCode.STT_FAILED) if i in self.bad else i * 2
                for i in items
            ]
        return [i * 2 for i in items]


class VirtualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def time(self) -> float:
        return self.now


async def settle(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


async def test_a_lone_item_waits_for_company_no_longer_than_its_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = VirtualClock()
    monkeypatch.setattr(asyncio.get_running_loop(), "time", clock.time)
    model = Model()
    batcher: Batcher[int, int] = Batcher(model, max_items=8, max_wait_s=0.02)
    task = asyncio.create_task(batcher.submit(1))
    await settle()
    clock.now += 0.015
    await settle()
    assert model.calls == []  # still inside its wait: company may come
    second = asyncio.create_task(batcher.submit(2))
    clock.now += 0.004  # the first item has waited 19 ms
    await settle()
    assert model.calls == []
    clock.now += 0.002  # 21 ms: past the first item's bound, the batch must go
    await settle()
    assert model.calls == [[1, 2]]
    assert list(await asyncio.wait_for(asyncio.gather(task, second), HANG)) == [2, 4]
    await batcher.aclose()


async def test_a_full_batch_goes_at_once_without_waiting_out_the_window() -> None:
    model = Model()
    batcher: Batcher[int, int] = Batcher(model, max_items=3, max_wait_s=3600)
    results = await asyncio.wait_for(asyncio.gather(*(batcher.submit(i) for i in (1, 2, 3))), HANG)
    assert results == [2, 4, 6] and model.calls == [[1, 2, 3]]
    await batcher.aclose()


async def test_items_that_queue_behind_a_running_batch_share_the_next_call() -> None:
    model = Model()
    model.gate = asyncio.Event()
    batcher: Batcher[int, int] = Batcher(model, max_items=8, max_wait_s=0)
    first = asyncio.create_task(batcher.submit(1))
    await asyncio.wait_for(model.started.wait(), HANG)
    rest = [asyncio.create_task(batcher.submit(i)) for i in (2, 3, 4)]
    await settle()
    assert batcher.pending == 3
    model.gate.set()
    assert await asyncio.wait_for(asyncio.gather(first, *rest), HANG) == [2, 4, 6, 8]
    assert model.calls == [[1], [2, 3, 4]]
    assert batcher.stats.batches == 2 and batcher.stats.largest == 3
    await batcher.aclose()


@settings(max_examples=40, deadline=None)
@given(
    items=st.lists(st.integers(-1000, 1000), min_size=1, max_size=30),
    max_items=st.integers(1, 9),
)
def test_every_caller_gets_its_own_result_whatever_the_grouping(
    items: list[int], max_items: int
) -> None:
    async def run() -> tuple[list[int], list[list[int]]]:
        model = Model()
        batcher: Batcher[int, int] = Batcher(model, max_items=max_items, max_wait_s=0.001)
        results = await asyncio.wait_for(asyncio.gather(*(batcher.submit(i) for i in items)), HANG)
        await batcher.aclose()
        return results, model.calls

    results, calls = asyncio.run(run())
    assert results == [i * 2 for i in items]
    assert [i for call in calls for i in call] == items  # submission order, nothing twice
    assert all(1 <= len(call) <= max_items for call in calls)


@pytest.mark.parametrize("raise_whole", [True, False])
async def test_one_items_failure_fails_that_item_only(raise_whole: bool) -> None:
    model = Model(bad={3}, raise_whole=raise_whole)
    batcher: Batcher[int, int] = Batcher(model, max_items=4, max_wait_s=3600)
    results = await asyncio.wait_for(
        asyncio.gather(*(batcher.submit(i) for i in (1, 2, 3, 4)), return_exceptions=True),
        HANG,
    )
    assert results[:2] == [2, 4] and results[3] == 8
    assert isinstance(results[2], EngineError) and results[2].code == ErrorCode.STT_FAILED
    assert batcher.stats.split_after_failure == (1 if raise_whole else 0)
    await batcher.aclose()


async def test_a_cancelled_callers_waiting_item_never_reaches_the_model() -> None:
    model = Model()
    batcher: Batcher[int, int] = Batcher(model, max_items=3, max_wait_s=3600)
    gone = asyncio.create_task(batcher.submit(1))
    await settle()
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    results = await asyncio.wait_for(asyncio.gather(*(batcher.submit(i) for i in (2, 3, 4))), HANG)
    assert results == [4, 6, 8] and model.calls == [[2, 3, 4]]
    await batcher.aclose()


class Unequal:
    """An item whose ``==`` cannot answer (as a numpy array's cannot)."""

    def __eq__(self, other: object) -> bool:
        raise ValueError("the truth value of an array is ambiguous")

    __hash__ = object.__hash__


async def test_a_cancelled_item_leaves_the_queue_whatever_its_equality() -> None:
    async def model(items: Sequence[Unequal]) -> list[int]:
        return [0 for _ in items]

    batcher: Batcher[Unequal, int] = Batcher(model, max_items=3, max_wait_s=3600)
    kept = asyncio.create_task(batcher.submit(Unequal()))
    gone = asyncio.create_task(batcher.submit(Unequal()))
    await settle()
    assert batcher.pending == 2
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert batcher.pending == 1  # found by identity, not by the item's ==
    kept.cancel()
    with pytest.raises(asyncio.CancelledError):
        await kept
    assert batcher.pending == 0
    await batcher.aclose()


async def test_cancelling_one_caller_never_cancels_the_others_item_in_the_same_batch() -> None:
    model = Model()
    model.gate = asyncio.Event()
    batcher: Batcher[int, int] = Batcher(model, max_items=2, max_wait_s=3600)
    gone = asyncio.create_task(batcher.submit(1))
    stays = asyncio.create_task(batcher.submit(2))
    await asyncio.wait_for(model.started.wait(), HANG)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    await settle()
    assert not stays.done()  # the batch is still running, for the caller that stayed
    model.gate.set()
    assert await asyncio.wait_for(stays, HANG) == 4
    assert model.calls == [[1, 2]]
    await batcher.aclose()


async def test_past_max_pending_work_is_refused_not_queued() -> None:
    model = Model()
    model.gate = asyncio.Event()
    batcher: Batcher[int, int] = Batcher(model, max_items=1, max_wait_s=0, max_pending=2)
    running = asyncio.create_task(batcher.submit(0))
    await asyncio.wait_for(model.started.wait(), HANG)
    waiting = [asyncio.create_task(batcher.submit(i)) for i in (1, 2)]
    await settle()
    with pytest.raises(OverloadedError) as refused:
        await batcher.submit(3)
    assert refused.value.code == ErrorCode.OVERLOADED and refused.value.retry_after_ms > 0
    assert batcher.stats.refused == 1
    model.gate.set()
    assert await asyncio.wait_for(asyncio.gather(running, *waiting), HANG) == [0, 2, 4]
    await batcher.aclose()


async def test_closing_fails_waiting_items_with_a_code_and_refuses_new_ones() -> None:
    model = Model()
    batcher: Batcher[int, int] = Batcher(model, max_items=5, max_wait_s=3600)
    waiting = asyncio.create_task(batcher.submit(1))
    await settle()
    await batcher.aclose()
    with pytest.raises(VoxlineError) as closed:
        await asyncio.wait_for(waiting, HANG)
    assert closed.value.code == ErrorCode.SERVER_DRAINING
    with pytest.raises(VoxlineError):
        await batcher.submit(2)
    assert model.calls == []


def test_nonsense_bounds_are_refused() -> None:
    async def model(items: Sequence[int]) -> list[int]:
        return list(items)

    for bad in ({"max_items": 0}, {"max_wait_s": -1}, {"max_pending": 0}, {"max_concurrent": 0}):
        with pytest.raises(ValueError):
            Batcher(model, **bad)  # type: ignore[arg-type]
