"""The outbox of a turn: what its workers produced, waiting for the consumer, in order.

Bounded softly: a producer waits for room (:meth:`Outbox.wait_room`) *before* it produces
more, not in the middle of handing items over, so an item that must follow another at once
(the sentence event before its synthesis starts) never waits on the consumer. The LLM reader
waits for room before it pulls each token and the audio forwarder before each chunk, so the
outbox holds at most ``capacity`` items plus what one token or one chunk adds.

Its items are typed: a turn's outbox carries :data:`~pipeline.reply.items.TurnItem`, the
one :func:`~pipeline.reply.text_to_audio.speak` drives only what a speaker puts.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")


class Outbox(Generic[T]):
    """A FIFO of ``T`` with one consumer and a soft capacity."""

    __slots__ = ("_capacity", "_queue", "_room")

    def __init__(self, capacity: int) -> None:
        # bounded softly by ``capacity`` (see the module docstring): producers wait for room
        self._queue: asyncio.Queue[T] = asyncio.Queue()
        self._capacity = capacity
        self._room = asyncio.Event()
        self._room.set()

    def put(self, item: T) -> None:
        """Add ``item`` now (never waits; producers call :meth:`wait_room` first)."""
        self._queue.put_nowait(item)

    def full(self) -> bool:
        return self._queue.qsize() >= self._capacity

    async def wait_room(self) -> None:
        """Wait until the outbox is below its capacity."""
        while self._queue.qsize() >= self._capacity:
            self._room.clear()
            await self._room.wait()

    def empty(self) -> bool:
        return self._queue.empty()

    async def get(self) -> T:
        item = await self._queue.get()
        self._made_room()
        return item

    def get_nowait(self) -> T:
        item = self._queue.get_nowait()
        self._made_room()
        return item

    def replace_all(self, item: T) -> None:
        """Drop every waiting item and leave only ``item`` (how a cancel overtakes them)."""
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(item)
        self._made_room()

    def _made_room(self) -> None:
        if not self._room.is_set() and self._queue.qsize() < self._capacity:
            self._room.set()
