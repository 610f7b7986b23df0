"""Waiting for a state the code under test reaches on its own: bounded polling, never a
timing assertion (the bound only keeps a broken test from hanging)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(predicate: Callable[[], bool], what: str) -> None:
    """Return once ``predicate()`` holds; fail saying ``what`` never came (after ~10 s)."""
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")
