"""The live read of one partition, as :class:`pipeline.log.LogFanout` runs it: wait for
the appends Redis pushes (or block on the partition's changes stream), mark the followed
streams they name, read those from their cursors and hand out what came; ride out an
outage for ``outage_grace_s``.

An append of one small event is carried whole by its changes entry
(``CHANGES_INLINE_BYTES``): when it is the very next entry its tails are due, it is
handed out from there, and its stream is not read at all (one round trip an event, not
two: most events of a reply are text deltas). Anything else (audio, a batch, a gap in
the numbers, tails without room) is read from the stream, as always.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.exceptions import RedisError

from pipeline.aio import reraise_lost_cancel
from pipeline.log._blocking import refresh_topology
from pipeline.log._codec import decode_entry, entry_number
from pipeline.log._fanout_state import PartitionRead, Stream
from pipeline.log._outage import Outage
from pipeline.log._push import SWEEP_S, Subscription
from pipeline.log.eventlog import EventLog
from pipeline.log.keys import CHANGES_MAXLEN
from pipeline.log.streamid import StreamId
from schemas import Event, EventLogError, VoxlineError

logger = logging.getLogger("pipeline.log.fanout")

#: changes read at once; a full page may mean the reader is behind the stream's trim
_CHANGES_PAGE = CHANGES_MAXLEN // 10
_RETRY_S = 0.5


class LiveReads:
    """The reading half of :class:`pipeline.log.LogFanout` (which holds the subscribers
    and hands events out)."""

    log: EventLog
    block_ms: int
    reads: int
    keys_read: int
    pushes: int
    sweeps: bool
    _closed: bool

    def _hand_out(self, stream: Stream, event: Event, number: int) -> None:
        raise NotImplementedError

    def _fail_all(self, error: VoxlineError, only: PartitionRead | None = None) -> None:
        raise NotImplementedError

    async def _read_forever(self, read: PartitionRead) -> None:
        outage = Outage(self.log.settings.outage_grace_s)
        while not self._closed:
            if not read.streams and not read.subscribed:
                if read.subscription is not None:
                    read.subscription.inbox.clear()  # pushes still in flight as it left
                read.changed.clear()
                await read.changed.wait()
                continue
            try:
                await self._read_once(read)
                outage.ended()
            except RedisError as exc:
                read.changes_cursor = None  # what changed meanwhile is unknown: read all
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
                read.changes_cursor = None
                logger.exception("log fanout failed")
                self._fail_all(EventLogError(f"event log reader failed: {exc!r}"), read)
                await asyncio.sleep(_RETRY_S)

    async def _read_once(self, read: PartitionRead) -> None:
        read.changed.clear()
        read.wake_pending = False
        if read.changes_cursor is None:
            if read.subscription is not None:  # starting over: subscribed anew below
                await read.subscription.aclose()
                read.subscribed.clear()
            read.changes_cursor = await self._last_change(read)
            read.dirty.update(read.streams)  # what came before that cursor
        if read.subscription is not None:
            await self._await_pushes(read, read.subscription)
        elif not read.dirty:
            await self._await_changes(read)
        if read.dirty:
            await self._read_streams(read)

    async def _await_pushes(self, read: PartitionRead, subscription: Subscription) -> None:
        """Wait for an append Redis pushes here (or a stream joining, or the sweep's
        time), and take what came; every :data:`SWEEP_S`, read the changes stream too
        (:mod:`pipeline.log._push`)."""
        loop = asyncio.get_running_loop()
        if read.joined or len(read.subscribed) != len(read.streams):
            await self._resubscribe(read, subscription)
        if not read.dirty and not subscription.inbox and loop.time() < read.next_sweep:
            if read.sweep_timer is None:  # one timer a sweep, not one a wait
                read.sweep_timer = loop.call_at(read.next_sweep, read.changed.set)
            await read.changed.wait()
        if subscription.error is not None:
            raise subscription.error
        if subscription.overflowed:  # pushes were dropped: read every stream
            subscription.overflowed = False
            read.dirty.update(read.streams)
        while subscription.inbox:
            self.pushes += 1
            read.heard = True
            await self._take_change(read, subscription.inbox.popleft())
        if loop.time() >= read.next_sweep:
            if self.sweeps:
                await self._sweep(read)
            self._when_quiet(read)
            read.next_sweep = loop.time() + SWEEP_S
            if read.sweep_timer is not None:
                read.sweep_timer.cancel()
                read.sweep_timer = None

    async def _resubscribe(self, read: PartitionRead, subscription: Subscription) -> None:
        """Subscribe to the streams that joined (confirmed before they are read: an
        append after that is pushed here) and leave those that have no tails now."""
        read.joined = False
        following = read.streams.keys()
        # (one with an append of this process in flight stays until it is answered: that
        # append counts on this subscription to tell whether another reader follows it,
        # EventLog.subscribed_here; a wake after it leaves it)
        in_flight = self.log.ids.in_flight
        gone = [key for key in read.subscribed
                if key not in following and in_flight(key) is None]
        new = [key for key in following if key not in read.subscribed]
        read.subscribed.difference_update(gone)
        await subscription.unsubscribe(gone)
        await subscription.subscribe(new, read.changes_key)
        read.subscribed.update(new)

    async def _sweep(self, read: PartitionRead) -> None:
        """Read the changes stream from its cursor, without blocking: what a lost push
        left behind. A cursor this many entries back may be past the trim."""
        seen = 0
        while True:
            reply: Any = await read.connection.xread(
                {read.changes_key: read.changes_cursor}, count=_CHANGES_PAGE, block_ms=None,
                flat=True)
            reraise_lost_cancel()
            self.reads += 1
            entries = reply[0][1] if reply else []
            if entries:
                read.heard = True
                read.changes_cursor = _id_text(entries[-1][0])
            seen += len(entries)
            if seen >= CHANGES_MAXLEN:  # too far behind: from the newest on, and read all
                read.changes_cursor = await self._last_change(read)
                read.dirty.update(read.streams)
                return
            for _, fields in entries:
                await self._take_change(read, fields)
            if len(entries) < _CHANGES_PAGE:
                break

    def _when_quiet(self, read: PartitionRead) -> None:
        """A partition that was quiet for ``block_ms`` (nothing pushed or swept) is read
        whole, as the blocking read does when its block times out."""
        now = asyncio.get_running_loop().time()
        if read.heard:
            read.heard, read.quiet_since = False, now
        elif now - read.quiet_since >= self.block_ms / 1000:
            read.dirty.update(read.streams)  # for writers that name nothing
            read.quiet_since = now

    async def _last_change(self, read: PartitionRead) -> str:
        newest: Any = await self.log.redis.xrevrange(read.changes_key, count=1)
        reraise_lost_cancel()  # that ran on the shared pool, where cancels get lost
        return _id_text(newest[0][0]) if newest else "0-0"

    async def _await_changes(self, read: PartitionRead) -> None:
        """Block until a stream of this partition is appended to (or one joins here);
        mark the ones this reader follows."""
        streams: dict[Any, Any] = {read.changes_key: read.changes_cursor,
                                   read.wake_key: read.wake_cursor}
        read.blocking = True
        try:
            reply: Any = await read.connection.xread(
                streams, count=_CHANGES_PAGE, block_ms=self.block_ms, flat=True)
        finally:
            read.blocking = False
        reraise_lost_cancel()
        self.reads += 1
        if not reply:  # a quiet while: read all once, for writers that name nothing
            read.dirty.update(read.streams)
            return
        for raw_key, entries in reply:
            if _id_text(raw_key) == read.wake_key:
                read.wake_cursor = _id_text(entries[-1][0])
                continue
            read.changes_cursor = _id_text(entries[-1][0])
            if len(entries) >= _CHANGES_PAGE:  # far behind, maybe past the trim: read all
                read.dirty.update(read.streams)
                continue
            for _, fields in entries:
                await self._take_change(read, fields)

    async def _take_change(self, read: PartitionRead, flat: list[bytes]) -> None:
        """One append, as its changes entry (or its push) names it, fields as Redis lists
        them (``k`` and ``i`` first, by the append script): handed out from the entry, or
        its stream marked to read; nothing when no tail here follows it or it was handed
        out already (most entries, so no dict is built for them)."""
        key = _id_text(flat[1])
        stream = read.streams.get(key)
        if stream is None:
            return
        # the append's last id (an entry of a writer before it was named: read the
        # stream): handed out here already, or an append of this process still awaiting
        # its reply, which hands out the events it holds (pushed here when another
        # reader follows the stream too, or swept: Redis runs the script before replying)
        if len(flat) > 3 and flat[2] == b"i":
            last = StreamId.parse(_id_text(flat[3]))
            flying = self.log.ids.in_flight(key)
            if last <= stream.cursor or (flying is not None and last <= flying):
                return
        fields = dict(zip(flat[::2], flat[1::2], strict=True))
        if not await self._hand_out_inline(read, key, stream, fields):
            read.dirty.add(key)

    async def _hand_out_inline(self, read: PartitionRead, key: str, stream: Stream,
                               fields: dict[bytes, bytes]) -> bool:
        """Hand out the event a changes entry carries whole (a small append alone:
        ``CHANGES_INLINE_BYTES``), when it is the very next one the stream's tails are
        due (by number) and they have room; ``False``: read the stream instead."""
        if b"type" not in fields or key in read.dirty or not stream.expected:
            return False
        if entry_number(fields) != stream.expected or any(
                len(subscriber.items) >= subscriber.limit
                for subscriber in stream.subscribers):
            return False
        sealing = await self.log.data_key(stream.session_id) if self.log.keystore else None
        event = decode_entry(stream.session_id, fields[b"i"], fields, sealing)
        self._hand_out(stream, event, entry_number(fields))
        if not stream.subscribers:
            read.streams.pop(key, None)
        return True

    async def _read_streams(self, read: PartitionRead) -> None:
        """Read the marked streams from their cursors (no BLOCK) and hand out what came,
        up to an append of this process still awaiting its reply (as :meth:`_take_change`
        leaves its push: never decoded, and nothing of another writer's behind it goes
        first)."""
        dirty, read.dirty = read.dirty, set()
        issued = {key: read.streams[key].cursor for key in dirty if key in read.streams}
        if not issued:
            return
        # at most one buffer's worth per stream and read: a burst alone never drops a
        # reader that keeps up; it is dropped when it still holds a buffer from before
        count = min(self.log.settings.read_count, self.log.settings.tail_queue)
        try:
            reply: Any = await read.connection.xread(
                {key: str(cursor) for key, cursor in issued.items()}, count=count,
                block_ms=None)
        except BaseException:
            read.dirty |= dirty  # not read: still to read (a failure reads all anyway)
            raise
        reraise_lost_cancel()
        self.reads += 1
        self.keys_read += len(issued)
        for raw_key, entries in reply or ():
            key = _id_text(raw_key)
            stream = read.streams.get(key)
            if stream is None or stream.cursor < issued[key]:
                # its last subscriber left during the read (and maybe a new one came,
                # from further back: it is marked, and the next read starts there)
                continue
            sealing = await self.log.data_key(stream.session_id) if self.log.keystore else None
            flying = self.log.ids.in_flight(key)
            for entry_id, raw in entries:
                entry = StreamId.parse(entry_id)
                if entry <= stream.cursor:
                    continue  # handed out as this process appended it (_appended)
                if flying is not None and entry <= flying:
                    # an append of ours that landed, its reply still on the way: it hands
                    # out the events it holds, then has what follows read (``reread``)
                    stream.reread = True
                    break
                event = decode_entry(stream.session_id, entry_id, raw, sealing)
                self._hand_out(stream, event, entry_number(raw))
            else:
                if len(entries) >= count:
                    read.dirty.add(key)  # more behind this page
            if not stream.subscribers:
                read.streams.pop(key, None)


def _id_text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
