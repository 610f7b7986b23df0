"""What the shared live reader (:class:`pipeline.log.LogFanout`) holds: each tail's
bounded buffer, each followed stream's position, each partition's read."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from pipeline.log._blocking import BlockingReads
from pipeline.log._push import Subscription
from pipeline.log.streamid import StreamId
from schemas import Event, OverloadedError, VoxlineError


class Subscriber:
    """One tail's buffer: events the live read handed over and the tail has not yielded."""

    def __init__(self, key: str, limit: int, read: PartitionRead) -> None:
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
class Position:
    """Where a tail is: the last id it yielded and the number the next entry must have."""

    cursor: StreamId
    expected: int = 0


@dataclass
class Stream:
    session_id: str
    cursor: StreamId
    expected: int  # the number of the next entry to hand out
    subscribers: set[Subscriber] = field(default_factory=set)
    #: a read stopped at an append of this process awaiting its reply: read again once
    #: it is handed out
    reread: bool = False


class PartitionRead:
    """The live read of one partition (of everything, standalone): its streams, its wake
    stream and the task that reads them."""

    def __init__(self, wake_key: str, changes_key: str, connection: BlockingReads,
                 push: bool = False) -> None:
        self.wake_key = wake_key
        self.changes_key = changes_key
        self.connection = connection  # its own: cancelling the read never harms the pool
        self.streams: dict[str, Stream] = {}
        #: the last changes entry seen; ``None`` (new, or after a failure): read all once
        self.changes_cursor: str | None = None
        #: streams to read now: named by the changes stream, new here, or all of them
        self.dirty: set[str] = set()
        self.changed = asyncio.Event()
        self.wake_cursor = "0-0"
        self.wake_pending = False
        self.blocking = False
        self.task: asyncio.Task[None] | None = None
        #: pushed reads (:mod:`pipeline.log._push`): the subscription, the streams it
        #: names, whether one joined since, when the changes stream is read next and
        #: whether anything was heard since the last such read
        self.subscription = Subscription(connection.redis, self.changed) if push else None
        self.subscribed: set[str] = set()
        self.joined = False
        self.next_sweep = 0.0
        self.sweep_timer: asyncio.TimerHandle | None = None
        self.heard = False
        self.quiet_since = 0.0
