"""The shape every background worker on the feed stream shares (auto-play, re-transcription).

A worker is one consumer of a consumer group on ``{prefix}:feed``, whose entries point at
session events (``session``, ``event`` id, ``type``). For each delivery of a type it acts
on, :meth:`FeedWorker.handle`:

1. folds the session's log up to and including the event the entry points at (a
   :class:`Job`: the state *as of that event*, so a later ``session.update`` cannot change
   what a half-done job produces when another worker resumes it), reading on from where the
   session stood at its last entry this worker handled (:class:`SessionFolds`), so that an
   entry costs what came since, not the whole call;
2. asks the worker whether anything is left to do (:meth:`FeedWorker.wanted`, a cheap
   check against the log: the worker's own results come after the event);
3. takes a per-subject :class:`Lease` in Redis (``SET NX PX``, renewed while working,
   released only by its holder), reads what was appended meanwhile, checks again, and calls
   :meth:`FeedWorker.act`, which appends through :meth:`Job.append` (the lease is checked,
   and renewed, before every append).

The delivery is acknowledged when ``act`` returns (or when there was nothing to do). When
the subject is leased by someone else, :class:`LeaseBusy` leaves the entry pending: it is
claimed again after ``claim_idle_ms``, when the holder has finished (then it is a no-op) or
died (then its lease has expired and the work is resumed). While a job runs, its entry's idle
time is reset at every lease renewal (``XCLAIM … JUSTID``, which does not count as a
delivery), so a live worker's entry is neither claimed by others nor dead-lettered.

What is left to exclude: a holder that stalls for longer than the lease between its last
renewal and an append (the check and the append are two round trips; closing that needs a
fencing token checked inside the append script).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from pipeline.log import (
    AppendResult,
    Delivery,
    EventLog,
    FeedReader,
    SessionState,
    fold,
    run_worker,
)
from pipeline.workers._folds import SessionFolds
from schemas import Event, EventBase, EventLogError, ResyncRequiredError

__all__ = ["FeedEntry", "FeedWorker", "Job", "Lease", "LeaseBusy", "LeaseLost"]

logger = logging.getLogger(__name__)

_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LeaseBusy(Exception):
    """Another worker holds the subject's lease: leave the entry pending, try later."""


class LeaseLost(Exception):
    """The lease expired or was taken over while we worked: stop without appending."""


class Lease:
    """A token-checked lease on one key: ``acquire`` (SET NX PX), ``renew``, ``release``.

    ``acquire`` is idempotent for its holder (a retried SET whose reply was lost finds our
    own token and succeeds); ``renew`` never re-acquires an expired lease, because someone
    may have taken it and finished in between.
    """

    def __init__(self, redis: Redis, key: str, ttl_ms: int, *, token: str | None = None) -> None:
        if ttl_ms < 3:
            raise ValueError("the lease must last at least 3 ms")
        self.redis = redis
        self.key = key
        self.ttl_ms = ttl_ms
        self.token = token or uuid.uuid4().hex
        self.lost = False
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    async def acquire(self) -> bool:
        return bool(await self._acquire(keys=[self.key], args=[self.token, self.ttl_ms]))

    async def renew(self) -> bool:
        if not self.lost and not await self._renew(keys=[self.key], args=[self.token, self.ttl_ms]):
            self.lost = True
        return not self.lost

    async def check(self) -> None:
        """Renew now; raise :class:`LeaseLost` when the lease is no longer ours."""
        if not await self.renew():
            raise LeaseLost(f"lease {self.key} is no longer held")

    async def release(self) -> None:
        await self._release(keys=[self.key], args=[self.token])


@dataclass(frozen=True)
class FeedEntry:
    """What a feed entry points at."""

    session_id: str
    event_id: str
    type: str

    @classmethod
    def parse(cls, fields: Mapping[bytes, bytes]) -> FeedEntry | None:
        try:
            return cls(
                fields[b"session"].decode(), fields[b"event"].decode(), fields[b"type"].decode()
            )
        except (KeyError, UnicodeDecodeError):
            return None


@dataclass
class Job:
    """One feed entry resolved against its session's log.

    ``state`` is the fold of the log up to and including :attr:`event`; :attr:`after` holds
    what came later (where a worker finds its own earlier results). ``events`` are those
    read for it: from the log's start, or from the session's previous entry on (what came
    before the event is in ``state``, not in ``events``). A job lives as long as its
    handling: ``state`` is the worker's fold, which its next entry of the session moves on.
    """

    entry: FeedEntry
    events: list[Event]
    index: int
    state: SessionState
    log: EventLog
    lease: Lease | None = field(default=None, repr=False)

    @property
    def event(self) -> Event:
        return self.events[self.index]

    @property
    def after(self) -> Sequence[Event]:
        return self.events[self.index + 1 :]

    async def refresh(self) -> None:
        """Read what was appended since this job's last read."""
        last = self.events[-1].id
        self.events.extend(await self.log.read_all(self.entry.session_id, after=last))

    async def append(self, events: Sequence[EventBase]) -> AppendResult:
        """Append atomically, after checking (and renewing) this job's lease."""
        if self.lease is not None:
            await self.lease.check()
        result = await self.log.append_batch(events)
        self.events.extend(result.events)
        return result


class FeedWorker(abc.ABC):
    """A consumer group on the feed stream that acts on some event types.

    Subclasses set :attr:`group` and :attr:`event_types` and implement :meth:`wanted` and
    :meth:`act`; both must be idempotent against the log (a job may have been half done by a
    worker that died). Run it with :meth:`run` (or :meth:`start` / :meth:`stop`); cancelling
    the task stops it cleanly: the lease is released and the entry stays pending.
    """

    #: the consumer group's name
    group: ClassVar[str]
    #: feed entry types this worker acts on; others are acknowledged untouched
    event_types: ClassVar[frozenset[str]]

    def __init__(
        self,
        log: EventLog,
        *,
        consumer: str,
        lease_ms: int = 10_000,
        block_ms: int = 1000,
    ) -> None:
        self.log = log
        self.lease_ms = lease_ms
        self.block_ms = block_ms
        self.reader = FeedReader(log.redis, log.feed_keys, self.group, consumer, log.settings)
        self.folds = SessionFolds(log.settings.worker_folds, log.settings.worker_fold_ttl_s)
        self._task: asyncio.Task[None] | None = None

    # ---- what a worker decides --------------------------------------------------------

    @abc.abstractmethod
    def wanted(self, job: Job) -> bool:
        """Whether ``job`` still needs work, judged from the log (called before and after
        the lease is taken)."""

    @abc.abstractmethod
    async def act(self, job: Job) -> None:
        """Do the work; append only through :meth:`Job.append`."""

    def lease_subject(self, job: Job) -> str:
        """What the lease covers; by default the event the entry points at."""
        return job.entry.event_id

    def lease_key(self, session_id: str, subject: str) -> str:
        return f"{self.log.settings.key_prefix}:lease:{self.group}:{session_id}:{subject}"

    # ---- the shared code path ---------------------------------------------------------

    async def handle(self, delivery: Delivery) -> None:
        """Handle one delivery; returns when it may be acknowledged, raises to leave it
        pending (:class:`LeaseBusy`, :class:`LeaseLost`, a transient failure)."""
        entry = FeedEntry.parse(delivery.fields)
        if entry is None or entry.type not in self.event_types:
            return
        job = await self.load(entry)
        if job is None:
            return
        try:
            if not self.wanted(job):
                return
            async with self._leased(job, delivery):
                await job.refresh()
                if self.wanted(job):
                    await self.act(job)
        finally:  # the fold as of this entry, for the session's next one
            self.folds.keep(job.state)

    async def load(self, entry: FeedEntry) -> Job | None:
        """The job for ``entry``, or ``None`` when its event is no longer in the log."""
        held = self.folds.take(entry.session_id, entry.event_id)
        if held is not None:
            job = await self._load_on(entry, held)
            if job is not None:
                return job
        return await self._load_all(entry)

    async def _load_on(self, entry: FeedEntry, state: SessionState) -> Job | None:
        """The job, from a fold as of an earlier event; ``None`` when what came since
        cannot be read from there (trimmed past it, erased): then from the start."""
        assert state.last_event_id is not None
        try:
            events = await self.log.read_all(entry.session_id, after=state.last_event_id)
        except ResyncRequiredError:
            return None
        index = _index_of(events, entry.event_id)
        if index is None:
            return None
        for event in events[: index + 1]:
            state.apply(event)
        return Job(entry, events, index, state, self.log)

    async def _load_all(self, entry: FeedEntry) -> Job | None:
        try:
            events = await self.log.read_all(entry.session_id)
        except ResyncRequiredError:
            logger.warning(
                "%s: session %s was trimmed; skipping %s",
                self.group,
                entry.session_id,
                entry.event_id,
            )
            return None
        index = _index_of(events, entry.event_id)
        if index is None:
            return None
        state = fold(entry.session_id, events[: index + 1])
        return Job(entry, events, index, state, self.log)

    @contextlib.asynccontextmanager
    async def _leased(self, job: Job, delivery: Delivery) -> AsyncIterator[None]:
        key = self.lease_key(job.entry.session_id, self.lease_subject(job))
        lease = Lease(
            self.log.redis, key, self.lease_ms, token=f"{self.reader.consumer}:{uuid.uuid4().hex}"
        )
        if not await lease.acquire():
            raise LeaseBusy(f"{key} is held by another worker")
        job.lease = lease
        keeper = asyncio.create_task(self._keep(lease, delivery))
        try:
            yield
        finally:
            keeper.cancel()
            try:
                await asyncio.wait({keeper})
                if not keeper.cancelled() and keeper.exception() is not None:
                    logger.error("keeping %s failed", key, exc_info=keeper.exception())
            finally:
                await _release(lease)

    async def _keep(self, lease: Lease, delivery: Delivery) -> None:
        """Renew the lease and reset the entry's idle time, every third of the lease."""
        while not lease.lost:
            await asyncio.sleep(lease.ttl_ms / 3000)
            try:
                if not await lease.renew():
                    return
                await self.log.redis.xclaim(
                    delivery.stream,
                    self.group,
                    self.reader.consumer,
                    0,
                    [delivery.entry_id],
                    justid=True,
                )
            except (RedisError, EventLogError):
                logger.warning("renewing %s failed", lease.key, exc_info=True)

    # ---- running ----------------------------------------------------------------------

    async def run(self) -> None:
        """Handle deliveries until cancelled (stuck entries are claimed on every read)."""
        await run_worker(self.reader, self.handle, block_ms=self.block_ms,
                         retry_later=(LeaseBusy, LeaseLost),
                         outage_grace_s=self.log.settings.outage_grace_s)

    def start(self) -> asyncio.Task[None]:
        """Run in a task of the current loop (once); :meth:`stop` ends it."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name=f"{self.group}-worker")
        return self._task

    async def stop(self) -> None:
        """Cancel the running task and wait for it; pending work is taken over later."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.wait({task})
        if not task.cancelled():
            task.result()  # it had failed before the cancel: surface why


def _index_of(events: Sequence[Event], event_id: str) -> int | None:
    return next((i for i, e in enumerate(events) if e.id == event_id), None)


async def _release(lease: Lease) -> None:
    try:
        await lease.release()
    except RedisError:  # it expires on its own
        logger.warning("could not release %s", lease.key, exc_info=True)
