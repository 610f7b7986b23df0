"""One consumer of a consumer group over every feed of the log.

A standalone log has one feed; a clustered one has one per partition
(:mod:`pipeline.log.keys`), each in its own slot, and a consumer group is per stream.
:class:`FeedReader` is a :class:`GroupReader` per feed behind the same interface, so
workers (narration, metrics, refinement) run unchanged on either.

Reading many feeds without polling them in turn: each feed has at most one blocking
XREADGROUP in flight; :meth:`FeedReader.read` returns what the first ones to answer
brought and leaves the others in flight for the next call, so an entry on any feed is
handed over as soon as it arrives. A read cancelled with the worker may have been
delivered by Redis but never received: it stays pending and is claimed after
``claim_idle_ms``, like a dead consumer's (handlers are idempotent already).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from pipeline.aio import reraise_lost_cancel
from pipeline.log.consumer import Delivery, GroupReader
from schemas import EventLogSettings

__all__ = ["FeedReader", "feed_groups"]


class FeedReader:
    """Reads ``streams`` as one consumer of ``group``; acks go to each entry's stream."""

    def __init__(
        self,
        redis: Redis,
        streams: Sequence[str],
        group: str,
        consumer: str,
        settings: EventLogSettings | None = None,
        *,
        count: int = 100,
    ) -> None:
        if not streams:
            raise ValueError("a feed reader needs at least one stream")
        self.readers = [GroupReader(redis, stream, group, consumer, settings, count=count)
                        for stream in streams]
        self.group = group
        self.consumer = consumer
        self._inflight: dict[int, asyncio.Task[list[Delivery]]] = {}

    @property
    def streams(self) -> list[str]:
        return [reader.stream for reader in self.readers]

    async def ensure_group(self, start_id: str = "0") -> None:
        for reader in self.readers:  # once per worker start: no need to hurry
            await reader.ensure_group(start_id)

    async def claim_stuck(self) -> list[Delivery]:
        claimed = await asyncio.gather(*(reader.claim_stuck() for reader in self.readers))
        return [delivery for batch in claimed for delivery in batch]

    async def read(self, block_ms: int | None = 1000) -> list[Delivery]:
        """Stuck entries first (on any feed), then new ones from the feeds that answer
        first (within ``block_ms``)."""
        if len(self.readers) == 1:
            return await self.readers[0].read(block_ms)
        claimed = await self.claim_stuck()
        if claimed:
            return claimed
        if not block_ms:  # no waiting: one look at every feed
            found = await asyncio.gather(*(r.read_new(block_ms) for r in self.readers))
            return [delivery for batch in found for delivery in batch]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + block_ms / 1000
        while True:
            left_ms = max(1, int((deadline - loop.time()) * 1000))
            for index, reader in enumerate(self.readers):
                if index not in self._inflight:
                    task = asyncio.create_task(
                        reader.read_new(left_ms), name=f"feed-read-{reader.stream}")
                    task.add_done_callback(_retrieved)  # its error is raised by a later read
                    self._inflight[index] = task
            done, _ = await asyncio.wait(self._inflight.values(), timeout=left_ms / 1000 + 0.5,
                                         return_when=asyncio.FIRST_COMPLETED)
            reraise_lost_cancel()
            out: list[Delivery] = []
            for index, task in list(self._inflight.items()):
                if task in done:
                    del self._inflight[index]
                    out += task.result()  # a failed read raises here (EventLogError)
            if out or loop.time() >= deadline:
                return out

    async def ack(self, delivery: Delivery) -> None:
        await self.readers[0].ack(delivery)  # XACK on delivery.stream

    async def dead_letter(self, delivery: Delivery, *, reason: str) -> None:
        reader = next(r for r in self.readers if r.stream == delivery.stream)
        await reader.dead_letter(delivery, reason=reason)

    async def aclose(self) -> None:
        """Stop the reads in flight (what they were given stays pending: see above)."""
        tasks, self._inflight = list(self._inflight.values()), {}
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


def _retrieved(task: asyncio.Task[list[Delivery]]) -> None:
    """Mark a read's failure as seen: the next :meth:`FeedReader.read` raises it, and one
    left over when the worker stops must not be logged as "never retrieved"."""
    if not task.cancelled():
        task.exception()


async def feed_groups(redis: Redis, streams: Sequence[str]) -> dict[str, tuple[int | None, int]]:
    """Each consumer group of ``streams``: (entries not yet delivered to it, entries
    delivered and not acknowledged), summed over the streams. The first is None where
    Redis cannot tell (``XINFO GROUPS``' ``lag``: after a trim or an ``XDEL`` it may not
    know). A stream not yet made has no groups."""
    groups: dict[str, tuple[int | None, int]] = {}
    for stream in streams:
        try:
            infos: list[dict[str, object]] = await redis.xinfo_groups(stream)
        except ResponseError:  # no such key yet
            continue
        for info in infos:
            name = _text(info["name"])
            lag, pending = groups.get(name, (0, 0))
            more = info.get("lag")
            groups[name] = (None if lag is None or more is None else lag + int(str(more)),
                            pending + int(str(info["pending"])))
    return groups


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
