"""Reading a live tail in a test: the next events, bounded by a hang guard."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

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
