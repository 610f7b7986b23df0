"""redis-py's asyncio cluster client with the standalone pool's promise: past the bound, wait.

A standalone client (:func:`pipeline.log.create_redis`) has a *blocking* pool: past
``max_connections`` a command waits up to ``socket_timeout_s`` for a free connection.
redis-py's cluster client keeps ``max_connections`` per node too, but past it raises
``MaxConnectionsError`` at once (``ClusterNode.acquire_connection``), and nothing above
retries that: a burst of reads to one node (a reader starting, a Gateway restarting,
sockets resuming together after a failover) failed every command past the bound with
``event_log_unavailable``. :class:`BoundedCluster` makes the cluster client wait as the
standalone one does: every command and pipeline first takes one of ``max_connections``
places, so no node ever has more commands in flight than its pool holds.

It also learns the cluster's routing before a command picks its node. redis-py's client
resolves a command's node before it initializes (when it starts, and again after each
``aclose()``: it closes everything on every fifth MOVED), so a burst in that gap went to
one arbitrary primary and came back as MOVED after MOVED, each fifth closing every
connection, other tasks' in-flight writes among them.

A key's slot is remembered (:meth:`BoundedCluster.keyslot`): redis-py hashes every key
of every command again, and a log's keys are few and used all the time (a session's
stream, its partition's feed and changes stream, per append).

One place per command is enough: a command uses one connection of one node, a pipeline
at most one of each node it touches. A pipeline that falls back to single commands
(a redirection mid-pipeline) re-enters the client holding its place, so it does not
take a second one (which a full client could never give: a deadlock).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any

from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException

#: keys whose slot is remembered at most (then forgotten all at once: a dict, no LRU)
SLOT_CACHE = 65_536

#: whether the current task already holds a place of the client (a pipeline's fallback)
_HOLDING: ContextVar[bool] = ContextVar("voxline_cluster_place", default=False)


class BoundedCluster(RedisCluster):
    """A :class:`RedisCluster` whose commands wait for one of ``max_connections``
    places (up to ``wait_s``, then a :class:`redis.exceptions.ConnectionError`, as a
    standalone blocking pool times out) instead of failing past a node's pool."""

    def __init__(self, *, max_connections: int, wait_s: float, **kwargs: Any) -> None:
        super().__init__(max_connections=max_connections, **kwargs)
        self._places = asyncio.Semaphore(max_connections)
        self._bound = max_connections
        self._wait_s = wait_s
        self._slots: dict[Any, int] = {}

    def keyslot(self, key: Any) -> int:
        if not isinstance(key, str | bytes):
            return super().keyslot(key)
        slot = self._slots.get(key)
        if slot is None:
            if len(self._slots) >= SLOT_CACHE:
                self._slots.clear()
            slot = self._slots[key] = super().keyslot(key)
        return slot

    @contextlib.asynccontextmanager
    async def place(self) -> AsyncIterator[None]:
        """Hold one place for a command or a pipeline (a holder re-entering: no wait)."""
        if _HOLDING.get():
            yield
            return
        await self.take_place()
        token = _HOLDING.set(True)
        try:
            yield
        finally:
            _HOLDING.reset(token)
            self.give_place()

    async def take_place(self) -> None:
        """Take one place (until :meth:`give_place`): a command's, or a connection held
        apart from the client's commands (:mod:`pipeline.log._direct`)."""
        if not self._places.locked():  # a free place: taken at once, no timer
            await self._places.acquire()
            return
        try:
            async with asyncio.timeout(self._wait_s):
                await self._places.acquire()
        except TimeoutError:
            raise RedisConnectionError(f"no free Redis connection in {self._wait_s} s (all "
                                       f"{self._bound} in use)") from None

    def give_place(self) -> None:
        self._places.release()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if self._initialize:  # routing first: redis-py picks a node before it learns it
            await self.initialize()
        async with self.place():
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any | None = None,
                 shard_hint: Any | None = None) -> ClusterPipeline:
        if shard_hint:
            raise RedisClusterException("shard_hint is deprecated in cluster mode")
        return _BoundedPipeline(self, transaction)  # type: ignore[abstract]  # as redis-py's


class _BoundedPipeline(ClusterPipeline):
    """A cluster pipeline that runs in one place of its :class:`BoundedCluster`."""

    async def execute(self, raise_on_error: bool = True,
                      allow_redirections: bool = True) -> list[Any]:
        client: BoundedCluster = self.cluster_client  # type: ignore[assignment]
        async with client.place():
            return await super().execute(raise_on_error, allow_redirections)
