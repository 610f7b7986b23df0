"""Document collections in Redis, with their BM25 index, so any replica serves them.

Keys of a collection ``c`` (under the log's ``key_prefix``)::

    {p}:collections                 set of every collection id (the server-wide limit)
    {p}:collections:client:{who}    set of the collections one client created (its quota)
    {p}:collection:{c}              hash: name, created_ts, owner, version, main_version,
                                    documents, chunks
    {p}:collection:{c}:docs         hash: document id -> DocumentInfo (JSON)
    {p}:collection:{c}:chunks       hash: "{document}:{n}" -> chunk text
    {p}:collection:{c}:index        the main index segment (see pipeline.retrieval.bm25)
    {p}:collection:{c}:delta        the delta segment: documents added since the last merge
    {p}:collection:{c}:grants       set of session ids that may search it
    {p}:collection:{c}:lock         held while a writer changes documents

Creating a collection checks and reserves both counts (the server's, the client's) in one
Lua script, so concurrent creates cannot pass a limit; deleting frees both.

A document is read (text, chunks, tokens, its own index segment) in a reader process
(:class:`pipeline.retrieval.readers.DocumentReaders`), then added under the lock: its
segment is merged into the small delta segment, and chunks, delta and a new ``version``
are written in one MULTI (a reader sees the old collection or the new one, never half).
An add costs the document and the delta, not the collection; when the delta passes
``index_delta_chunks`` that add merges it into the main segment (off the loop, on a
thread: numpy concatenations) and bumps ``main_version``. Deleting a document rewrites the
main segment without its rows. A replica keeps the indexes it used last
(:attr:`CollectionStore.cache`, LRU) and asks Redis for the versions on each search (one
HMGET): a new delta alone is all it loads while the main segment is unchanged.

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

from pipeline.retrieval.bm25 import BM25Index, Segment, tokenize
from pipeline.retrieval.documents import ReadDocument
from pipeline.retrieval.readers import DocumentReaders
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
#: KEYS: every collection, the client's, the new one's hash; ARGV: id, server limit,
#: client limit, then the hash's fields and values. 1: server full; 2: client's quota used
_CREATE = """
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 1 end
if redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[3]) then return 2 end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], unpack(ARGV, 4))
return 0
"""


@dataclass(frozen=True, slots=True)
class LoadedIndex:
    version: int
    index: BM25Index
    #: the chunk key ("{document}:{n}") of each row of the index
    rows: tuple[str, ...]
    main_version: int = 0


def not_found(collection: str) -> SessionError:
    return SessionError(f"no collection {collection!r}", code=ErrorCode.COLLECTION_NOT_FOUND)


class CollectionStore:
    """Collections, documents and indexes in Redis; one per process (it caches indexes
    and owns the document readers: :meth:`aclose` stops them)."""

    def __init__(self, redis: Redis, settings: RetrievalSettings, key_prefix: str) -> None:
        self.redis = redis
        self.settings = settings
        self.prefix = key_prefix
        #: collection id -> the index this replica loaded last (LRU, settings.index_cache)
        self.cache: OrderedDict[str, LoadedIndex] = OrderedDict()
        self.readers = DocumentReaders(settings)

    async def aclose(self) -> None:
        await self.readers.aclose()

    def key(self, collection: str, part: str = "") -> str:
        return f"{self.prefix}:collection:{collection}" + (f":{part}" if part else "")

    def client_key(self, client: str) -> str:
        return f"{self.prefix}:collections:client:{client}"

    # ---- collections ------------------------------------------------------------------

    async def create(self, name: str = "", client: str = "local") -> CollectionInfo:
        """A new empty collection of ``client`` (an opaque id: a key's digest, an
        address). Past ``max_collections``: 409 ``too_many_collections``; past the
        client's ``max_collections_per_client``: 409 ``collection_quota_exceeded``."""
        collection = f"col_{uuid.uuid4().hex[:16]}"
        info = CollectionInfo(collection_id=collection, name=name, created_ts=now_ms(),
                              version=0, documents=0, chunks=0)
        fields = {"name": name, "created_ts": info.created_ts, "owner": client, "version": 0,
                  "main_version": 0, "documents": 0, "chunks": 0}
        most, mine = self.settings.max_collections, self.settings.max_collections_per_client
        refused = await self.redis.eval(
            _CREATE, 3, f"{self.prefix}:collections", self.client_key(client),
            self.key(collection), collection, most, mine,
            *(str(part) for pair in fields.items() for part in pair))
        if int(refused) == 1:
            raise VoxlineError(f"the server holds its limit of {most} collections",
                               code=ErrorCode.TOO_MANY_COLLECTIONS, http_status=409,
                               limit=most)
        if int(refused) == 2:
            raise VoxlineError(f"this client holds its limit of {mine} collections; delete "
                               "one first", code=ErrorCode.COLLECTION_QUOTA_EXCEEDED,
                               http_status=409, limit=mine)
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
        """Delete it with everything of it, and free its place in both counts."""
        owner = await self.redis.hget(self.key(collection), "owner")
        await self.get(collection)
        parts = ("", "docs", "chunks", "index", "delta", "rows", "grants")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(*(self.key(collection, part) for part in parts))
            pipe.srem(f"{self.prefix}:collections", collection)
            if owner is not None:
                pipe.srem(self.client_key(_text(owner)), collection)
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
        self, collection: str, content: str | bytes, *, title: str = "", fmt: str = "text"
    ) -> DocumentInfo:
        """Read ``content`` in a reader process (see pipeline.retrieval.documents for its
        errors), then add it. Over ``max_chunks_per_collection``: 413 ``collection_full``
        (nothing is written)."""
        limit = self.settings.max_document_chars
        if isinstance(content, str) and len(content) > limit:  # not worth shipping
            raise InputTooLargeError(
                f"a document of {len(content)} characters is over the limit of {limit}",
                code=ErrorCode.DOCUMENT_TOO_LARGE, limit=limit)
        await self.get(collection)  # collection_not_found before any reading
        read = await self.readers.read(content, fmt)
        return await self.add_read(collection, read, title=title, fmt=fmt)

    async def add_read(
        self, collection: str, read: ReadDocument, *, title: str = "", fmt: str = "text"
    ) -> DocumentInfo:
        """Add a document already read; costs the document and the delta segment."""
        document_id = f"doc_{uuid.uuid4().hex[:12]}"
        info = DocumentInfo(document_id=document_id, title=title, format=fmt,
                            chars=read.chars, chunks=len(read.chunks), created_ts=now_ms())
        keys = [f"{document_id}:{n}" for n in range(len(read.chunks))]
        async with self._locked(collection):
            current = await self.get(collection)
            most = self.settings.max_chunks_per_collection
            if current.chunks + len(read.chunks) > most:
                raise InputTooLargeError(
                    f"the collection holds {current.chunks} chunks; {len(read.chunks)} more "
                    f"would pass its limit of {most}", code=ErrorCode.COLLECTION_FULL,
                    limit=most)
            delta = await self._segment(collection, "delta")
            delta = await _off_loop(delta.merged, read.segment.with_keys(keys),
                                    size=delta.size + len(keys))
            version = current.version + 1
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(self.key(collection, "docs"), document_id, info.model_dump_json())
                texts_of: dict[Any, Any] = dict(zip(keys, read.chunks, strict=True))
                pipe.hset(self.key(collection, "chunks"), mapping=texts_of)
                meta: dict[Any, Any] = {"version": version,
                                        "documents": current.documents + 1,
                                        "chunks": current.chunks + len(keys)}
                if delta.size > self.settings.index_delta_chunks:
                    main = await self._segment(collection, "index")
                    main = await asyncio.to_thread(main.merged, delta)
                    pipe.set(self.key(collection, "index"), await _to_bytes(main))
                    pipe.delete(self.key(collection, "delta"))
                    meta["main_version"] = version
                else:
                    pipe.set(self.key(collection, "delta"), await _to_bytes(delta))
                pipe.hset(self.key(collection), mapping=meta)
                await pipe.execute()
        return info

    async def delete_document(self, collection: str, document_id: str) -> None:
        """Delete a document: the main segment is rewritten without its rows (with the
        delta merged in), off the loop."""
        async with self._locked(collection):
            info, _ = await self.document(collection, document_id)
            current = await self.get(collection)
            main = await self._segment(collection, "index")
            delta = await self._segment(collection, "delta")
            prefix = f"{document_id}:"
            main = await asyncio.to_thread(
                lambda: main.merged(delta).without(lambda key: key.startswith(prefix)))
            version = current.version + 1
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hdel(self.key(collection, "docs"), document_id)
                fields = [f"{prefix}{n}" for n in range(info.chunks)]
                if fields:
                    pipe.hdel(self.key(collection, "chunks"), *fields)
                pipe.set(self.key(collection, "index"), await _to_bytes(main))
                pipe.delete(self.key(collection, "delta"), self.key(collection, "rows"))
                pipe.hset(self.key(collection), mapping={
                    "version": version, "main_version": version,
                    "documents": max(0, current.documents - 1),
                    "chunks": max(0, current.chunks - info.chunks)})
                await pipe.execute()

    async def _segment(self, collection: str, part: str) -> Segment:
        """A stored segment (empty if none). A main index of an older format is rebuilt
        from the chunk texts (once: the next write stores the new format)."""
        blob = await self.redis.get(self.key(collection, part))
        if blob is None:
            return Segment.empty()
        try:
            segment: Segment = await _off_loop(Segment.from_bytes, blob, size=len(blob) // 1024)
            return segment
        except ValueError:
            if part != "index":
                raise
        return await self._rebuilt(collection)

    async def _rebuilt(self, collection: str) -> Segment:
        """The main segment from the chunk texts, for an index written by an older version
        (its ``rows`` key says which chunks it held)."""
        raw_rows = await self.redis.get(self.key(collection, "rows"))
        rows: list[str] = json.loads(raw_rows or "[]")
        texts = await self.chunk_texts(collection, rows)
        tokens = await asyncio.to_thread(tokenize, texts)
        return await asyncio.to_thread(Segment.from_tokens, tokens, rows)

    # ---- the index --------------------------------------------------------------------

    async def index(self, collection: str) -> LoadedIndex:
        """The collection's index: this replica's copy if its version is current; else
        its main segment kept if that is current, and the delta loaded from Redis."""
        raw = await self.redis.hmget(self.key(collection), ["version", "main_version"])
        if raw[0] is None:
            self.cache.pop(collection, None)
            raise not_found(collection)
        version, main_version = int(raw[0]), int(raw[1] or 0)
        cached = self.cache.get(collection)
        if cached is not None and cached.version == version:
            self.cache.move_to_end(collection)
            return cached
        if cached is not None and cached.main_version == main_version:
            main = cached.index.segments[0]
        else:
            main = await self._segment(collection, "index")
        delta = await self._segment(collection, "delta")
        loaded = LoadedIndex(version, BM25Index([main, delta]), main.keys + delta.keys,
                             main_version)
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


async def _off_loop(function: Any, *args: Any, size: int) -> Any:
    """``function(*args)``: inline when ``size`` (rows, KiB) is small enough that a thread
    hop costs more, else on a thread."""
    if size < 64:
        return function(*args)
    return await asyncio.to_thread(function, *args)


async def _to_bytes(segment: Segment) -> bytes:
    blob: bytes = await _off_loop(segment.to_bytes, size=segment.size)
    return blob


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
