"""Places for work, with a bounded line for them.

A model stage called in the Gateway's process and the pool of document readers hold the
same bound: at most ``ongoing`` calls at once, at most ``queued`` more waiting for a place
in arrival order, and the next one refused at once by its caller, who knows which error and
retry hint to give (``overloaded``, as Serve refuses past a deployment's
``max_queued_requests``). :class:`Places` keeps that count; it never waits without limit
for a line longer than it was given.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["Places"]


class Places:
    """At most ``ongoing`` holders at once and ``queued`` waiting (see the module
    docstring): a caller checks :attr:`full` and refuses, else takes a place."""

    def __init__(self, ongoing: int, queued: int) -> None:
        if ongoing < 1 or queued < 0:
            raise ValueError(f"places need ongoing >= 1 and queued >= 0, "
                             f"got {ongoing} and {queued}")
        self.ongoing = ongoing
        self.queued = queued
        self._free = asyncio.Semaphore(ongoing)
        #: calls holding a place, and calls in line for one
        self.running = 0
        self.waiting = 0

    @property
    def admitted(self) -> int:
        """Calls holding a place or in line for one."""
        return self.running + self.waiting

    @property
    def full(self) -> bool:
        """Every place taken and the line full: the next call is to be refused."""
        return self.admitted >= self.ongoing + self.queued

    async def take(self) -> None:
        """A place, once one is free (in line until then); :meth:`give_back` returns it."""
        self.waiting += 1
        try:
            await self._free.acquire()
        finally:
            self.waiting -= 1
        self.running += 1

    def give_back(self) -> None:
        self.running -= 1
        self._free.release()

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """A place for the block."""
        await self.take()
        try:
            yield
        finally:
            self.give_back()
