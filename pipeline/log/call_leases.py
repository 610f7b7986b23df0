"""Who is running a server tool call right now: a lease per call, in the session's slot.

A server call's start and end are in the log; between the two, only a lease says that
someone is still running it. The replica that runs a call holds its lease (``SET NX`` with
a TTL, refreshed while the call runs); a replica that finds a call started and not ended
(its runner died with its process) may end it only once the lease has lapsed, and takes
the lease itself first, so two replicas never both decide for one call. The lease is never
deleted: it lapses ``ttl_s`` after its last refresh, long after the call's end was
appended (milliseconds after the call returns), so a reader that holds the lease and finds
no end in the log knows nobody will write one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from pipeline.log.keys import LogKeys

__all__ = ["CallLeases"]


class CallLeases:
    """Leases of running server calls (see the module docstring)."""

    def __init__(self, redis: Redis | RedisCluster, keys: LogKeys, ttl_s: float = 10.0,
                 owner: str | None = None) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_ms = max(1, round(ttl_s * 1000))
        #: who holds a lease (for an operator reading the key): host and process
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"

    @contextlib.asynccontextmanager
    async def hold(self, session_id: str, call_id: str) -> AsyncIterator[bool]:
        """Take the call's lease for the block (``True``), refreshed while it runs; ``False``
        when another holds it (the block must not run the call)."""
        key = self.keys.tool_call(session_id, call_id)
        taken = await self.redis.set(key, self.owner, nx=True, px=self.ttl_ms)
        if not taken:
            yield False
            return
        refresh = asyncio.create_task(self._refresh(key), name=f"lease-{call_id}")
        try:
            yield True
        finally:
            refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await refresh

    async def remaining_ms(self, session_id: str, call_id: str) -> int:
        """How long the call's lease still runs if nobody refreshes it (0: free)."""
        left = await self.redis.pttl(self.keys.tool_call(session_id, call_id))
        return max(0, int(left))

    async def _refresh(self, key: str) -> None:
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            await self.redis.pexpire(key, self.ttl_ms)
