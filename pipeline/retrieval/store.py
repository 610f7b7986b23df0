"""Document collections in Redis, with their BM25 index, so any replica serves them.

Keys of a collection ``c`` (under the log's ``key_prefix``)::

    {p}:collections                 set of every collection id (the count limit)
    {p}:collection:{c}              hash: name, created_ts, version, documents, chunks
    {p}:collection:{c}:docs         hash: document id -> DocumentInfo (JSON)
    {p}:collection:{c}:chunks       hash: "{document}:{n}" -> chunk text
    {p}:collection:{c}:index        the serialised BM25 index (see pipeline.retrieval.bm25)
    {p}:collection:{c}:rows         JSON list: the chunk key of each index row
    {p}:collection:{c}:grants       set of session ids that may search it
    {p}:collection:{c}:lock         held while a writer rebuilds the index

A change of documents takes the lock, rebuilds the index from every chunk (BM25's
statistics are collection-wide) off the event loop, and writes chunks, index, rows and a
new ``version`` in one MULTI: a reader sees the old collection or the new one, never half.
A replica keeps the indexes it used last (:attr:`CollectionStore.cache`, LRU) and asks
Redis only for the version on each search (one HGET) before reusing one.

Collections have no TTL: they live until deleted (Redis persistence keeps them across
restarts of the server, cluster/redis.conf).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from pipeline.retrieval.bm25 import BM25Index
from pipeline.retrieval.chunking import chunk_text
from schemas import (
    CollectionInfo,
    DocumentInfo,
    ErrorCode,
    InputTooLargeError,
    OverloadedError,
    RetrievalSettings,
    SessionError,
    VoxlineError,
    now_ms,
)

__all__ = ["CollectionStore", "LoadedIndex"]

_LOCK_MS = 60_000
_LOCK_WAIT_S = 10.0
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True, slots=True)
class LoadedIndex:
    version: int
    index: BM25Index
    #: the chunk key ("{document}:{n}") of each row of the index
    rows: tuple[str, ...]


def not_found(collection: str) -> SessionError:
    return SessionError(f"no collection {collection!r}", code=ErrorCode.COLLECTION_NOT_FOUND)


class CollectionStore:
    """Collections, documents and indexes in Redis; one per process (it caches indexes)."""

    def __init__(self, redis: Redis, settings: RetrievalSettings, key_prefix: str) -> None:
        self.redis = redis
        self.settings = settings
        self.prefix = key_prefix
        #: collection id -> the index this replica loaded last (LRU, settings.index_cache)
        self.cache: OrderedDict[str, LoadedIndex] = OrderedDict()

    def key(self, collection: str, part: str = "") -> str:
        return f"{self.prefix}:collection:{collection}" + (f":{part}" if part else "")

    # ---- collections ------------------------------------------------------------------

    async def create(self, name: str = "") -> CollectionInfo:
        """A new empty collection; past ``max_collections``: 409 ``too_many_collections``."""
        limit = self.settings.max_collections
        if await self.redis.scard(f"{self.prefix}:collections") >= limit:
            raise VoxlineError(f"the server holds its limit of {limit} collections",
                               code=ErrorCode.TOO_MANY_COLLECTIONS, http_status=409,
                               limit=limit)
        collection = f"col_{uuid.uuid4().hex[:16]}"
        info = CollectionInfo(collection_id=collection, name=name, created_ts=now_ms(),
                              version=0, documents=0, chunks=0)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.key(collection), mapping={
                "name": name, "created_ts": info.created_ts, "version": 0,
                "documents": 0, "chunks": 0})
            pipe.sadd(f"{self.prefix}:collections", collection)
            await pipe.execute()
        return info

    async def get(self, collection: str) -> CollectionInfo:
        raw = await self.redis.hgetall(self.key(collection))
        if not raw:
            raise not_found(collection)
        meta = {_text(k): _text(v) for k, v in raw.items()}
        return CollectionInfo(
            collection_id=collection, name=meta.get("name", ""),
            created_ts=int(meta.get("created_ts", 0)), version=int(meta.get("version", 0)),
            documents=int(meta.get("documents", 0)), chunks=int(meta.get("chunks", 0)))

    async def delete(self, collection: str) -> None:
        await self.get(collection)
        parts = ("", "docs", "chunks", "index", "rows", "grants")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(*(self.key(collection, part) for part in parts))
            pipe.srem(f"{self.prefix}:collections", collection)
            await pipe.execute()
        self.cache.pop(collection, None)

    # ---- who may search it ------------------------------------------------------------

    async def grant(self, collection: str, session_id: str) -> None:
        await self.get(collection)
        await self.redis.sadd(self.key(collection, "grants"), session_id)

    async def revoke(self, collection: str, session_id: str) -> None:
        await self.get(collection)
        await self.redis.srem(self.key(collection, "grants"), session_id)

    async def granted(self, collection: str, session_id: str) -> bool:
        return bool(await self.redis.sismember(self.key(collection, "grants"), session_id))

    # ---- documents --------------------------------------------------------------------

    async def documents(self, collection: str) -> list[DocumentInfo]:
        await self.get(collection)
        raw = await self.redis.hgetall(self.key(collection, "docs"))
        docs = [DocumentInfo.model_validate_json(value) for value in raw.values()]
        return sorted(docs, key=lambda d: (d.created_ts, d.document_id))

    async def document(self, collection: str, document_id: str) -> tuple[DocumentInfo, list[str]]:
        """A document and its chunks, in order."""
        raw = await self.redis.hget(self.key(collection, "docs"), document_id)
        if raw is None:
            await self.get(collection)  # collection_not_found first
            raise SessionError(f"no document {document_id!r} in {collection!r}",
                               code=ErrorCode.DOCUMENT_NOT_FOUND)
        info = DocumentInfo.model_validate_json(raw)
        fields = [f"{document_id}:{n}" for n in range(info.chunks)]
        texts = await self.redis.hmget(self.key(collection, "chunks"), fields) if fields else []
        return info, [_text(t) for t in texts if t is not None]

    async def add_document(
        self, collection: str, text: str, *, title: str = "", fmt: str = "text"
    ) -> DocumentInfo:
        """Chunk ``text``, add it and rebuild the index. Over ``max_document_chars``: 413
        ``document_too_large``; over ``max_chunks_per_collection``: 413 ``collection_full``
        (nothing is written either way)."""
        limit = self.settings.max_document_chars
        if len(text) > limit:
            raise InputTooLargeError(
                f"a document of {len(text)} characters is over the limit of {limit}",
                code=ErrorCode.DOCUMENT_TOO_LARGE, limit=limit)
        chunks = chunk_text(text, self.settings.chunk_chars,
                            min(self.settings.chunk_overlap, self.settings.chunk_chars - 1))
        if not chunks:
            raise VoxlineError("the document has no text", code=ErrorCode.EMPTY_INPUT,
                               http_status=400)
        document_id = f"doc_{uuid.uuid4().hex[:12]}"
        info = DocumentInfo(document_id=document_id, title=title, format=fmt,
                            chars=len(text), chunks=len(chunks), created_ts=now_ms())
        async with self._locked(collection):
            current = await self.get(collection)
            most = self.settings.max_chunks_per_collection
            if current.chunks + len(chunks) > most:
                raise InputTooLargeError(
                    f"the collection holds {current.chunks} chunks; {len(chunks)} more would "
                    f"pass its limit of {most}", code=ErrorCode.COLLECTION_FULL, limit=most)
            new = {f"{document_id}:{n}": chunk for n, chunk in enumerate(chunks)}
            await self._rebuild(collection, current, add=(info, new))
        return info

    async def delete_document(self, collection: str, document_id: str) -> None:
        async with self._locked(collection):
            info, _ = await self.document(collection, document_id)
            current = await self.get(collection)
            await self._rebuild(collection, current, remove=info)

    async def _rebuild(
        self,
        collection: str,
        current: CollectionInfo,
        *,
        add: tuple[DocumentInfo, dict[str, str]] | None = None,
        remove: DocumentInfo | None = None,
    ) -> None:
        stored = {_text(k): _text(v)
                  for k, v in (await self.redis.hgetall(self.key(collection, "chunks"))).items()}
        docs = await self.documents(collection)
        if remove is not None:
            docs = [d for d in docs if d.document_id != remove.document_id]
            for n in range(remove.chunks):
                stored.pop(f"{remove.document_id}:{n}", None)
        if add is not None:
            docs.append(add[0])
            stored.update(add[1])
        rows = tuple(f"{d.document_id}:{n}" for d in docs for n in range(d.chunks))
        texts = [stored.get(row, "") for row in rows]
        index = await asyncio.to_thread(BM25Index.build, texts)
        blob = await asyncio.to_thread(index.to_bytes)
        async with self.redis.pipeline(transaction=True) as pipe:
            if add is not None:
                pipe.hset(self.key(collection, "docs"), add[0].document_id,
                          add[0].model_dump_json())
                texts_of: dict[Any, Any] = dict(add[1])  # redis-py's Mapping is invariant
                pipe.hset(self.key(collection, "chunks"), mapping=texts_of)
            if remove is not None:
                pipe.hdel(self.key(collection, "docs"), remove.document_id)
                fields = [f"{remove.document_id}:{n}" for n in range(remove.chunks)]
                if fields:
                    pipe.hdel(self.key(collection, "chunks"), *fields)
            pipe.set(self.key(collection, "index"), blob)
            pipe.set(self.key(collection, "rows"), json.dumps(rows))
            pipe.hset(self.key(collection), mapping={
                "version": current.version + 1, "documents": len(docs), "chunks": len(rows)})
            await pipe.execute()

    # ---- the index --------------------------------------------------------------------

    async def index(self, collection: str) -> LoadedIndex:
        """The collection's index: this replica's copy if its version is current, else
        loaded from Redis (and kept, LRU)."""
        version = await self.redis.hget(self.key(collection), "version")
        if version is None:
            self.cache.pop(collection, None)
            raise not_found(collection)
        cached = self.cache.get(collection)
        if cached is not None and cached.version == int(version):
            self.cache.move_to_end(collection)
            return cached
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hget(self.key(collection), "version")
            pipe.get(self.key(collection, "index"))
            pipe.get(self.key(collection, "rows"))
            raw_version, blob, raw_rows = await pipe.execute()
        if raw_version is None:
            raise not_found(collection)
        if blob is None:  # nothing added yet
            loaded = LoadedIndex(int(raw_version), BM25Index.build([]), ())
        else:
            index = await asyncio.to_thread(BM25Index.from_bytes, blob)
            loaded = LoadedIndex(int(raw_version), index, tuple(json.loads(raw_rows or "[]")))
        self.cache[collection] = loaded
        self.cache.move_to_end(collection)
        while len(self.cache) > self.settings.index_cache:
            self.cache.popitem(last=False)
        return loaded

    async def chunk_texts(self, collection: str, rows: list[str]) -> list[str]:
        if not rows:
            return []
        texts = await self.redis.hmget(self.key(collection, "chunks"), rows)
        return [_text(t) if t is not None else "" for t in texts]

    async def titles(self, collection: str, document_ids: list[str]) -> dict[str, str]:
        unique = sorted(set(document_ids))
        if not unique:
            return {}
        raw = await self.redis.hmget(self.key(collection, "docs"), unique)
        return {d: DocumentInfo.model_validate_json(r).title if r else ""
                for d, r in zip(unique, raw, strict=True)}

    # ---- the writers' lock --------------------------------------------------------------

    def _locked(self, collection: str) -> _Lock:
        return _Lock(self.redis, self.key(collection, "lock"))


class _Lock:
    """One writer per collection at a time, across replicas (SET NX PX; waits up to
    ``_LOCK_WAIT_S``, then 503 ``overloaded``: the other writer is still rebuilding)."""

    def __init__(self, redis: Redis, key: str) -> None:
        self.redis, self.key, self.token = redis, key, secrets.token_hex(8)

    async def __aenter__(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _LOCK_WAIT_S
        while not await self.redis.set(self.key, self.token, nx=True, px=_LOCK_MS):
            if loop.time() > deadline:
                raise OverloadedError("another change of this collection is in progress",
                                      retry_after_ms=1000)
            await asyncio.sleep(0.05)

    async def __aexit__(self, *_: object) -> None:
        await self.redis.eval(_RELEASE, 1, self.key, self.token)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
