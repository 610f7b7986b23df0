"""One live reader of the session log per process, shared by every tail it serves.

:meth:`EventLog.tail` holds a Redis connection per reader (an XREAD BLOCK of its own), so
a replica with many idle sockets runs its Redis pool dry. :class:`LogFanout` reads the
streams of all its current subscribers over one connection (per partition) and hands
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

**A read names what changed.** Every append also names its stream in its partition's
changes stream (one entry per append, in the same script, so the entry is there when the
name is: :mod:`pipeline.log.keys`). The live read blocks on that stream only (and on a
small wake stream of its own), then reads the streams it named that have subscribers here,
from their cursors: a read carries one key or a few, not every key this reader follows
(at 1,000 idle sockets that was ~70 KB a read). A new subscriber's stream is read at once
(the wake stream interrupts a blocked read); a reader that starts, fails or falls behind
the changes stream's trim reads all its streams once. A quiet ``block_ms`` also reads all
of them once, so a writer that names nothing (an older version, during a rolling upgrade)
is late by at most that, never unheard. A small append alone (a text delta) is carried
whole by its changes entry and handed out from it, without a read of its stream
(:mod:`pipeline.log._live_read`, which holds the reading loop).

**Its own appends are not read back.** A Gateway appends its sessions' replies itself, so
the events its sockets are sent are nearly all its own: :meth:`EventLog.append_batch`
tells this reader each batch it wrote, and the batch goes to the stream's tails at once
when its numbers follow what they were given (nothing of another writer's between) and
they have room; else the live read brings it, as any other. Either way by id, once: the
read skips what was handed out, the changes entry names the append's last id so an
append handed out already wakes no read of its stream, and a read that meets an append
of ours still awaiting its reply stops there and leaves it to the append. (Measured with
``loadtests/bench_log_scale.py``'s live sessions: these two took a Gateway from ~2,000
to 5,000 sockets held on this 2-core machine.)

**Redis pushes the appends** (``EventLogSettings.live_read``, ``push`` by default;
:mod:`pipeline.log._push`). Blocking on the changes stream, every reader of a partition
is woken by every append there; with sockets spread over Gateways each event cost one
read per Gateway. Instead the append script also publishes its changes entry on a shard
channel named as the session's stream, and the live read subscribes to the streams it
follows: it hears its own sessions only, and a small event arrives whole, with no read;
an append only this process's reader follows is not published at all. The changes
stream stays the truth: the pushed read also reads it, without blocking, every
``SWEEP_S``, so an append whose push was lost is late by at most that (with
``push_only`` the changes stream is neither written nor read: one write less an append,
and no reader reads every append of its partitions; only once every Gateway pushes).

On a Redis Cluster one XREAD may only name keys of one slot, so there is one live read per
partition that has subscribers (:mod:`pipeline.log.keys`: a partition's sessions share a
slot, and its changes stream and the reader's wake stream are in that slot too): the
partitions' reads block side by side, at most ``partitions`` of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable

from redis.exceptions import RedisError

from pipeline.aio import reraise_lost_cancel
from pipeline.log._blocking import BlockingReads
from pipeline.log._fanout_state import PartitionRead, Position, Stream, Subscriber
from pipeline.log._live_read import LiveReads
from pipeline.log._records import AppendResult
from pipeline.log.eventlog import EventLog
from pipeline.log.streamid import ZERO, StreamId, parse_cursor
from schemas import Event, EventLogError, ResyncRequiredError, VoxlineError

logger = logging.getLogger(__name__)

_WAKE_MAXLEN = 8
_WAKE_TTL_MS = 600_000


class LogFanout(LiveReads):
    """Tails of many sessions over one Redis connection. One per process; share it.

    The reader task starts with the first subscriber (on the loop that serves it) and
    stops with :meth:`aclose`.
    """

    def __init__(self, log: EventLog, *, block_ms: int = 2000,
                 on_deliver: Callable[[int], None] | None = None) -> None:
        self.log = log
        self.block_ms = block_ms
        #: appends pushed by Redis (:mod:`pipeline.log._push`) instead of a blocking read
        #: of the changes stream (by the log's ``live_read``), and whether the pushed read
        #: also reads the changes stream (not when it is not written)
        self.push = log.settings.live_read != "changes"
        self.sweeps = log.settings.live_read != "push_only"
        #: told the time (``ts``, ms) of each event as it is handed to its readers
        self.on_deliver = on_deliver
        self.reader_id = uuid.uuid4().hex
        self._reads: dict[int, PartitionRead] = {}
        self._wakers: set[asyncio.Task[None]] = set()
        self._closed = False
        log.appended.append(self._appended)
        log.unheard.append(self._unheard)
        log.subscribed_here.append(self._subscribed)
        #: live reads sent, and the session streams they named (figures for tests and
        #: benchmarks)
        self.reads = 0
        self.keys_read = 0
        #: appends Redis pushed here (a figure for tests and benchmarks)
        self.pushes = 0

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
        at = Position(parse_cursor(after) if after else ZERO)
        async for event in self._catch_up(session_id, at):
            yield event
        subscriber, live_from = self._join(session_id, at)
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
        with contextlib.suppress(ValueError):
            self.log.appended.remove(self._appended)
        with contextlib.suppress(ValueError):
            self.log.unheard.remove(self._unheard)
        with contextlib.suppress(ValueError):
            self.log.subscribed_here.remove(self._subscribed)
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
            if read.sweep_timer is not None:
                read.sweep_timer.cancel()
            if read.subscription is not None:  # a pushed read never writes its wake stream
                await read.subscription.aclose()
                continue
            with contextlib.suppress(Exception):
                await self.log.redis.delete(read.wake_key)

    # ---- subscribers ------------------------------------------------------------------

    async def _catch_up(self, session_id: str, at: Position) -> AsyncIterator[Event]:
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

    def _join(self, session_id: str, at: Position) -> tuple[Subscriber, StreamId]:
        if self._closed:
            raise EventLogError("the server is shutting down", transient=True)
        key = self.log.key(session_id)
        read = self._read_of(session_id)
        subscriber = Subscriber(key, self.log.settings.tail_queue, read)
        stream = read.streams.get(key)
        if stream is None:
            stream = read.streams[key] = Stream(session_id, at.cursor, at.expected)
            read.dirty.add(key)
            read.joined = True
            self._wake(read)
        stream.subscribers.add(subscriber)
        self._ensure_reader(read)
        return subscriber, stream.cursor

    def _read_of(self, session_id: str) -> PartitionRead:
        partition = self.log.keys.partition(session_id)
        read = self._reads.get(partition)
        if read is None:
            read = self._reads[partition] = PartitionRead(
                self.log.keys.wake(partition, self.reader_id),
                self.log.keys.changes(partition), BlockingReads(self.log.redis),
                push=self.push)
        return read

    def _leave(self, subscriber: Subscriber) -> None:
        read = subscriber.read
        stream = read.streams.get(subscriber.key)
        if stream is None:
            return
        stream.subscribers.discard(subscriber)
        if not stream.subscribers:
            del read.streams[subscriber.key]  # drops out of the next read; no wake needed

    def _appended(self, result: AppendResult) -> None:
        """Events this process appended: handed out at once, without reading them back,
        when they follow what this stream's tails were given (by number: nothing of
        another writer's between) and while every tail has room; else the live read
        brings them (the append's changes entry marks the stream), in order, a buffer's
        worth a read as always."""
        read, key = self._existing_read(result.events[0].session_id)
        stream = None if read is None else read.streams.get(key)
        if read is None or stream is None:
            return
        for offset, event in enumerate(result.events):
            number = result.first_number + offset
            if StreamId.parse(event.id or "0-0") <= stream.cursor:
                continue  # the live read was first
            if number > stream.expected or any(
                    len(subscriber.items) >= subscriber.limit
                    for subscriber in stream.subscribers):
                self._read_again(read, key)  # its push may have been left to us
                break
            # (a number below the expected one: a failover lost entries the tails were
            # given; handed out, the tails see the numbers go back and ask to resync)
            self._hand_out(stream, event, number)
        if stream.reread:  # a read stopped at this append: what came after it is due now
            stream.reread = False
            self._read_again(read, key)
        if not stream.subscribers:
            read.streams.pop(key, None)

    def _unheard(self, session_id: str) -> None:
        """An append of ours ended without handing its events out (a duplicate, an error,
        a cancel): whatever of it landed, its push may have been left to it; read it."""
        read, key = self._existing_read(session_id)
        if read is not None:
            self._read_again(read, key)

    def _subscribed(self, session_id: str) -> bool:
        """Whether a tail here follows the session and Redis pushes its appends here (a
        confirmed subscription, kept while an append of this process to it is in flight:
        ``_resubscribe``), so that an append of ours need not be published when no other
        reader follows it (:attr:`EventLog.subscribed_here`)."""
        read, key = self._existing_read(session_id)
        return (read is not None and key in read.subscribed and key in read.streams
                and read.subscription is not None and read.subscription.error is None)

    def _existing_read(self, session_id: str) -> tuple[PartitionRead | None, str]:
        """The live read of the session's partition if there is one (:meth:`_read_of`
        makes it) and the session's key (not looked up in a process that reads nothing:
        it only appends, and each append asks)."""
        if not self._reads:
            return None, ""
        return self._reads.get(self.log.keys.partition(session_id)), self.log.key(session_id)

    def _read_again(self, read: PartitionRead, key: str) -> None:
        if key in read.streams:
            read.dirty.add(key)
            self._wake(read)

    def _hand_out(self, stream: Stream, event: Event, number: int) -> None:
        stream.cursor, stream.expected = StreamId.parse(event.id or "0-0"), number + 1
        if self.on_deliver is not None and stream.subscribers:
            self.on_deliver(event.ts)
        for subscriber in list(stream.subscribers):
            if not subscriber.push(event, number):
                stream.subscribers.discard(subscriber)

    def _fail_all(self, error: VoxlineError, only: PartitionRead | None = None) -> None:
        for read in self._reads.values() if only is None else (only,):
            streams, read.streams = read.streams, {}
            for stream in streams.values():
                for subscriber in stream.subscribers:
                    subscriber.fail(error)

    # ---- the one live read ------------------------------------------------------------

    def _ensure_reader(self, read: PartitionRead) -> None:
        if read.task is None or read.task.done():
            read.task = asyncio.create_task(self._read_forever(read), name="log-fanout")

    def _wake(self, read: PartitionRead) -> None:
        """A stream joined: make a blocked live read return, to read it."""
        read.changed.set()
        if not read.blocking or read.wake_pending:
            return
        read.wake_pending = True
        task = asyncio.create_task(self._send_wake(read), name="log-fanout-wake")
        self._wakers.add(task)
        task.add_done_callback(self._wakers.discard)

    async def _send_wake(self, read: PartitionRead) -> None:
        try:
            async with self.log.redis.pipeline(transaction=False) as pipe:
                pipe.xadd(read.wake_key, {"w": "1"}, maxlen=_WAKE_MAXLEN, approximate=False)
                pipe.pexpire(read.wake_key, _WAKE_TTL_MS)
                await pipe.execute()
        except RedisError as exc:  # the read then notices the change within block_ms
            logger.warning("could not wake the log fanout: %s", exc)
