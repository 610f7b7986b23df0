"""Reading a live tail in a test: the next events, bounded by a hang guard."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from schemas import Event

HANG_GUARD_S = 20  # a hang guard, not a timing assertion


def texts(events: list[Event]) -> list[str]:
    """The typed texts of ``events`` (``tests.support.event_samples.typed_text``)."""
    return [e.data.text for e in events]  # type: ignore[union-attr]


async def take(tail: AsyncIterator[Event], n: int) -> list[Event]:
    """The tail's next ``n`` events (a hang fails after :data:`HANG_GUARD_S`)."""
    async def go() -> list[Event]:
        return [await anext(tail) for _ in range(n)]

    return await asyncio.wait_for(go(), HANG_GUARD_S)


async def until_live(fanout: Any, subscribers: int) -> None:
    """Wait (bounded) until ``subscribers`` tails have joined ``fanout``'s live read (a
    :class:`pipeline.log.LogFanout`)."""
    for _ in range(2000):
        if fanout.subscribers >= subscribers:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"only {fanout.subscribers} of {subscribers} tails went live")


async def until_subscribed(fanout: Any, streams: int) -> None:
    """Wait (bounded) until ``fanout``'s live read is subscribed to the pushes of
    ``streams`` streams (a :class:`pipeline.log.LogFanout` that pushes)."""
    for _ in range(2000):
        if sum(len(read.subscribed) for read in fanout._reads.values()) >= streams:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the live read never subscribed")


async def follow(fanout: Any, session_id: str,
                 n: int) -> tuple[AsyncIterator[Event], asyncio.Future[list[Event]]]:
    """A tail of ``session_id`` taking its next ``n`` events, once it is subscribed (the
    fanout's first stream)."""
    tail = fanout.tail(session_id)
    pending = asyncio.ensure_future(take(tail, n))
    await until_subscribed(fanout, 1)
    return tail, pending
