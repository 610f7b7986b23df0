"""Erasing a session from the log: its stream and every pointer to it, once, with a receipt.

The order matters, so that nothing of the session can come back:

1. the **tombstone** (``{prefix}:erased:{id}``, in the stream's slot) is set first: from
   that moment the append script refuses the session (``session_erased``), whichever
   Gateway replica still holds it live, and every read answers ``session_erased``;
2. the **stream** is deleted, audio and all (unlinked: Redis frees it in the background);
3. the **feed** entries that point at it are acknowledged in every consumer group (no
   worker is left with a pending entry) and deleted; the **changes** stream (live
   readers' pointers, which may carry a small event whole) rewritten without its
   entries, so their bytes are gone from memory too;
4. its **metrics** records deleted;
5. the tombstone gets the receipt (counts, no content), kept ``erased_ttl_s``.

Erasing twice returns the first receipt (``already``). Redis's own copies follow: a
replica applies the deletes, AOF records them and rewrites without the data, an RDB
snapshot taken after holds nothing (older snapshots and backups need encryption at rest,
whose key erasure destroys). What stays: the leases of background workers (an owner's
name, no content) lapse within their TTL, and so do the leases of its tool calls
(``VOXLINE_TOOLS__LEASE_S``); a background worker's fold of the session in memory (its
settings and last turns, :mod:`pipeline.workers._folds`) is dropped within
``worker_fold_ttl_s``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from pipeline.log import _lua
from pipeline.log.eventlog import EventLog
from schemas import ErasureReceipt, EventLogError, now_ms

__all__ = ["erase_from_log", "erased_receipt"]

#: feed entries read per round trip while looking for a session's
_PAGE = 1000
_LEFT = ("the leases of background workers and of tool calls (an owner's name, no "
         "content) lapse within their TTL",
         "what a background worker folded of the session in memory (its settings, its "
         "last turns) is dropped within VOXLINE_LOG__WORKER_FOLD_TTL_S")


async def erased_receipt(log: EventLog, session_id: str) -> ErasureReceipt | None:
    """The receipt of an erased session, or ``None`` (never erased, or long ago)."""
    raw = await log.redis.get(log.keys.erased(session_id))
    if raw is None:
        return None
    if raw in (b"1", "1"):  # erasure under way: the receipt comes at its end
        return ErasureReceipt(session_id=session_id, erased_ts=now_ms(), by="")
    return ErasureReceipt.model_validate_json(raw)


async def erase_from_log(log: EventLog, session_id: str, *, by: str,
                         extra: dict[str, int] | None = None) -> ErasureReceipt:
    """Erase ``session_id`` from the log (see the module docstring); ``extra`` counts
    what the caller removed elsewhere, for the receipt."""
    redis, keys, ttl = log.redis, log.keys, log.settings.erased_ttl_s
    tomb = keys.erased(session_id)
    try:
        # the data key first: from now on no copy of the payloads opens, wherever it is
        shredded = int(await log.keystore.destroy(session_id)) if log.keystore else 0
        if not await redis.set(tomb, "1", nx=True, ex=ttl):
            done = await erased_receipt(log, session_id)
            if done is not None and done.by:
                return done.model_copy(update={"already": True})
        removed: dict[str, int] = {"data_key": shredded} if log.keystore else {}
        stream = keys.session(session_id)
        removed["events"] = int(await redis.xlen(stream))
        await redis.unlink(stream)  # freed in the background: a long session's audio too
        feed = keys.feed_of(session_id)
        removed["feed_entries"], removed["pending"] = await _drop_entries(
            redis, feed, b"session", session_id.encode())
        # rewritten, not XDEL'd: a changes entry may carry a small event whole, and a
        # deleted entry's bytes would stay in memory and in RDB snapshots
        removed["changes"] = int(await redis.register_script(_lua.COMPACT_CHANGES)(
            keys=[keys.changes_of(session_id)], args=[stream]))
        prefix = log.settings.key_prefix
        metrics = [f"{prefix}:metrics:{session_id}:{what}" for what in ("cursor", "recorded")]
        removed["metrics"] = sum([int(await redis.delete(key)) for key in metrics])
        removed.update(extra or {})
        receipt = ErasureReceipt(session_id=session_id, erased_ts=now_ms(), by=by,
                                 removed=removed, notes=_LEFT)
        await redis.set(tomb, receipt.model_dump_json(), ex=ttl)
        return receipt
    except RedisError as exc:
        raise EventLogError("the event log is unavailable; the erasure did not finish: "
                            "erase again (it goes on where it stopped)") from exc


async def _drop_entries(redis: Redis | RedisCluster, stream: str, field: bytes,
                        value: bytes) -> tuple[int, int]:
    """Delete the entries of ``stream`` whose ``field`` is ``value``, acknowledging them in
    every consumer group first; (entries deleted, pending acknowledged)."""
    ids = [entry_id async for entry_id, fields in _entries(redis, stream)
           if fields.get(field) == value]
    if not ids:
        return 0, 0
    try:
        groups = await redis.xinfo_groups(stream)
    except RedisError:  # the stream has no groups
        groups = []
    pending = deleted = 0
    for start in range(0, len(ids), _PAGE):
        chunk = ids[start:start + _PAGE]
        for group in groups:
            pending += int(await redis.xack(stream, group["name"], *chunk))
        deleted += int(await redis.xdel(stream, *chunk))
    return deleted, pending


async def _entries(redis: Redis | RedisCluster,
                   stream: str) -> AsyncIterator[tuple[bytes, dict[bytes, bytes]]]:
    """Every entry of ``stream``, a page (XRANGE) at a time."""
    after = "-"
    while True:
        page = cast(list[tuple[bytes, dict[bytes, bytes]]],
                    await redis.xrange(stream, after, "+", count=_PAGE))
        for entry in page:
            yield entry
        if len(page) < _PAGE:
            return
        after = "(" + page[-1][0].decode()
