"""A scripted async stream for tests of stream plumbing: it waits at gates the test opens
(no sleeps, no wall clock) and records how it ended."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from typing import Generic, TypeVar

import pytest

from schemas import EngineError, ErrorCode
from tests.support.engines import outcome_of

T = TypeVar("T")

#: a bound that only catches hangs (nothing here is timed)
HANG = 10.0


async def finish(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable``, failing (not cancelling it) when it does not end in time:
    ``wait_for`` would cancel it on time-out, and a cancel can unblock the very hang a
    test looks for; ``asyncio.wait`` only watches."""
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=HANG)
    if not done:
        task.cancel()
        pytest.fail("hung")
    return task.result()


class GatedSource(Generic[T]):
    """An async generator of ``items``; before item ``i`` in ``gates`` it waits for the gate.

    It records how it ended: ``completed``, ``failed``, ``cancelled`` (``CancelledError``)
    or ``closed`` (``GeneratorExit``), and how many items it handed out.
    """

    def __init__(
        self,
        items: Iterable[T],
        *,
        gates: Sequence[int] = (),
        fail_after: bool = False,
        yield_between: bool = False,
    ) -> None:
        self.items = list(items)
        self.gates = {i: asyncio.Event() for i in gates}
        self.fail_after = fail_after
        self.yield_between = yield_between
        self.outcome = "not started"
        self.handed_out = 0
        #: set when the source waits at a gate (the test knows it is blocked there)
        self.waiting = asyncio.Event()

    def open(self, index: int) -> None:
        self.gates[index].set()

    async def stream(self) -> AsyncIterator[T]:
        self.outcome = "running"
        with outcome_of(self._ended):
            for i, item in enumerate(self.items):
                if i in self.gates:
                    self.waiting.set()
                    await self.gates[i].wait()
                    self.waiting.clear()
                elif self.yield_between and i > 0:
                    await asyncio.sleep(0)
                self.handed_out += 1
                yield item
            if self.fail_after:
                raise EngineError("source failed", code=ErrorCode.LLM_FAILED)

    def _ended(self, outcome: str) -> None:
        self.outcome = outcome
