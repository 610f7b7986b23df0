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

The live read re-issues its XREAD when the set of streams changes: a new stream wakes a
blocked read by appending to a small stream of this reader's own, which is part of every
XREAD it sends. Streams that lose their last subscriber simply drop out of the next read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from pipeline.aio import reraise_lost_cancel
from pipeline.log._codec import decode_entry, entry_number
from pipeline.log.eventlog import ZERO, EventLog, StreamId, parse_cursor
from schemas import Event, EventLogError, OverloadedError, ResyncRequiredError, VoxlineError

logger = logging.getLogger(__name__)

_WAKE_MAXLEN = 8
_WAKE_TTL_MS = 600_000
_RETRY_S = 0.5


class _Subscriber:
    """One tail's buffer: events the live read handed over and the tail has not yielded."""

    def __init__(self, key: str, limit: int) -> None:
        self.key = key
        self.limit = limit
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
    cursor: StreamId
    subscribers: set[_Subscriber] = field(default_factory=set)


class LogFanout:
    """Tails of many sessions over one Redis connection. One per process; share it.

    The reader task starts with the first subscriber (on the loop that serves it) and
    stops with :meth:`aclose`.
    """

    def __init__(self, log: EventLog, *, block_ms: int = 2000) -> None:
        self.log = log
        self.block_ms = block_ms
        self.wake_key = f"{log.settings.key_prefix}:fanout:{uuid.uuid4().hex}"
        self._streams: dict[str, _Stream] = {}
        self._changed = asyncio.Event()
        self._wake_cursor = "0-0"
        self._wake_pending = False
        self._blocking = False
        self._task: asyncio.Task[None] | None = None
        self._wakers: set[asyncio.Task[None]] = set()
        self._closed = False
        #: live reads sent (a figure for tests and benchmarks)
        self.reads = 0

    # ---- what callers see -------------------------------------------------------------

    @property
    def subscribers(self) -> int:
        return sum(len(stream.subscribers) for stream in self._streams.values())

    @property
    def streams(self) -> int:
        return len(self._streams)

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
        for task in (self._task, *self._wakers):
            if task is not None:
                task.cancel()
        for task in (self._task, *self._wakers):
            if task is not None:
                with contextlib.suppress(BaseException):
                    await task
        self._fail_all(EventLogError("the server is shutting down", transient=True))
        with contextlib.suppress(Exception):
            await self.log.redis.delete(self.wake_key)

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
        subscriber = _Subscriber(key, self.log.settings.tail_queue)
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _Stream(cursor)
            self._wake()
        stream.subscribers.add(subscriber)
        self._ensure_reader()
        return subscriber, stream.cursor

    def _leave(self, subscriber: _Subscriber) -> None:
        stream = self._streams.get(subscriber.key)
        if stream is None:
            return
        stream.subscribers.discard(subscriber)
        if not stream.subscribers:
            del self._streams[subscriber.key]  # drops out of the next read; no wake needed

    def _fail_all(self, error: VoxlineError) -> None:
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            for subscriber in stream.subscribers:
                subscriber.fail(error)

    # ---- the one live read ------------------------------------------------------------

    def _ensure_reader(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._read_forever(), name="log-fanout")

    def _wake(self) -> None:
        """The set of streams changed: make the live read start over with the new set."""
        self._changed.set()
        if not self._blocking or self._wake_pending:
            return
        self._wake_pending = True
        task = asyncio.create_task(self._send_wake(), name="log-fanout-wake")
        self._wakers.add(task)
        task.add_done_callback(self._wakers.discard)

    async def _send_wake(self) -> None:
        try:
            async with self.log.redis.pipeline(transaction=False) as pipe:
                pipe.xadd(self.wake_key, {"w": "1"}, maxlen=_WAKE_MAXLEN, approximate=False)
                pipe.pexpire(self.wake_key, _WAKE_TTL_MS)
                await pipe.execute()
        except RedisError as exc:  # the read then notices the change within block_ms
            logger.warning("could not wake the log fanout: %s", exc)

    async def _read_forever(self) -> None:
        while not self._closed:
            if not self._streams:
                self._changed.clear()
                await self._changed.wait()
                continue
            try:
                await self._read_once()
            except RedisError as exc:
                logger.warning("log fanout read failed: %s", exc)
                self._fail_all(EventLogError(f"event log unavailable: {exc}"))
                await asyncio.sleep(_RETRY_S)
            except Exception as exc:  # a bug: fail the tails rather than leave them hanging
                logger.exception("log fanout failed")
                self._fail_all(EventLogError(f"event log reader failed: {exc!r}"))
                await asyncio.sleep(_RETRY_S)

    async def _read_once(self) -> None:
        self._changed.clear()
        self._wake_pending = False
        issued = {key: stream.cursor for key, stream in self._streams.items()}
        keys: dict[Any, Any] = {key: str(cursor) for key, cursor in issued.items()}
        keys[self.wake_key] = self._wake_cursor
        # at most one buffer's worth per stream and read: a burst alone never drops a
        # reader that keeps up; it is dropped when it still holds a buffer from before
        count = min(self.log.settings.read_count, self.log.settings.tail_queue)
        self._blocking = True
        try:
            reply: Any = await self.log.redis.xread(keys, count=count, block=self.block_ms)
        finally:
            self._blocking = False
        reraise_lost_cancel()
        self.reads += 1
        prefix = len(self.log.key(""))
        for raw_key, entries in reply or ():
            key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
            if key == self.wake_key:
                self._wake_cursor = _id_text(entries[-1][0])
                continue
            stream = self._streams.get(key)
            if stream is None or stream.cursor < issued[key]:
                # its last subscriber left during the read (and maybe a new one came,
                # from further back: the next read starts there)
                continue
            session_id = key[prefix:]
            for entry_id, raw in entries:
                event = decode_entry(session_id, entry_id, raw)
                number = entry_number(raw)
                stream.cursor = StreamId.parse(entry_id)
                for subscriber in list(stream.subscribers):
                    if not subscriber.push(event, number):
                        stream.subscribers.discard(subscriber)
            if not stream.subscribers:
                self._streams.pop(key, None)


def _id_text(entry_id: bytes | str) -> str:
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id
