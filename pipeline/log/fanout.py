"""One live reader of the session log per process, shared by every tail it serves.

:meth:`EventLog.tail` holds a Redis connection per reader (an XREAD BLOCK of its own), so
a replica with many idle sockets runs its Redis pool dry. :class:`LogFanout` reads the
streams of all its current subscribers with one XREAD BLOCK on one connection and hands
each entry to the subscribers of that stream through bounded buffers.

:meth:`LogFanout.tail` keeps every guarantee of :meth:`EventLog.tail`:

* **Catch-up, then live, exactly once and in order.** A subscriber first reads its backlog
  with snapshot reads (:meth:`EventLog.read_page`: short, on the shared pool, and a cursor
  behind the trim horizon raises :class:`schemas.ResyncRequiredError`), then joins the
  live read. If the live read of that stream is already past the subscriber's position, it
  reads the gap once more after joining; anything delivered twice is dropped by id.
* **No silent gaps.** Each entry carries its number ``n``; a live entry whose number does
  not follow the previous one raises :class:`schemas.ResyncRequiredError`.
* **Bounded.** Each subscriber buffers at most ``EventLogSettings.tail_queue`` events. One
  that cannot keep up is dropped with :class:`schemas.OverloadedError` (code
  ``overloaded``, ``details.last_event_id`` = the last event it was given): the client
  resumes from its last id and loses nothing, the log has it.

**Failover.** A live read that fails is tried again, from the same cursors, for
``outage_grace_s`` (:mod:`pipeline.log._outage`) before its subscribers are failed with
``event_log_unavailable``: a socket rides out a primary's failover without a reconnect.

The live read re-issues its XREAD when the set of streams changes: a new stream wakes a
blocked read by appending to a small stream of this reader's own, which is part of every
XREAD it sends. Streams that lose their last subscriber simply drop out of the next read.

On a Redis Cluster one XREAD may only name keys of one slot, so there is one live read per
partition that has subscribers (:mod:`pipeline.log.keys`: a partition's sessions share a
slot), each with its own wake stream in that slot: a read carries the keys of its slot
only, and the partitions' reads block side by side, at most ``partitions`` of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from pipeline.aio import reraise_lost_cancel
from pipeline.log._blocking import BlockingReads, refresh_topology
from pipeline.log._codec import decode_entry, entry_number
from pipeline.log._outage import Outage
from pipeline.log.eventlog import EventLog
from pipeline.log.streamid import ZERO, StreamId, parse_cursor
from schemas import Event, EventLogError, OverloadedError, ResyncRequiredError, VoxlineError

logger = logging.getLogger(__name__)

_WAKE_MAXLEN = 8
_WAKE_TTL_MS = 600_000
_RETRY_S = 0.5


class _Subscriber:
    """One tail's buffer: events the live read handed over and the tail has not yielded."""

    def __init__(self, key: str, limit: int, read: _Read) -> None:
        self.key = key
        self.limit = limit
        self.read = read
        # bounded by ``limit``: push() drops the subscriber instead of growing past it
        self.items: deque[tuple[Event, int]] = deque()
        self.error: VoxlineError | None = None
        self.last_given: str | None = None
        self._ready = asyncio.Event()

    def push(self, event: Event, number: int) -> bool:
        """Hand one event over; ``False`` when the subscriber is over its bound (dropped)."""
        if len(self.items) >= self.limit:
            self.fail(OverloadedError(
                f"this reader fell {self.limit} events behind the session log and was "
                "dropped; reconnect with last_event_id to continue where it stopped",
                retry_after_ms=0, last_event_id=self.last_given))
            return False
        self.items.append((event, number))
        self._ready.set()
        return True

    def fail(self, error: VoxlineError) -> None:
        if self.error is None:
            self.error = error
        self.items.clear()  # what it held is in the log; free it now
        self._ready.set()

    async def get(self) -> tuple[Event, int]:
        while not self.items:
            if self.error is not None:
                raise self.error
            self._ready.clear()
            await self._ready.wait()
        if self.error is not None:
            raise self.error
        return self.items.popleft()


@dataclass
class _Position:
    """Where a tail is: the last id it yielded and the number the next entry must have."""

    cursor: StreamId
    expected: int = 0


@dataclass
class _Stream:
    session_id: str
    cursor: StreamId
    subscribers: set[_Subscriber] = field(default_factory=set)


class _Read:
    """The live read of one partition (of everything, standalone): its streams, its wake
    stream and the task that reads them."""

    def __init__(self, wake_key: str, connection: BlockingReads) -> None:
        self.wake_key = wake_key
        self.connection = connection  # its own: cancelling the read never harms the pool
        self.streams: dict[str, _Stream] = {}
        self.changed = asyncio.Event()
        self.wake_cursor = "0-0"
        self.wake_pending = False
        self.blocking = False
        self.task: asyncio.Task[None] | None = None


class LogFanout:
    """Tails of many sessions over one Redis connection. One per process; share it.

    The reader task starts with the first subscriber (on the loop that serves it) and
    stops with :meth:`aclose`.
    """

    def __init__(self, log: EventLog, *, block_ms: int = 2000,
                 on_deliver: Callable[[int], None] | None = None) -> None:
        self.log = log
        self.block_ms = block_ms
        #: told the time (``ts``, ms) of each event as it is handed to its readers
        self.on_deliver = on_deliver
        self.reader_id = uuid.uuid4().hex
        self._reads: dict[int, _Read] = {}
        self._wakers: set[asyncio.Task[None]] = set()
        self._closed = False
        #: live reads sent (a figure for tests and benchmarks)
        self.reads = 0

    # ---- what callers see -------------------------------------------------------------

    @property
    def subscribers(self) -> int:
        return sum(len(stream.subscribers) for read in self._reads.values()
                   for stream in read.streams.values())

    @property
    def streams(self) -> int:
        return sum(len(read.streams) for read in self._reads.values())

    @property
    def wake_key(self) -> str:
        """The wake stream of the standalone read (of partition 0 on a cluster)."""
        return self.log.keys.wake(0, self.reader_id)

    async def tail(self, session_id: str, after: str | None = None) -> AsyncIterator[Event]:
        """Like :meth:`EventLog.tail`: events after ``after``, then live ones, until the
        consumer stops. Raises :class:`schemas.ResyncRequiredError` past a trim,
        :class:`schemas.OverloadedError` when the consumer fell too far behind,
        :class:`schemas.EventLogError` when the log is unavailable."""
        at = _Position(parse_cursor(after) if after else ZERO)
        async for event in self._catch_up(session_id, at):
            yield event
        subscriber, live_from = self._join(session_id, at.cursor)
        subscriber.last_given = str(at.cursor) if at.cursor > ZERO else None
        try:
            if live_from > at.cursor:  # the live read is ahead of us: read the gap once more
                async for event in self._catch_up(session_id, at):
                    subscriber.last_given = event.id
                    yield event
            while True:
                event, number = await subscriber.get()
                entry_id = StreamId.parse(event.id or "0-0")
                if entry_id <= at.cursor:
                    continue  # seen on the catch-up path
                if number != at.expected:
                    raise ResyncRequiredError(
                        f"the tail missed events {at.expected}..{number - 1} (trimmed)",
                        session_id=session_id,
                    )
                at.cursor, at.expected = entry_id, number + 1
                subscriber.last_given = event.id
                yield event
        finally:
            self._leave(subscriber)

    async def aclose(self) -> None:
        """Stop the reader; tails still open end with a transient :class:`EventLogError`."""
        self._closed = True
        tasks = [read.task for read in self._reads.values() if read.task is not None]
        tasks += self._wakers
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        self._fail_all(EventLogError("the server is shutting down", transient=True))
        for read in self._reads.values():  # one by one: on a cluster they are in other slots
            await read.connection.aclose()
            with contextlib.suppress(Exception):
                await self.log.redis.delete(read.wake_key)

    # ---- subscribers ------------------------------------------------------------------

    async def _catch_up(self, session_id: str, at: _Position) -> AsyncIterator[Event]:
        """Snapshot reads from ``at`` to the end of the log, moving ``at`` along."""
        page_size = self.log.settings.read_count
        while True:
            page = await self.log.read_page(session_id, str(at.cursor))
            reraise_lost_cancel()  # a cancel lost in the read would leave us waiting below
            if not at.expected:  # the first read: the next entry's number, if none is here
                at.expected = page.entries_added + 1
            for event, number in zip(page.events, page.numbers, strict=True):
                at.cursor, at.expected = StreamId.parse(event.id or "0-0"), number + 1
                yield event
            if len(page.events) < page_size:
                return

    def _join(self, session_id: str, cursor: StreamId) -> tuple[_Subscriber, StreamId]:
        if self._closed:
            raise EventLogError("the server is shutting down", transient=True)
        key = self.log.key(session_id)
        read = self._read_of(session_id)
        subscriber = _Subscriber(key, self.log.settings.tail_queue, read)
        stream = read.streams.get(key)
        if stream is None:
            stream = read.streams[key] = _Stream(session_id, cursor)
            self._wake(read)
        stream.subscribers.add(subscriber)
        self._ensure_reader(read)
        return subscriber, stream.cursor

    def _read_of(self, session_id: str) -> _Read:
        partition = self.log.keys.partition(session_id)
        read = self._reads.get(partition)
        if read is None:
            read = self._reads[partition] = _Read(
                self.log.keys.wake(partition, self.reader_id), BlockingReads(self.log.redis))
        return read

    def _leave(self, subscriber: _Subscriber) -> None:
        read = subscriber.read
        stream = read.streams.get(subscriber.key)
        if stream is None:
            return
        stream.subscribers.discard(subscriber)
        if not stream.subscribers:
            del read.streams[subscriber.key]  # drops out of the next read; no wake needed

    def _fail_all(self, error: VoxlineError, only: _Read | None = None) -> None:
        for read in self._reads.values() if only is None else (only,):
            streams, read.streams = read.streams, {}
            for stream in streams.values():
                for subscriber in stream.subscribers:
                    subscriber.fail(error)

    # ---- the one live read ------------------------------------------------------------

    def _ensure_reader(self, read: _Read) -> None:
        if read.task is None or read.task.done():
            read.task = asyncio.create_task(self._read_forever(read), name="log-fanout")

    def _wake(self, read: _Read) -> None:
        """The set of streams changed: make the live read start over with the new set."""
        read.changed.set()
        if not read.blocking or read.wake_pending:
            return
        read.wake_pending = True
        task = asyncio.create_task(self._send_wake(read), name="log-fanout-wake")
        self._wakers.add(task)
        task.add_done_callback(self._wakers.discard)

    async def _send_wake(self, read: _Read) -> None:
        try:
            async with self.log.redis.pipeline(transaction=False) as pipe:
                pipe.xadd(read.wake_key, {"w": "1"}, maxlen=_WAKE_MAXLEN, approximate=False)
                pipe.pexpire(read.wake_key, _WAKE_TTL_MS)
                await pipe.execute()
        except RedisError as exc:  # the read then notices the change within block_ms
            logger.warning("could not wake the log fanout: %s", exc)

    async def _read_forever(self, read: _Read) -> None:
        outage = Outage(self.log.settings.outage_grace_s)
        while not self._closed:
            if not read.streams:
                read.changed.clear()
                await read.changed.wait()
                continue
            try:
                await self._read_once(read)
                outage.ended()
            except RedisError as exc:
                # within the grace the subscribers wait: the next read goes on from their
                # cursors, on the node that holds the slot by then (a failover moves it)
                if outage.failed():
                    logger.warning("log fanout read failed, trying again: %s", exc)
                    await asyncio.sleep(outage.pause_s())
                else:
                    logger.warning("log fanout read failed: %s", exc)
                    self._fail_all(EventLogError(f"event log unavailable: {exc}"), read)
                    outage.ended()
                    await asyncio.sleep(_RETRY_S)
                await refresh_topology(self.log.redis)
            except Exception as exc:  # a bug: fail the tails rather than leave them hanging
                logger.exception("log fanout failed")
                self._fail_all(EventLogError(f"event log reader failed: {exc!r}"), read)
                await asyncio.sleep(_RETRY_S)

    async def _read_once(self, read: _Read) -> None:
        read.changed.clear()
        read.wake_pending = False
        issued = {key: stream.cursor for key, stream in read.streams.items()}
        keys: dict[Any, Any] = {key: str(cursor) for key, cursor in issued.items()}
        keys[read.wake_key] = read.wake_cursor
        # at most one buffer's worth per stream and read: a burst alone never drops a
        # reader that keeps up; it is dropped when it still holds a buffer from before
        count = min(self.log.settings.read_count, self.log.settings.tail_queue)
        read.blocking = True
        try:
            reply: Any = await read.connection.xread(keys, count=count, block_ms=self.block_ms)
        finally:
            read.blocking = False
        reraise_lost_cancel()
        self.reads += 1
        for raw_key, entries in reply or ():
            key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
            if key == read.wake_key:
                read.wake_cursor = _id_text(entries[-1][0])
                continue
            stream = read.streams.get(key)
            if stream is None or stream.cursor < issued[key]:
                # its last subscriber left during the read (and maybe a new one came,
                # from further back: the next read starts there)
                continue
            for entry_id, raw in entries:
                event = decode_entry(stream.session_id, entry_id, raw)
                number = entry_number(raw)
                stream.cursor = StreamId.parse(entry_id)
                if self.on_deliver is not None and stream.subscribers:
                    self.on_deliver(event.ts)
                for subscriber in list(stream.subscribers):
                    if not subscriber.push(event, number):
                        stream.subscribers.discard(subscriber)
            if not stream.subscribers:
                read.streams.pop(key, None)


def _id_text(entry_id: bytes | str) -> str:
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id
