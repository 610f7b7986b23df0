"""The session event log: one Redis stream per session, every event appended before it is sent.

Guarantees, and how they are kept:

* **Idempotent appends.** Every event gets an explicit stream id, strictly increasing per
  session, *before* it is sent. A retried append (redis-py's ``Retry`` after a lost reply,
  or the caller retrying a batch it already stamped) hits ids at or below the stream's
  last id; the append script then compares the stored entries field by field and answers
  ``dup`` instead of writing again. This works on Redis 7.0, which has no idempotent XADD.
* **Atomic batches.** A batch is appended by one Lua script: two writers on one session
  never interleave half-written batches. Another writer's ids collide with ours only when
  both stamp the same millisecond; the loser re-stamps above the winner and tries again.
* **No silent gaps.** Every entry carries ``n``, its 1-based position in the session.
  A reader asking for events after an id below the trim horizon (Redis 7.0's
  ``max-deleted-entry-id``), or a tail whose next ``n`` jumps, gets
  :class:`schemas.ResyncRequiredError`.
* **Retention.** ``MAXLEN`` (optionally approximate) on every append, ``MINID`` by age, and a
  TTL once ``session.closed`` is appended; all from :class:`schemas.EventLogSettings`.

Background workers do not poll every session: appends of selected event types also add a
pointer to one *feed* stream, which workers read with consumer groups
(:mod:`pipeline.log.consumer`). The append script writes both, so on a Redis Cluster they
share a hash tag: sessions are spread over partitions, one feed each (:mod:`pipeline.log.keys`).

* **Replica acknowledgement** (``replica_acks`` > 0): the append is followed, on the same
  connection, by ``WAIT replica_acks replica_ack_timeout_ms``; fewer confirmations in time
  raise a transient :class:`schemas.EventLogError` (``event_log_unavailable``), so the
  event is not sent. Its retry with the same ids is a duplicate, and waits again.
* **Failover.** While Redis does not answer (a primary died, its replica taking over),
  a session's appends are retried with their ids for ``outage_grace_s`` from its first
  failure before callers see ``event_log_unavailable`` (:mod:`pipeline.log._outage`).
* **One round trip for many appends.** Appends made in one turn of the event loop go to
  Redis as one pipeline, each still its own atomic script (:mod:`pipeline.log._pipelining`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from pipeline.aio import reraise_lost_cancel
from pipeline.log import _lua
from pipeline.log._acks import append_acked
from pipeline.log._blocking import refresh_topology
from pipeline.log._codec import decode_entry, encode_fields, entry_number
from pipeline.log._outage import UNAVAILABLE as _UNAVAILABLE
from pipeline.log._outage import SessionOutages
from pipeline.log._outage import unavailable as _unavailable
from pipeline.log._pipelining import ScriptPipeliner
from pipeline.log._records import AppendResult, LogPage
from pipeline.log._stamping import SessionIds
from pipeline.log.keys import LogKeys
from pipeline.log.keystore import KeyStore, RedisKeyStore, master_key
from pipeline.log.redis_client import is_cluster
from pipeline.log.streamid import ZERO, StreamId, parse_cursor
from schemas import (
    AppendConflictError,
    Event,
    EventBase,
    EventLogError,
    EventLogSettings,
    ResyncRequiredError,
    SessionError,
)

logger = logging.getLogger(__name__)

#: Event types that also go to the feed stream by default: what background workers act on.
DEFAULT_FEED_TYPES: frozenset[str] = frozenset(
    {"session.created", "session.closed", "input.audio", "response.done", "narration.ready"}
)
_CONFLICT_RETRIES = 32


class EventLog:
    """Append, read and tail session streams. One instance per process; share it."""

    def __init__(
        self,
        redis: Redis,
        settings: EventLogSettings | None = None,
        *,
        feed_types: Iterable[str] = DEFAULT_FEED_TYPES,
        on_append: Callable[[float], None] | None = None,
        keystore: KeyStore | None = None,
    ) -> None:
        self.redis = redis
        #: told each append's duration in seconds, retries included (a replica's meters)
        self.on_append = on_append
        #: told each append that wrote (not a duplicate): a live reader in this process
        #: hands those events out without reading them back (:class:`LogFanout`)
        self.appended: list[Callable[[AppendResult], None]] = []
        #: asked whether a live reader of this process is subscribed to a session's pushes
        #: (until the append is answered): an append only it follows is not published
        self.subscribed_here: list[Callable[[str], bool]] = []
        #: told the session of an append that ended without telling ``appended``
        self.unheard: list[Callable[[str], None]] = []
        self.settings = settings or EventLogSettings()
        self.feed_types = frozenset(feed_types)
        self.keys = LogKeys(self.settings.key_prefix,
                            self.settings.partitions if is_cluster(redis) else 0)
        #: data keys by session (encryption at rest; ``settings.encrypt``), else None
        self.keystore = keystore or (RedisKeyStore(redis, self.keys, master_key(self.settings))
                                     if self.settings.encrypt else None)
        self._append = redis.register_script(_lua.APPEND)
        #: appends made in one turn of the loop, sent as one pipeline (without WAIT)
        self.appends = ScriptPipeliner(redis, self._append,
                                       direct=self.settings.direct_appends)
        self._read = redis.register_script(_lua.READ)
        #: the ids this process gives each session's events, and its appends in flight
        self.ids = SessionIds()
        self._outages = SessionOutages(self.settings.outage_grace_s)

    # ---- keys -------------------------------------------------------------------------

    def key(self, session_id: str) -> str:
        return self.keys.session(session_id)

    @property
    def feed_key(self) -> str:
        """The one feed of a standalone log (a cluster has one per partition: ``feed_keys``)."""
        if self.keys.cluster:
            raise ValueError("a clustered log has one feed per partition: use feed_keys")
        return self.keys.feed()

    @property
    def feed_keys(self) -> list[str]:
        """Every feed: workers read them all."""
        return self.keys.feeds()

    def feed_key_for(self, session_id: str) -> str:
        return self.keys.feed_of(session_id)

    # ---- appending --------------------------------------------------------------------

    def stamp(self, events: Sequence[EventBase]) -> list[Event]:
        """Ids for unstamped events (:meth:`SessionIds.stamp`): stamp once, append often."""
        return self.ids.stamp(events)

    async def append(self, event: EventBase) -> Event:
        """Append one event; returns it with its stream id."""
        return (await self.append_batch([event])).events[0]

    async def append_batch(self, events: Sequence[EventBase]) -> AppendResult:
        """Append events of one session atomically, in order. Events without an id are
        stamped here; if another writer took those ids first they are re-stamped above
        it. Events that already carry ids are appended exactly with them: seen before with
        the same content, the call is a no-op (``duplicate=True``); seen with other
        content, :class:`AppendConflictError`."""
        if not events:
            raise ValueError("nothing to append")
        restampable = all(event.id is None for event in events)
        batch = self.stamp(events)
        key = self.key(batch[0].session_id)
        started = time.perf_counter()
        self.ids.fly(key, batch[-1].id)
        try:
            for _ in range(_CONFLICT_RETRIES):
                try:  # (the outage's retries only once a try failed: one await less)
                    status, value = await self._run_append(batch)
                except EventLogError as exc:
                    status, value = await self._append_through_outage(batch, exc)
                self._outages.ended(batch[0].session_id)  # a dict miss unless one was on
                if status == b"erased":
                    raise SessionError.erased(batch[0].session_id)
                if status == b"ok" or status == b"dup":
                    return self._landed(batch, int(value), started,
                                        duplicate=status == b"dup")
                batch = self.ids.restamp(batch, value, restampable)
                self.ids.fly(key, batch[-1].id, again=True)
            raise AppendConflictError(
                f"could not append to session {batch[0].session_id}: too many concurrent "
                "writers", session_id=batch[0].session_id)
        except BaseException:  # whatever of it landed, no listener was handed it
            self._tell_unheard(batch[0].session_id)
            raise
        finally:
            self.ids.land(key)

    def _landed(self, batch: list[Event], number: int, started: float, *,
                duplicate: bool) -> AppendResult:
        if self.on_append is not None:
            self.on_append(time.perf_counter() - started)
        result = AppendResult(tuple(batch), number, duplicate=duplicate)
        if duplicate:  # it landed before (a retry): not handed out as written now
            self._tell_unheard(batch[0].session_id)
            return result
        for listener in self.appended:
            listener(result)
        return result

    def _tell_unheard(self, session_id: str) -> None:
        for listener in self.unheard:
            listener(session_id)

    async def _append_through_outage(self, batch: Sequence[Event],
                                     failed: EventLogError) -> tuple[bytes, bytes]:
        """:meth:`_run_append` after a try ``failed``, retried with the same ids while
        Redis does not answer, for up to ``outage_grace_s`` (:mod:`pipeline.log._outage`):
        a try that landed before its reply was lost comes back ``dup``."""
        session_id = batch[0].session_id
        while True:
            if not failed.transient:
                raise failed
            outage = self._outages.of(session_id)  # made at the first failure only
            if not outage.failed():
                raise failed
            await asyncio.sleep(outage.pause_s())
            await refresh_topology(self.redis)  # after a failover the slot is elsewhere
            try:
                return await self._run_append(batch)
            except EventLogError as exc:
                failed = exc

    async def _run_append(self, batch: Sequence[Event]) -> tuple[bytes, bytes]:
        settings = self.settings
        session_id = batch[0].session_id
        mine = False
        for subscribed in self.subscribed_here:  # (no generator: every append asks)
            if subscribed(session_id):
                mine = True
                break
        args = _lua.append_head(settings, batch, mine_subscribed=mine)
        # (no coroutine to call without encryption: an append is several awaits deep)
        key = await self.data_key(session_id, create=True) if self.keystore else None
        for event in batch:
            fields = encode_fields(event, key)
            args += [event.id or "", "1" if event.type in self.feed_types else "0", len(fields)]
            args += fields
        try:
            keys = self.keys.append_keys(session_id)
            if not settings.replica_acks:
                status, value = await self.appends(keys, args)
            else:
                status, value = await append_acked(self.redis, self._append, keys, args,
                                                   settings, cluster=self.keys.cluster)
        except ResponseError as exc:
            logger.error("Redis refused an append to %s: %s", self.key(session_id), exc)
            raise EventLogError("the event log refused the append", transient=False) from exc
        except _UNAVAILABLE as exc:
            raise _unavailable(exc) from exc
        return status, value if isinstance(value, bytes) else str(value).encode()

    # ---- reading ----------------------------------------------------------------------

    async def read_page(
        self, session_id: str, after: str | None = None, count: int | None = None
    ) -> LogPage:
        """Events after ``after`` (exclusive; ``None`` = from the start), one snapshot.

        Raises :class:`ResyncRequiredError` when retention removed events the caller has
        not seen: then the page would silently skip them.
        """
        cursor = ZERO if after is None else parse_cursor(after)
        start = "-" if after is None else f"({cursor}"
        try:
            exists, deleted, added, last, entries = await self._read(
                keys=[self.key(session_id)], args=[start, count or self.settings.read_count]
            )
        except _UNAVAILABLE as exc:
            raise _unavailable(exc) from exc
        horizon = StreamId.parse(deleted)
        if horizon > cursor:
            raise ResyncRequiredError(
                f"events after {cursor} were trimmed (horizon {horizon}); fetch the state anew",
                session_id=session_id,
                horizon=str(horizon),
            )
        events, numbers = [], []
        key = await self.data_key(session_id) if entries else None
        for entry_id, flat in entries:
            raw = dict(zip(flat[::2], flat[1::2], strict=True))
            events.append(decode_entry(session_id, entry_id, raw, key))
            numbers.append(entry_number(raw))
        return LogPage(
            tuple(events), tuple(numbers), bool(exists), int(added), StreamId.parse(last)
        )

    async def read(self, session_id: str, after: str | None = None) -> AsyncIterator[Event]:
        """Every event after ``after``, page by page, until the end of what is there now."""
        async for event, _ in self._pages(session_id, after):
            yield event

    async def read_all(self, session_id: str, after: str | None = None) -> list[Event]:
        return [event async for event in self.read(session_id, after)]

    async def read_remaining(
        self, session_id: str, after: str | None = None
    ) -> tuple[list[Event], str | None]:
        """Like :meth:`read_all`, but past a trim: what is left after the horizon, and the
        horizon (``None`` when nothing the caller asked for was trimmed).

        For folds and projections that can work from what remains; a client that must
        see every event gets :class:`ResyncRequiredError` from :meth:`read_all` instead.
        """
        try:
            return await self.read_all(session_id, after), None
        except ResyncRequiredError as exc:
            horizon = str(exc.details.get("horizon", "0-0"))
            return await self.read_all(session_id, horizon), horizon

    async def _pages(self, session_id: str, after: str | None) -> AsyncIterator[tuple[Event, int]]:
        while True:
            page = await self.read_page(session_id, after)
            for event, number in zip(page.events, page.numbers, strict=True):
                yield event, number
            if len(page.events) < self.settings.read_count:
                return
            after = page.events[-1].id

    async def data_key(self, session_id: str, *, create: bool = False) -> bytes | None:
        """The session's data key, with encryption at rest (``None`` without: nothing is
        sealed; or when it has none: never made, or destroyed by erasure)."""
        if self.keystore is None:
            return None
        try:
            return await self.keystore.data_key(session_id, create=create)
        except _UNAVAILABLE as exc:
            raise _unavailable(exc) from exc

    async def exists(self, session_id: str) -> bool:
        return bool(await self.redis.exists(self.key(session_id)))

    async def issued(self, session_id: str, cursor: StreamId) -> bool:
        """Whether ``cursor`` can be a cursor this log handed out as it stands: an entry of
        the stream, or before its first entry (``0-0`` and trimmed ids: :meth:`read_page`
        judges those). An id between entries that is none of them was never appended, or
        was lost with a Redis that restarted from a persistence file older than what its
        client saw (AOF ``everysec``: up to a second of appends); a reader resuming there
        would silently diverge from the log."""
        key = self.key(session_id)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xrange(key, str(cursor), str(cursor), count=1)
                pipe.xrange(key, "-", "+", count=1)
                at, first = await pipe.execute()
        except _UNAVAILABLE as exc:
            raise _unavailable(exc) from exc
        return bool(at) or not first or cursor < StreamId.parse(first[0][0])

    async def tail(
        self, session_id: str, after: str | None = None, *, block_ms: int = 2000
    ) -> AsyncIterator[Event]:
        """Replay after ``after``, then follow live appends until the consumer stops.

        Exactly once and in order: the replay and the live part meet at one snapshot, and
        each live entry's number must follow the previous one, else the tail raises
        :class:`ResyncRequiredError` (retention overtook a slow reader).
        """
        page = await self.read_page(session_id, after)
        cursor = parse_cursor(after) if after else ZERO
        expected = page.entries_added + 1
        while page.events:
            for event, number in zip(page.events, page.numbers, strict=True):
                yield event
                cursor = StreamId.parse(event.id or "0-0")
                expected = number + 1
            if len(page.events) < self.settings.read_count:
                break
            page = await self.read_page(session_id, str(cursor))
        key = self.key(session_id)
        while True:
            try:
                reply: Any = await self.redis.xread(
                    {key: str(cursor)}, count=self.settings.read_count, block=block_ms
                )
            except _UNAVAILABLE as exc:
                raise _unavailable(exc) from exc
            reraise_lost_cancel()
            for _stream, entries in reply or ():
                sealing = await self.data_key(session_id)  # once a read, not an entry
                for entry_id, raw in entries:
                    number = entry_number(raw)
                    if number != expected:
                        raise ResyncRequiredError(
                            f"the tail missed events {expected}..{number - 1} (trimmed)",
                            session_id=session_id,
                        )
                    expected = number + 1
                    cursor = StreamId.parse(entry_id)
                    yield decode_entry(session_id, entry_id, raw, sealing)

