"""A connection of its own for a long blocking read (XREAD BLOCK), outside the shared pool.

Why not the shared client: its readers are cancelled all the time (a Gateway's live read
starts over whenever its set of sessions changes), and redis-py's pools do not survive
that well, above all the cluster client's:

* the cluster client disconnects a node's *free* connections after any connection error
  on that node, and closes every connection on CLUSTERDOWN, while other tasks may have
  just taken those connections: their next write finds the socket gone
  (``AttributeError: 'NoneType' object has no attribute 'writelines'`` inside redis-py);
* with a socket timeout, every write goes through ``asyncio.wait_for``, which on CPython
  3.11 swallows a ``cancel()`` that arrives as the write completes: the "cancelled" read
  then blocks for its whole ``BLOCK`` time (measured: 7 cancels in 60).

So each blocking read runs on a connection that no other task uses, with no socket
timeout of redis-py's (our own ``asyncio.timeout`` bounds it instead: block time plus the
command timeout), and after anything but a clean answer the connection is thrown away
and the next read opens a fresh one, on the node that holds the slot *now* (after a
failover, that is the promoted replica).

Behind Sentinel the shared client has no address to copy: the sentinels are asked for
the master's when a dedicated connection is opened, so a read after a failed one goes to
whichever server they promoted meanwhile. A connection that stays healthy is checked
against the sentinels' answer every :data:`SENTINEL_RECHECK_S` too: a master demoted
without dying (a manual failover, a healed partition) keeps serving reads as a replica,
and we would follow its replication instead of the master.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from redis.asyncio import Connection, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pipeline.aio import reraise_lost_cancel
from pipeline.log.redis_client import SafeConnection, is_cluster, is_sentinel

# what a dedicated connection keeps of the shared client's settings: who we are and how
# to reach the server, never its pool-wide machinery or its per-command timeout
_KEPT = {
    "username", "password", "credential_provider", "db", "client_name", "path",
    "socket_connect_timeout", "socket_keepalive", "socket_keepalive_options",
    "health_check_interval", "ssl_keyfile", "ssl_certfile", "ssl_cert_reqs", "ssl_ca_certs",
    "ssl_ca_data", "ssl_check_hostname", "ssl_min_version", "ssl_ciphers",
}
_DEFAULT_TIMEOUT_S = 5.0
#: how long a healthy dedicated connection behind Sentinel goes without asking where the
#: master is (one SENTINEL MASTERS round trip; a failed read asks at once)
SENTINEL_RECHECK_S = 5.0


class BlockingReads:
    """Blocking XREADs for one live read, one at a time, on a connection of their own.

    Not shared between tasks: the owner awaits :meth:`xread` from one task only. The
    command goes straight onto the connection (no client, pool or retry around it: a
    live read is one command after another, and these layers were a tenth of a reader's
    CPU per event on the log bench); its reply is shaped as redis-py's ``xread`` shapes it.
    """

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._connection: Connection | None = None
        self._node: tuple[str, int] | None = None
        self._master_known_at = 0.0  # when the sentinels last named the master (monotonic)
        #: dedicated connections opened (a figure for tests)
        self.opened = 0

    async def xread(self, streams: dict[Any, Any], *, count: int, block_ms: int | None,
                    flat: bool = False) -> Any:
        """``XREAD COUNT count [BLOCK block_ms] STREAMS ...`` (all keys in one slot;
        ``None``: no BLOCK, an answer at once): ``[[key, [(id, {field: value})]]]``, or
        ``None`` when nothing came; ``flat``: each entry's fields as Redis lists them,
        ``[name, value, ...]`` (no dict built for an entry the caller may skip)."""
        connection, timeout_s = await self._connect(next(iter(streams)))
        command: list[Any] = ["XREAD", "COUNT", count]
        if block_ms is not None:
            command += ["BLOCK", block_ms]
        command += ["STREAMS", *streams.keys(), *streams.values()]
        clean = False
        try:
            async with asyncio.timeout((block_ms or 0) / 1000 + timeout_s):
                await connection.send_command(*command)
                reply = await connection.read_response()
            reraise_lost_cancel()
            clean = True
        except TimeoutError as exc:  # asyncio's: the server did not answer in time
            raise RedisTimeoutError(f"no answer to a blocking read in {timeout_s} s") from exc
        except ResponseError:  # an answer, whole: the connection is still good
            clean = True
            raise
        finally:
            if not clean:  # cancelled or failed: the socket may hold half a reply
                await self._discard()
        if not reply:
            return None
        streams_read = reply.items() if isinstance(reply, dict) else reply  # RESP3: a map
        if flat:
            return [[key, entries] for key, entries in streams_read]
        return [[key, [(entry_id, dict(zip(fields[::2], fields[1::2], strict=True)))
                       for entry_id, fields in entries]]
                for key, entries in streams_read]

    async def aclose(self) -> None:
        await self._discard()

    async def _connect(self, key: Any) -> tuple[Connection, float]:
        if is_cluster(self.redis):
            await self.redis.initialize()  # the slot map (a no-op once known)
            reraise_lost_cancel()  # that ran on the shared pool, where cancels get lost
            node = self.redis.get_node_from_key(key)  # type: ignore[attr-defined]
            if node is None:  # mid-reshard: retried (after a topology refresh) as a loss
                raise RedisConnectionError(f"no node holds the slot of {key!r} now")
            kwargs = dict(node.connection_kwargs)
            kwargs["host"], kwargs["port"] = node.host, node.port
            connection_class = node.connection_class
        elif is_sentinel(self.redis):
            kwargs = dict(self.redis.connection_pool.connection_kwargs)
            kwargs["host"], kwargs["port"] = await self._master()
            connection_class = SafeConnection  # to that address, not the pool's lookup
        else:
            kwargs = dict(self.redis.connection_pool.connection_kwargs)
            connection_class = self.redis.connection_pool.connection_class
        address = (str(kwargs.get("host", kwargs.get("path"))), int(kwargs.get("port") or 0))
        timeout_s = float(kwargs.get("socket_timeout") or _DEFAULT_TIMEOUT_S)
        if self._connection is not None and address == self._node:
            return self._connection, timeout_s
        await self._discard()
        kept = {name: value for name, value in kwargs.items() if name in _KEPT}
        if "path" not in kept:
            kept["host"], kept["port"] = address
        self._connection = connection_class(
            socket_timeout=None, retry=Retry(NoBackoff(), 0), decode_responses=False, **kept)
        self._node = address
        self.opened += 1
        return self._connection, timeout_s

    async def _master(self) -> tuple[str, int]:
        """The master's address: asked of the sentinels for a new connection and every
        :data:`SENTINEL_RECHECK_S`, else the one the open connection goes to."""
        now = time.monotonic()
        if self._connection is not None and self._node is not None and (
                now - self._master_known_at < SENTINEL_RECHECK_S):
            return self._node
        pool: Any = self.redis.connection_pool
        # redis-py's MasterNotFoundError (a ConnectionError) when no sentinel names one
        host, port = await pool.sentinel_manager.discover_master(pool.service_name)
        reraise_lost_cancel()  # that ran on the sentinels' shared clients
        self._master_known_at = now
        return str(host), int(port)

    async def _discard(self) -> None:
        connection, self._connection, self._node = self._connection, None, None
        if connection is None:
            return
        # shielded: the close runs to its end even while we are being cancelled
        with contextlib.suppress(RedisError, OSError):
            await asyncio.shield(connection.disconnect())


async def refresh_topology(redis: Redis) -> None:
    """After a failed read on a cluster: ask the cluster who holds which slot now."""
    if is_cluster(redis):
        with contextlib.suppress(RedisError, OSError):
            await redis.nodes_manager.initialize()  # type: ignore[attr-defined]
