"""One model call for the items of many callers: the cross-session micro-batcher.

A model on a CPU or GPU often costs little more for eight inputs than for one (one
matrix product instead of eight, one call overhead). Sessions submit their items one at a
time and from their own tasks; a :class:`Batcher` gathers what arrives together and runs
one ``run_batch`` call over it. Its promises, which the tests hold it to:

* **Bounded wait.** A batch closes when it holds ``max_items`` or its oldest item has
  waited ``max_wait_s`` for company. The first item of an idle batcher never waits longer
  than that; with ``max_wait_s=0`` it goes at once and only items that queued behind a
  running batch share a call.
* **Invisible.** Each caller gets its own item's result, exactly as an unbatched call
  would give it; order within a batch is the order of submission.
* **One item's failure is that item's.** ``run_batch`` returns one entry per item, an
  exception where that item failed. If it raises instead, the batch is run again one item
  at a time so that only the item that breaks the model fails.
* **One caller's cancel is that caller's.** A cancelled caller's item is dropped if its
  batch has not started, and its result is discarded if it has; the batch itself runs on
  the batcher's own task and is never cancelled by a caller.
* **Bounded queue.** At most ``max_pending`` items wait; past that :meth:`submit` raises
  :class:`~schemas.OverloadedError`, which the caller reports as refused work.

``run_batch`` is an async function (engines hand the blocking model call to a thread), so
one batch runs at a time per batcher (``max_concurrent``, default one) while the next one
gathers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pipeline.aio._lost_cancel import reraise_lost_cancel
from schemas import ErrorCode, OverloadedError, VoxlineError

__all__ = ["Batcher", "BatcherStats"]

In = TypeVar("In")
Out = TypeVar("Out")

RunBatch = Callable[[Sequence[In]], Awaitable[Sequence["Out | BaseException"]]]


@dataclass(slots=True, eq=False)  # found by identity: an item's own == may be anything
class _Pending(Generic[In, Out]):
    item: In
    future: asyncio.Future[Out]
    since: float


@dataclass(slots=True)
class BatcherStats:
    """What a batcher did, for metrics and for the capacity report."""

    batches: int = 0
    items: int = 0
    largest: int = 0
    split_after_failure: int = 0
    refused: int = 0
    sizes: dict[int, int] = field(default_factory=dict)

    @property
    def mean_size(self) -> float:
        return self.items / self.batches if self.batches else 0.0


class Batcher(Generic[In, Out]):
    """Gather items of many callers into calls of ``run_batch``; see the module docstring."""

    def __init__(
        self,
        run_batch: RunBatch[In, Out],
        *,
        max_items: int = 8,
        max_wait_s: float = 0.02,
        max_pending: int = 256,
        max_concurrent: int = 1,
        name: str = "batch",
    ) -> None:
        if max_items < 1 or max_wait_s < 0 or max_pending < 1 or max_concurrent < 1:
            raise ValueError("max_items, max_pending, max_concurrent ≥ 1 and max_wait_s ≥ 0")
        self._run_batch = run_batch
        self.max_items = max_items
        self.max_wait_s = max_wait_s
        self.max_pending = max_pending
        self.name = name
        self.stats = BatcherStats()
        self._pending: deque[_Pending[In, Out]] = deque()
        self._arrived = asyncio.Event()
        self._slots = asyncio.Semaphore(max_concurrent)
        self._running: set[asyncio.Task[None]] = set()
        self._gatherer: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def pending(self) -> int:
        """Items waiting for a batch (not those in a running batch)."""
        return len(self._pending)

    async def submit(self, item: In) -> Out:
        """Run ``item`` in the next batch and return its own result (or raise its error)."""
        if self._closed:
            raise _draining(f"the {self.name} batcher is closed")
        if len(self._pending) >= self.max_pending:
            self.stats.refused += 1
            raise OverloadedError(
                f"{self.max_pending} items already wait for the {self.name} model",
                retry_after_ms=max(100, int(self.max_wait_s * 1000) * 4),
                stage=self.name,
            )
        loop = asyncio.get_running_loop()
        entry: _Pending[In, Out] = _Pending(item, loop.create_future(), loop.time())
        self._pending.append(entry)
        self._arrived.set()
        if self._gatherer is None or self._gatherer.done():
            self._gatherer = asyncio.create_task(self._gather(), name=f"{self.name}-batcher")
        try:
            return await entry.future
        except asyncio.CancelledError:
            # Still waiting: leave no item behind for a caller that has gone.
            with contextlib.suppress(ValueError):
                self._pending.remove(entry)
            raise

    async def aclose(self) -> None:
        """Stop gathering; items still waiting fail with ``server_draining``."""
        self._closed = True
        if self._gatherer is not None:
            self._gatherer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._gatherer
            reraise_lost_cancel()
        _fail_waiting(self._pending, f"the {self.name} batcher closed")
        self._pending.clear()
        for task in list(self._running):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _gather(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
            # Wait for company until the oldest item's bound or a full batch.
            deadline = self._pending[0].since + self.max_wait_s
            while len(self._pending) < self.max_items:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    async with asyncio.timeout(remaining):
                        await self._arrived.wait()
                except TimeoutError:
                    reraise_lost_cancel()
                    break
                if not self._pending:
                    break
                deadline = self._pending[0].since + self.max_wait_s
            if not self._pending:
                continue
            await self._slots.acquire()
            batch = [
                self._pending.popleft() for _ in range(min(self.max_items, len(self._pending)))
            ]
            batch = [entry for entry in batch if not entry.future.done()]
            if not batch:
                self._slots.release()
                continue
            task = asyncio.create_task(self._run(batch), name=f"{self.name}-batch")
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[_Pending[In, Out]]) -> None:
        try:
            self.stats.batches += 1
            self.stats.items += len(batch)
            self.stats.largest = max(self.stats.largest, len(batch))
            self.stats.sizes[len(batch)] = self.stats.sizes.get(len(batch), 0) + 1
            try:
                results = await self._call([entry.item for entry in batch])
            except Exception as exc:
                if len(batch) == 1:
                    results = [exc]
                else:
                    self.stats.split_after_failure += 1
                    results = []
                    for entry in batch:
                        try:
                            results.append((await self._call([entry.item]))[0])
                        except Exception as one:
                            results.append(one)
            for entry, result in zip(batch, results, strict=True):
                if entry.future.done():  # its caller was cancelled
                    continue
                if isinstance(result, BaseException):
                    entry.future.set_exception(result)
                else:
                    entry.future.set_result(result)
        finally:
            self._slots.release()
            # never leave a caller waiting on a batch that died
            _fail_waiting(batch, f"the {self.name} batch was stopped")

    async def _call(self, items: list[In]) -> Sequence[Out | BaseException]:
        results = await self._run_batch(items)
        if len(results) != len(items):
            raise RuntimeError(
                f"{self.name}: run_batch returned {len(results)} results for {len(items)} items"
            )
        return results


def _draining(message: str) -> VoxlineError:
    """The batcher is going away: transient, retry elsewhere (503 over HTTP)."""
    return VoxlineError(message, code=ErrorCode.SERVER_DRAINING, transient=True, http_status=503)


def _fail_waiting(entries: Iterable[_Pending[Any, Any]], message: str) -> None:
    for entry in entries:
        if not entry.future.done():
            entry.future.set_exception(_draining(message))
