"""A collection's BM25 index in Redis, in three tiers, so an add costs only its document.

Keys of a collection ``c`` (beside :mod:`pipeline.retrieval.store`'s)::

    {p}:collection:{c}:index     the main segment (see pipeline.retrieval.bm25)
    {p}:collection:{c}:delta     the delta segment: documents folded in since the last merge
    {p}:collection:{c}:pending   list: one segment per document added since the last fold

An add appends its document's own segment to ``pending`` (RPUSH, in the add's MULTI):
nothing else of the index is read or written. Every ``FOLD_EVERY`` adds the pending
segments are folded into the delta, and when the delta passes ``index_delta_chunks`` it is
merged into the main segment; both on a thread, under the collection's lock, and the hash's
``delta_version`` / ``main_version`` say when they last changed. So a fold costs the delta
once per ``FOLD_EVERY`` adds, a merge the collection once per ``index_delta_chunks``
chunks (Lucene's tiered merging, in three fixed tiers).

A replica keeps the index it loaded last (LRU) and on each search asks for the versions
(one HMGET): a new pending segment is all it fetches while main and delta are unchanged,
then the delta alone while the main is unchanged. What it fetches comes in one MULTI with
the versions, so main, delta and pending always belong together.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from pipeline.retrieval.bm25 import BM25Index, Segment, tokenize
from schemas import ErrorCode, RetrievalSettings, SessionError

__all__ = ["FOLD_EVERY", "IndexStore", "LoadedIndex"]

#: pending segments (one per added document) gathered before they are folded into the
#: delta: searching a few dozen tiny segments costs less than a millisecond
FOLD_EVERY = 32


@dataclass(frozen=True, slots=True)
class LoadedIndex:
    version: int
    index: BM25Index
    #: the chunk key ("{document}:{n}") of each row of the index
    rows: tuple[str, ...]
    main_version: int = 0
    delta_version: int = 0

    @property
    def main(self) -> Segment:
        return self.index.segments[0]

    @property
    def delta(self) -> Segment:
        return self.index.segments[1]

    @property
    def pending(self) -> tuple[Segment, ...]:
        return self.index.segments[2:]


def not_found(collection: str) -> SessionError:
    return SessionError(f"no collection {collection!r}", code=ErrorCode.COLLECTION_NOT_FOUND)


class IndexStore:
    """The index tiers of every collection of a store, and this replica's cache of them."""

    def __init__(self, redis: Redis, settings: RetrievalSettings,
                 key: Callable[[str, str], str],
                 chunk_texts: Callable[[str, list[str]], Awaitable[list[str]]]) -> None:
        self.redis, self.settings, self.key, self._chunk_texts = redis, settings, key, chunk_texts
        #: collection id -> the index this replica loaded last (LRU, settings.index_cache)
        self.cache: OrderedDict[str, LoadedIndex] = OrderedDict()

    # ---- writers (under the collection's lock) ----------------------------------------

    def append(self, pipe: Pipeline, collection: str, segment: Segment) -> None:
        """Queue ``segment`` (one document's) in the add's MULTI."""
        pipe.rpush(self.key(collection, "pending"), segment.to_bytes())

    async def fold(self, collection: str, version: int, pending: int) -> None:
        """Fold the pending segments into the delta (and the delta into the main segment
        past ``index_delta_chunks``) once ``FOLD_EVERY`` have gathered."""
        if pending < FOLD_EVERY:
            return
        delta = await self.segment(collection, "delta")
        blobs = await self.redis.lrange(self.key(collection, "pending"), 0, -1)
        news = [Segment.from_bytes(_raw(blob)) for blob in blobs]
        delta = await asyncio.to_thread(delta.merged, *news)
        meta: dict[Any, Any] = {"delta_version": version}
        async with self.redis.pipeline(transaction=True) as pipe:
            if delta.size > self.settings.index_delta_chunks:
                main = await self.segment(collection, "index")
                main = await asyncio.to_thread(main.merged, delta)
                pipe.set(self.key(collection, "index"), await asyncio.to_thread(main.to_bytes))
                pipe.delete(self.key(collection, "delta"))
                meta["main_version"] = version
            else:
                pipe.set(self.key(collection, "delta"), await asyncio.to_thread(delta.to_bytes))
            pipe.ltrim(self.key(collection, "pending"), len(blobs), -1)
            pipe.hset(self.key(collection, ""), mapping=meta)
            await pipe.execute()

    async def without(self, pipe: Pipeline, collection: str, version: int,
                      drop: Callable[[str], bool]) -> None:
        """Queue the index less the rows ``drop`` names, all tiers in one main segment."""
        loaded = await self._fetch(collection, None)
        main = await asyncio.to_thread(lambda: loaded.index.merged().without(drop))
        pipe.set(self.key(collection, "index"), await asyncio.to_thread(main.to_bytes))
        pipe.delete(*(self.key(collection, part) for part in ("delta", "pending", "rows")))
        pipe.hset(self.key(collection, ""),
                  mapping={"main_version": version, "delta_version": version})

    async def segment(self, collection: str, part: str) -> Segment:
        """A stored segment (empty if none). A main index of an older format is rebuilt
        from the chunk texts (once: the next merge stores the new format)."""
        blob = await self.redis.get(self.key(collection, part))
        return await self._parse(collection, part, blob)

    # ---- readers -------------------------------------------------------------------------

    async def load(self, collection: str) -> LoadedIndex:
        """The collection's index: this replica's copy if its version is current, else
        what changed since (see the module docstring)."""
        raw = await self.redis.hmget(self.key(collection, ""),
                                     ["version", "main_version", "delta_version"])
        if raw[0] is None:
            self.cache.pop(collection, None)
            raise not_found(collection)
        cached = self.cache.get(collection)
        if cached is not None and cached.version == int(raw[0]):
            self.cache.move_to_end(collection)
            return cached
        loaded = await self._fetch(collection, cached, tuple(int(v or 0) for v in raw))
        self.cache[collection] = loaded
        self.cache.move_to_end(collection)
        while len(self.cache) > self.settings.index_cache:
            self.cache.popitem(last=False)
        return loaded

    async def _fetch(self, collection: str, cached: LoadedIndex | None = None,
                     planned: tuple[int, ...] = ()) -> LoadedIndex:
        """What changed since ``cached`` at the ``planned`` versions (everything without
        it), in one MULTI with the versions; if they moved meanwhile, everything."""
        keep_main = cached is not None and cached.main_version == planned[1]
        keep_delta = keep_main and cached is not None and cached.delta_version == planned[2]
        known = cached.pending if cached is not None and keep_delta else ()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hmget(self.key(collection, ""), ["version", "main_version", "delta_version"])
            if not keep_main:
                pipe.get(self.key(collection, "index"))
            if not keep_delta:
                pipe.get(self.key(collection, "delta"))
            pipe.lrange(self.key(collection, "pending"), len(known), -1)
            [raw, *parts] = await pipe.execute()
        if raw[0] is None:
            raise not_found(collection)
        versions = tuple(int(v or 0) for v in raw)
        if (keep_main or keep_delta) and versions[1:] != planned[1:]:
            return await self._fetch(collection)  # a fold or merge came between: take all
        fetched = iter(parts)
        main = (cached.main if cached is not None and keep_main
                else await self._parse(collection, "index", next(fetched)))
        delta = (cached.delta if cached is not None and keep_delta
                 else await self._parse(collection, "delta", next(fetched)))
        pending = known + tuple(Segment.from_bytes(_raw(blob)) for blob in next(fetched))
        segments = [main, delta, *pending]
        return LoadedIndex(versions[0], BM25Index(segments),
                           tuple(k for s in segments for k in s.keys), *versions[1:])

    async def _parse(self, collection: str, part: str, stored: bytes | str | None) -> Segment:
        if stored is None:
            return Segment.empty()
        blob = _raw(stored)
        try:
            if len(blob) < 64 << 10:
                return Segment.from_bytes(blob)
            return await asyncio.to_thread(Segment.from_bytes, blob)
        except ValueError:
            if part != "index":
                raise
        # an index written by an older version: its "rows" key says which chunks it held
        rows: list[str] = json.loads(await self.redis.get(self.key(collection, "rows")) or "[]")
        tokens = await asyncio.to_thread(tokenize, await self._chunk_texts(collection, rows))
        return await asyncio.to_thread(Segment.from_tokens, tokens, rows)


def _raw(value: bytes | str) -> bytes:
    """A stored blob (the store's Redis client answers bytes; a str is a misconfigured one)."""
    return value if isinstance(value, bytes) else value.encode("latin-1")
