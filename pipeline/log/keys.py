"""The names of the event log's Redis keys, standalone and on a Redis Cluster.

On a standalone Redis the names are the ones every existing log already has::

    {prefix}:session:{session}      the session's stream
    {prefix}:feed                   the one feed of pointers for background workers
    {prefix}:changes                which streams were appended to, for live readers
    {prefix}:toolcall:{session}:{call}   who runs a server tool call (a lease, with a TTL)
    {prefix}:erased:{session}       an erased session's receipt (no content), with a TTL
    {prefix}:dek:{session}          its data key, wrapped (encryption at rest)

A Redis Cluster refuses a script or a multi-key command whose keys live in different
slots, and the append script writes the session's stream *and* a feed. So in cluster mode
each session belongs to one of ``partitions`` partitions (a stable hash of its id), and
its stream shares its partition's hash tag with its partition's feed::

    {prefix}:session:{p<n>[.k]}:{session}
    {prefix}:feed:{p<n>[.k]}
    {prefix}:changes:{p<n>[.k]}

The tag of partition ``n`` is ``p<n>``, or ``p<n>.<k>`` with the first ``k`` that puts it in
the ``n``-th of ``partitions`` equal bands of the 16,384 slots: tags are spread evenly, so a
cluster whose primaries own equal slot ranges (what ``redis-cli --cluster create`` makes)
holds equal shares of the partitions (16 over 3 primaries: 5, 6, 5; hashed freely they
fell 4, 5, 7, and the busiest shard bounds what a third shard can add).

One feed per partition, not one for the deployment: a single feed key would put every
append of every session on one slot, one primary. Workers read every partition's feed
(:class:`pipeline.log.consumer.FeedReader`). The number of partitions is fixed for a
deployment's life (changing it moves sessions to other keys); it bounds how many shards
the log can use, so it defaults to more than a small cluster has.
"""

from __future__ import annotations

import functools
import zlib

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

__all__ = ["CHANGES_MAXLEN", "LogKeys"]

#: entries a changes stream keeps (about: trimmed in whole nodes), ~1 MB of key names; a
#: live reader that falls further behind than that reads all its streams once instead
CHANGES_MAXLEN = 10_000
#: an append of one event whose stream fields are at most this many bytes (a text delta,
#: a sentence; not audio) is copied whole into its changes entry, so a live reader hands
#: it out from the entry that woke it, without reading the session's stream (one round
#: trip an event instead of two); the changes streams then hold up to ~3 MB each
CHANGES_INLINE_BYTES = 256
#: how long a changes entry that carries an event may outlive it at most (trimmed by age
#: too, not only by count: a quiet partition keeps no words of a session for long)
CHANGES_KEEP_MS = 600_000


class LogKeys:
    """Key names under ``prefix``; ``partitions=0`` is the standalone layout."""

    def __init__(self, prefix: str, partitions: int = 0) -> None:
        if partitions < 0:
            raise ValueError("partitions cannot be negative")
        self.prefix = prefix
        self.partitions = partitions

    @property
    def cluster(self) -> bool:
        return self.partitions > 0

    def partition(self, session_id: str) -> int:
        """The session's partition (0 standalone): stable across processes and restarts."""
        return _partition(session_id, self.partitions) if self.partitions else 0

    def tag(self, partition: int) -> str:
        """The hash tag every key of ``partition`` carries ("" standalone)."""
        return _tag(partition, self.partitions) if self.partitions else ""

    def session(self, session_id: str) -> str:
        return _session_key(self.prefix, self.partitions, session_id)

    def append_keys(self, session_id: str) -> list[str]:
        """The keys the append script writes, in its order: the session's stream, its
        feed, its changes stream and its tombstone (a new list: the caller may keep it)."""
        return list(_append_keys(self.prefix, self.partitions, session_id))

    def feed(self, partition: int = 0) -> str:
        """The feed of ``partition`` (the one feed standalone)."""
        if not self.partitions:
            return f"{self.prefix}:feed"
        return f"{self.prefix}:feed:{self.tag(partition)}"

    def feed_of(self, session_id: str) -> str:
        return self.feed(self.partition(session_id))

    def feeds(self) -> list[str]:
        return [self.feed(n) for n in range(max(self.partitions, 1))]

    def changes(self, partition: int = 0) -> str:
        """The stream that names each session stream of ``partition`` as it is appended
        to: what a live reader blocks on, so that a read names only streams that changed."""
        if not self.partitions:
            return f"{self.prefix}:changes"
        return f"{self.prefix}:changes:{self.tag(partition)}"

    def changes_of(self, session_id: str) -> str:
        return self.changes(self.partition(session_id))

    def data_key(self, session_id: str) -> str:
        """The session's wrapped data key (encryption at rest; in its stream's slot)."""
        if not self.partitions:
            return f"{self.prefix}:dek:{session_id}"
        return f"{self.prefix}:dek:{self.tag(self.partition(session_id))}:{session_id}"

    def erased(self, session_id: str) -> str:
        """An erased session's tombstone (its receipt; in its stream's slot)."""
        if not self.partitions:
            return f"{self.prefix}:erased:{session_id}"
        return f"{self.prefix}:erased:{self.tag(self.partition(session_id))}:{session_id}"

    def tool_call(self, session_id: str, call_id: str) -> str:
        """The lease of a server tool call while it runs (in its session's slot)."""
        if not self.partitions:
            return f"{self.prefix}:toolcall:{session_id}:{call_id}"
        tag = self.tag(self.partition(session_id))
        return f"{self.prefix}:toolcall:{tag}:{session_id}:{call_id}"

    def wake(self, partition: int, reader: str) -> str:
        """A live reader's own wake-up stream, in the slot of the streams it reads."""
        if not self.partitions:
            return f"{self.prefix}:fanout:{reader}"
        return f"{self.prefix}:fanout:{self.tag(partition)}:{reader}"


# An append asks for its session's partition and keys several times (the writer, the
# stream it flies on, the fanout that hands it out): hashed and formatted each time, that
# was a twentieth of a writer's CPU. The sessions a process is busy with stay at hand.
_SESSIONS_AT_HAND = 8192


@functools.lru_cache(maxsize=_SESSIONS_AT_HAND)
def _partition(session_id: str, partitions: int) -> int:
    return zlib.crc32(session_id.encode()) % partitions


@functools.lru_cache(maxsize=4096)
def _tag(partition: int, partitions: int) -> str:
    return f"{{{_tag_name(partition, partitions)}}}"


@functools.lru_cache(maxsize=_SESSIONS_AT_HAND)
def _session_key(prefix: str, partitions: int, session_id: str) -> str:
    if not partitions:
        return f"{prefix}:session:{session_id}"
    return f"{prefix}:session:{_tag(_partition(session_id, partitions), partitions)}:{session_id}"


@functools.lru_cache(maxsize=_SESSIONS_AT_HAND)
def _append_keys(prefix: str, partitions: int, session_id: str) -> tuple[str, ...]:
    keys = LogKeys(prefix, partitions)
    return (keys.session(session_id), keys.feed_of(session_id), keys.changes_of(session_id),
            keys.erased(session_id))


@functools.lru_cache(maxsize=4096)
def _tag_name(partition: int, partitions: int) -> str:
    """``p<n>`` or ``p<n>.<k>``: the first whose slot lies in partition ``n``'s own band."""
    slots = REDIS_CLUSTER_HASH_SLOTS
    low, high = partition * slots // partitions, (partition + 1) * slots // partitions
    for k in range(64 * slots):  # a band of one slot takes ~16,384 tries on average
        name = f"p{partition}.{k}" if k else f"p{partition}"
        if low <= key_slot(name.encode()) < high:
            return name
    raise ValueError(f"no hash tag found for partition {partition} of {partitions}")
