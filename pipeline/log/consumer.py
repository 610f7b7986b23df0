"""Consumer-group readers for background workers (auto-play, metrics, re-transcription).

A worker that dies loses nothing: what it read but did not acknowledge stays pending in
the group, and after ``claim_idle_ms`` another consumer claims it (XAUTOCLAIM). An entry
delivered ``max_deliveries`` times without an ack is a poison message: it is copied to a
dead-letter stream with its history and acknowledged, so it stops blocking the group.
Handlers must be idempotent, because a claimed entry may have been half-handled.

Nothing can be claimed before it has been idle ``claim_idle_ms``, so a reader looks for
stuck entries once per :data:`CLAIM_LOOKS` of that (3 s at the default 30 s), and at once
again while a look finds some or has more of the pending list to scan: a busy worker's
reads are one round trip each, not two, and a dead consumer's entries are taken over
within 1.1 ``claim_idle_ms`` of their delivery.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from pipeline.aio import reraise_lost_cancel
from pipeline.log._outage import UNAVAILABLE, Outage
from pipeline.log.redis_client import is_cluster
from schemas import EventLogError, EventLogSettings

logger = logging.getLogger(__name__)

#: looks for stuck entries per ``claim_idle_ms``. A reader looked before every read, an
#: XAUTOCLAIM beside each XREADGROUP, busy or idle (its 1 s blocks), for entries that
#: cannot be claimed before 30 s: in a one-session capacity step (~100 s with the app's
#: start) the feed's three consumers made 303 looks beside 303 reads, now 72
#: (2026-12-01, Redis's command counts)
CLAIM_LOOKS = 10


@dataclass(frozen=True)
class Delivery:
    """One stream entry handed to this consumer; ``deliveries`` counts this one too."""

    stream: str
    entry_id: str
    fields: dict[bytes, bytes]
    deliveries: int
    claimed: bool = False


class GroupReader:
    """Reads one stream as one consumer of a consumer group."""

    def __init__(
        self,
        redis: Redis,
        stream: str,
        group: str,
        consumer: str,
        settings: EventLogSettings | None = None,
        *,
        dead_letter_stream: str | None = None,
        count: int = 100,
    ) -> None:
        self.redis = redis
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.settings = settings or EventLogSettings()
        self.dead_letter_stream = dead_letter_stream or _dead_letter_key(redis, stream, group)
        self.count = count
        self._claim_cursor = "0-0"
        #: when the next look for stuck entries is due (monotonic seconds)
        self._claim_due = 0.0

    async def ensure_group(self, start_id: str = "0") -> None:
        """Create the group (and the stream) if missing; a no-op when it exists."""
        try:
            await self.redis.xgroup_create(self.stream, self.group, id=start_id, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise EventLogError(f"cannot create group {self.group}: {exc}") from exc

    async def read(self, block_ms: int | None = 1000) -> list[Delivery]:
        """Stuck entries first (claimed from dead consumers), then new ones."""
        claimed = await self.claim_stuck()
        if claimed:
            return claimed
        return await self.read_new(block_ms)

    async def read_new(self, block_ms: int | None = 1000) -> list[Delivery]:
        """New entries only (``>``), waiting up to ``block_ms`` for some."""
        try:
            reply: Any = await self.redis.xreadgroup(
                self.group, self.consumer, {self.stream: ">"}, count=self.count, block=block_ms
            )
        except RedisError as exc:
            logger.warning("the event log is unavailable: %r", exc)
            raise EventLogError("the event log is unavailable; try again") from exc
        return [
            Delivery(self.stream, _text(entry_id), raw, deliveries=1)
            for _stream, entries in reply or ()
            for entry_id, raw in entries
        ]

    async def claim_stuck(self) -> list[Delivery]:
        """Claim entries idle for ``claim_idle_ms``; dead-letter those delivered too often.
        Nothing (no round trip) while the last look found none, within its interval."""
        now = time.monotonic()
        if now < self._claim_due:
            return []
        try:
            reply: Any = await self.redis.xautoclaim(
                self.stream,
                self.group,
                self.consumer,
                min_idle_time=self.settings.claim_idle_ms,
                start_id=self._claim_cursor,
                count=self.count,
            )
        except RedisError as exc:
            logger.warning("the event log is unavailable: %r", exc)
            raise EventLogError("the event log is unavailable; try again") from exc
        next_cursor, entries = reply[0], reply[1]
        deleted = reply[2] if len(reply) > 2 else []
        self._claim_cursor = _text(next_cursor)
        if not entries and self._claim_cursor == "0-0":  # the whole pending list seen
            self._claim_due = now + self.settings.claim_idle_ms / 1000 / CLAIM_LOOKS
        if deleted:  # trimmed while pending: nothing left to handle
            await self.redis.xack(self.stream, self.group, *deleted)
        if not entries:
            return []
        counts = await self._delivery_counts(_text(entries[0][0]), _text(entries[-1][0]))
        out: list[Delivery] = []
        for entry_id, raw in entries:
            eid = _text(entry_id)
            delivery = Delivery(self.stream, eid, raw, counts.get(eid, 1), claimed=True)
            if delivery.deliveries > self.settings.max_deliveries:
                await self.dead_letter(delivery, reason="too many deliveries")
            else:
                out.append(delivery)
        return out

    async def _delivery_counts(self, first: str, last: str) -> dict[str, int]:
        pending: Any = await self.redis.xpending_range(
            self.stream, self.group, min=first, max=last, count=self.count
        )
        return {_text(p["message_id"]): int(p["times_delivered"]) for p in pending}

    async def ack(self, delivery: Delivery) -> None:
        await self.redis.xack(delivery.stream, self.group, delivery.entry_id)

    async def dead_letter(self, delivery: Delivery, *, reason: str) -> None:
        """Move an entry to the dead-letter stream and acknowledge it, atomically."""
        fields: dict[Any, Any] = dict(delivery.fields)
        fields.update(
            {
                "dl_stream": self.stream,
                "dl_group": self.group,
                "dl_entry": delivery.entry_id,
                "dl_deliveries": delivery.deliveries,
                "dl_reason": reason,
            }
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.dead_letter_stream, fields, maxlen=100_000, approximate=True)
            pipe.xack(self.stream, self.group, delivery.entry_id)
            await pipe.execute()

    async def aclose(self) -> None:
        """Nothing to stop: a read of one stream is never left in flight."""


class Reader(Protocol):
    """What :func:`run_worker` needs: a :class:`GroupReader`, or a reader of many feeds."""

    group: str

    async def ensure_group(self, start_id: str = "0") -> None: ...

    async def read(self, block_ms: int | None = 1000) -> list[Delivery]: ...

    async def ack(self, delivery: Delivery) -> None: ...

    async def aclose(self) -> None: ...


async def run_worker(
    reader: Reader,
    handle: Callable[[Delivery], Awaitable[None]],
    *,
    block_ms: int = 1000,
    retry_later: tuple[type[Exception], ...] = (),
    outage_grace_s: float = 0.0,
) -> None:
    """Handle deliveries forever: ack after success; on failure leave it pending.

    A failed entry is retried when it is claimed again after ``claim_idle_ms``, until it
    is dead-lettered. ``retry_later`` exceptions are expected (another consumer holds
    the work): logged in one line, left pending the same way. Cancel to stop the worker.

    A read that Redis does not answer (a failover, a restart) is tried again for
    ``outage_grace_s`` (``EventLogSettings.outage_grace_s``, as the log's writers and
    live reader do) before the worker fails with ``event_log_unavailable``: a worker
    that failed at once was restarted by Serve some twenty seconds later, after a
    failover of a few. An ack that does not get through leaves its entry pending (it is
    claimed again, and handlers are idempotent).
    """
    await reader.ensure_group()
    outage = Outage(outage_grace_s)
    try:
        while True:
            try:
                deliveries = await reader.read(block_ms)
            except (EventLogError, *UNAVAILABLE) as exc:
                if not outage.failed():
                    raise
                logger.warning("%s: the event log is unavailable, reading again: %s",
                               reader.group, exc)
                await asyncio.sleep(outage.pause_s())
                continue
            outage.ended()
            reraise_lost_cancel()
            for delivery in deliveries:
                await _handle_one(reader, handle, delivery, retry_later)
    finally:
        await reader.aclose()  # the reads still in flight (a reader of many feeds)


async def _handle_one(reader: Reader, handle: Callable[[Delivery], Awaitable[None]],
                      delivery: Delivery, retry_later: tuple[type[Exception], ...]) -> None:
    try:
        await handle(delivery)
    except retry_later as exc:  # expected (e.g. another worker holds it): no traceback
        logger.info("%s: %s %s left pending: %s", reader.group, delivery.stream,
                    delivery.entry_id, exc)
        return
    except Exception:  # stays pending, is claimed again, then dead-lettered
        logger.exception(
            "%s failed on %s %s (delivery %d); left pending",
            reader.group,
            delivery.stream,
            delivery.entry_id,
            delivery.deliveries,
        )
        return
    try:
        await reader.ack(delivery)
    except UNAVAILABLE as exc:  # still pending: claimed again after claim_idle_ms
        logger.warning("%s: could not acknowledge %s %s, left pending: %s", reader.group,
                       delivery.stream, delivery.entry_id, exc)


def _dead_letter_key(redis: Redis, stream: str, group: str) -> str:
    """``{stream}:dead:{group}``, in the stream's slot on a cluster (the dead-letter move
    is one MULTI): a stream without a hash tag lends its whole name as one."""
    if is_cluster(redis) and not _has_hash_tag(stream):
        return f"{{{stream}}}:dead:{group}"
    return f"{stream}:dead:{group}"


def _has_hash_tag(key: str) -> bool:
    start = key.find("{")
    return start >= 0 and key.find("}", start + 2) > start  # Redis ignores an empty "{}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
