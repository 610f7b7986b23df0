"""Document collections in Redis, with their BM25 index, so any replica serves them.

Keys of a collection ``c`` (under the log's ``key_prefix``)::

    {p}:collections                 set of every collection id (the server-wide limit)
    {p}:collections:client:{who}    set of the collections one client created (its quota)
    {p}:collection:{c}              hash: name, created_ts, owner, version, main_version,
                                    delta_version, documents, chunks
    {p}:collection:{c}:docs         hash: document id -> DocumentInfo (JSON)
    {p}:collection:{c}:chunks       hash: "{document}:{n}" -> chunk text
    {p}:collection:{c}:index|delta|pending    its BM25 index (see pipeline.retrieval.indexes)
    {p}:collection:{c}:grants       set of session ids that may search it
    {p}:collection:{c}:lock         held while a writer changes documents

Creating a collection checks and reserves both counts (the server's, the client's) in one
Lua script, so concurrent creates cannot pass a limit; deleting frees both. The new
collection's hash is written first: until the reservation it is a key nobody knows, and
is deleted again when the reservation is refused.

On a Redis Cluster every key of one collection carries its id as a hash tag
(``{p}:collection:{{c}}:docs``), so each MULTI over a collection stays in one slot, and
the two counting sets share the tag ``{collections}``: both are touched only when a
collection is created or deleted.

A document is read (text, chunks, tokens, its own index segment) in a reader process
(:class:`pipeline.retrieval.readers.DocumentReaders`), then added under the lock: its
chunks, its segment and a new ``version`` are written in one MULTI (a reader sees the old
collection or the new one, never half). An add costs its document, not the collection
(:class:`pipeline.retrieval.indexes.IndexStore` says how the index tiers fold and merge).
Deleting a document rewrites the index without its rows.

Collections have no TTL: they live until deleted (Redis persistence keeps them across
restarts of the server, cluster/redis.conf).
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections import OrderedDict
from typing import Any

from redis.asyncio import Redis

from pipeline.log import is_cluster
from pipeline.retrieval.documents import ReadDocument
from pipeline.retrieval.indexes import IndexStore, LoadedIndex, not_found
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
#: KEYS: every collection, the client's; ARGV: id, server limit, client limit.
#: 1: server full; 2: client's quota used
_CREATE = """
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 1 end
if redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[3]) then return 2 end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[1])
return 0
"""


class CollectionStore:
    """Collections, documents and indexes in Redis; one per process (it caches indexes
    and owns the document readers: :meth:`aclose` stops them)."""

    def __init__(self, redis: Redis, settings: RetrievalSettings, key_prefix: str) -> None:
        self.redis = redis
        self.settings = settings
        self.prefix = key_prefix
        self.cluster = is_cluster(redis)
        #: the set of every collection (its count is the server-wide limit)
        self.all_key = f"{key_prefix}:" + ("{collections}" if self.cluster else "collections")
        self.readers = DocumentReaders(settings)
        self.indexes = IndexStore(redis, settings, self.key, self.chunk_texts)

    @property
    def cache(self) -> OrderedDict[str, LoadedIndex]:
        """Collection id -> the index this replica loaded last (LRU, ``index_cache``)."""
        return self.indexes.cache

    async def aclose(self) -> None:
        await self.readers.aclose()

    def key(self, collection: str, part: str = "") -> str:
        tagged = f"{{{collection}}}" if self.cluster else collection
        return f"{self.prefix}:collection:{tagged}" + (f":{part}" if part else "")

    def client_key(self, client: str) -> str:
        return f"{self.all_key}:client:{client}"

    # ---- collections ------------------------------------------------------------------

    async def create(self, name: str = "", client: str = "local") -> CollectionInfo:
        """A new empty collection of ``client`` (an opaque id: a key's digest, an
        address). Past ``max_collections``: 409 ``too_many_collections``; past the
        client's ``max_collections_per_client``: 409 ``collection_quota_exceeded``."""
        collection = f"col_{uuid.uuid4().hex[:16]}"
        info = CollectionInfo(collection_id=collection, name=name, created_ts=now_ms(),
                              version=0, documents=0, chunks=0)
        fields = {"name": name, "created_ts": info.created_ts, "owner": client, "version": 0,
                  "main_version": 0, "delta_version": 0, "documents": 0, "chunks": 0}
        most, mine = self.settings.max_collections, self.settings.max_collections_per_client
        await self.redis.hset(self.key(collection), mapping=fields)  # type: ignore[arg-type]
        refused = await self.redis.eval(
            _CREATE, 2, self.all_key, self.client_key(client), collection, most, mine)
        if int(refused):
            await self.redis.delete(self.key(collection))
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
        parts = ("", "docs", "chunks", "index", "delta", "pending", "rows", "grants")
        async with self.redis.pipeline(transaction=True) as pipe:  # the collection's slot
            pipe.delete(*(self.key(collection, part) for part in parts))
            await pipe.execute()
        async with self.redis.pipeline(transaction=True) as pipe:  # the counting sets' slot
            pipe.srem(self.all_key, collection)
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

    async def revoke_everywhere(self, session_id: str) -> int:
        """Take every collection back from a session (it is erased); how many had it."""
        revoked = 0
        for collection in await self.redis.smembers(self.all_key):
            name = collection.decode() if isinstance(collection, bytes) else collection
            revoked += int(await self.redis.srem(self.key(name, "grants"), session_id))
        return revoked

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
        """Add a document already read: its chunks and its own index segment, nothing
        else of the index (see pipeline.retrieval.indexes)."""
        document_id = f"doc_{uuid.uuid4().hex[:12]}"
        info = DocumentInfo(document_id=document_id, title=title, format=fmt,
                            chars=read.chars, chunks=len(read.chunks), created_ts=now_ms())
        keys = [f"{document_id}:{n}" for n in range(len(read.chunks))]
        segment = read.segment.with_keys(keys)
        async with self._locked(collection):
            current = await self.get(collection)
            most = self.settings.max_chunks_per_collection
            if current.chunks + len(read.chunks) > most:
                raise InputTooLargeError(
                    f"the collection holds {current.chunks} chunks; {len(read.chunks)} more "
                    f"would pass its limit of {most}", code=ErrorCode.COLLECTION_FULL,
                    limit=most)
            version = current.version + 1
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(self.key(collection, "docs"), document_id, info.model_dump_json())
                texts_of: dict[Any, Any] = dict(zip(keys, read.chunks, strict=True))
                pipe.hset(self.key(collection, "chunks"), mapping=texts_of)
                self.indexes.append(pipe, collection, segment)
                pipe.hset(self.key(collection), mapping={
                    "version": version, "documents": current.documents + 1,
                    "chunks": current.chunks + len(keys)})
                *_, pending, _ = await pipe.execute()
            await self.indexes.fold(collection, version, int(pending))
        return info

    async def delete_document(self, collection: str, document_id: str) -> None:
        """Delete a document: the index is rewritten as one main segment without its
        rows, off the loop."""
        async with self._locked(collection):
            info, _ = await self.document(collection, document_id)
            current = await self.get(collection)
            prefix = f"{document_id}:"
            version = current.version + 1
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hdel(self.key(collection, "docs"), document_id)
                fields = [f"{prefix}{n}" for n in range(info.chunks)]
                if fields:
                    pipe.hdel(self.key(collection, "chunks"), *fields)
                await self.indexes.without(pipe, collection, version,
                                           lambda key: key.startswith(prefix))
                pipe.hset(self.key(collection), mapping={
                    "version": version, "documents": max(0, current.documents - 1),
                    "chunks": max(0, current.chunks - info.chunks)})
                await pipe.execute()

    # ---- the index --------------------------------------------------------------------

    async def index(self, collection: str) -> LoadedIndex:
        """The collection's index (this replica's copy while current; see
        pipeline.retrieval.indexes)."""
        return await self.indexes.load(collection)

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
