"""Group a fast stream into fewer, larger items without delaying the first one.

A stream that crosses a process boundary (a Ray Serve handle, a socket) pays per item,
so an LLM's token stream should not travel one token per item. :func:`batched` reads the
source in a task of its own and hands out everything that has arrived, bounded by a
count and a time window:

* the first ``eager_items`` items go out alone and at once (time to first token is what
  users feel, and a reply's first spoken piece waits for its first few tokens);
* after that, a batch closes when it holds ``max_items`` or its oldest item has waited
  ``max_wait_s``, or the source ends;
* the source's error is raised after the items that came before it;
* closing or cancelling the consumer cancels the reading task, which aborts the source
  (engines abort their model call on ``CancelledError``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Generic, TypeVar

from pipeline.aio._lost_cancel import reraise_lost_cancel
from pipeline.aio._streams import aclose_stream

T = TypeVar("T")


class _End(Generic[T]):
    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


async def batched(
    source: AsyncIterator[T], *, max_items: int = 16, max_wait_s: float = 0.04,
    eager_items: int = 1,
) -> AsyncGenerator[list[T], None]:
    """Yield lists of consecutive items of ``source``; see the module docstring."""
    if max_items < 1 or max_wait_s < 0 or eager_items < 0:
        raise ValueError("max_items must be ≥ 1, max_wait_s and eager_items ≥ 0")
    # Unbounded on purpose: the source is one engine stream (an LLM reply, bounded by its
    # max_tokens), read as fast as it comes so a batch never waits on the reader.
    queue: asyncio.Queue[T | _End[T]] = asyncio.Queue()

    async def read() -> None:
        error: BaseException | None = None
        try:
            async for item in source:
                queue.put_nowait(item)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the consumer, raised there
            error = exc
        finally:
            with contextlib.suppress(Exception):
                await aclose_stream(source)
        queue.put_nowait(_End(error))

    reader = asyncio.create_task(read())
    eager = eager_items
    try:
        while True:
            item = await queue.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            batch = [item]
            end: _End[T] | None = None
            if eager > 0:
                eager -= 1
            else:
                end = await _fill(queue, batch, max_items, max_wait_s)
            yield batch
            if end is not None:
                if end.error is not None:
                    raise end.error
                return
    finally:
        if not reader.done():
            reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        reraise_lost_cancel()  # the suppress must not eat a cancel aimed at this task


async def _fill(
    queue: asyncio.Queue[T | _End[T]], batch: list[T], max_items: int, max_wait_s: float
) -> _End[T] | None:
    """Add to ``batch`` until it is full or its window closes; return the end if seen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_wait_s
    while len(batch) < max_items:
        if queue.empty():
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    item = await queue.get()
            except TimeoutError:
                reraise_lost_cancel()
                break
        else:
            item = queue.get_nowait()
        if isinstance(item, _End):
            return item
        batch.append(item)
    return None
