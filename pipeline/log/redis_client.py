"""The one place a Redis client is built, with redis-py's own retry policy.

Transient failures (a dropped connection, a timeout) are retried by redis-py's ``Retry``
with exponential backoff and jitter, configured in :class:`schemas.RedisSettings`: retries
are configuration, not loops in our code. Commands we send are safe to retry: appends carry
explicit stream ids, so a retried append after a lost reply is recognised as a duplicate
(see :mod:`pipeline.log.eventlog`).

``redis+cluster://host:port[,host:port...]/`` selects a Redis Cluster (redis-py's asyncio
cluster client; the hosts are its startup nodes, any of them will do); every other URL is
a standalone server, as before. The cluster client is returned typed as :class:`Redis`:
it answers the same commands, routed by key, and the few places that must know
(:func:`is_cluster`: key names, per-slot reads, WAIT) ask.

``redis+sentinel://[user:password@]host:port[,host:port...]/master-name[/db]`` selects a
standalone server watched by Redis Sentinel (redis-py's asyncio ``Sentinel``): the hosts
are sentinels (port 26379 when left out), ``master-name`` is the name they monitor it
under, ``db`` the database number (0 when left out). The client asks the sentinels for
the master's address whenever it opens a connection, so after a failover its next
connection goes to the promoted replica. The credentials are the master's (and its
replicas'); the sentinels are asked without any. Query options are refused: the pool,
timeouts and retries come from :class:`schemas.RedisSettings` as for ``redis://``. To the
rest of Voxline it is a standalone server (same key names, same WAIT).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote

import hiredis
from redis.asyncio import BlockingConnectionPool, Connection, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pipeline.log._cluster_client import BoundedCluster
from schemas import ConfigurationError, RedisSettings

CLUSTER_SCHEME = "redis+cluster://"
SENTINEL_SCHEME = "redis+sentinel://"
SENTINEL_PORT = 26379


class SafeConnection(Connection):
    """redis-py's connection, with two ways of failing that nothing above it handles.

    * **A socket closed under it is a connection error.** redis-py's cluster client
      closes a node's free connections after a connection error on that node (and all of
      them on CLUSTERDOWN) while other tasks may have just taken them; their write then
      fails with ``AttributeError: 'NoneType' object has no attribute 'writelines'``
      (on CPython 3.12, a write into a transport being closed raises ``TypeError:
      'NoneType' object is not callable`` from asyncio's ``writelines``, gh-136234),
      which nothing retries. As a :class:`ConnectionError` it is retried by the client's
      own policy, on a fresh socket, like any dropped connection.
    * **Commands are packed in C.** redis-py's asyncio connection packs every command in
      Python (its synchronous one uses hiredis when present); on the log bench that was a
      sixth of a writer's CPU per event. hiredis packs the same bytes (a ``str`` as UTF-8,
      numbers as their ``repr``); anything else goes redis-py's way (its ``DataError``).
    * **A cancel is never lost in a write.** With a socket timeout every write runs in
      ``asyncio.wait_for``, which on CPython 3.11 swallows a ``cancel()`` arriving as the
      write completes: the cancelled task reads the answer and carries on (a blocking
      read for its whole block time, a lease keeper forever). A cancel requested during
      the write is raised after it, and the connection, whose answer nobody will read,
      is closed.
    * **A write that need not wait runs no timer.** ``wait_for`` wraps every write in a
      task of its own with a timer (on 3.11), though a write into a socket whose buffer
      is not full never waits: on the gateway bench that was ~2 tasks, timers and their
      callbacks per event. A connected socket is written at once; only a full buffer's
      drain waits, bounded by the socket timeout as before.
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        if self.encoder.encoding != "utf-8" or self.encoder.encoding_errors != "strict":
            return super().pack_command(*args)
        head = args[0]
        if isinstance(head, str):  # "CONFIG GET": the server wants two arguments
            args = (*head.encode().split(), *args[1:])
        elif b" " in head:
            args = (*head.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:  # a type hiredis does not pack: redis-py's way, or its DataError
            return super().pack_command(*args)

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        task = asyncio.current_task()
        cancels = task.cancelling() if task is not None else 0
        try:
            if self._ready(check_health):
                await self._write(command)
            else:  # connect, or ping first: redis-py's way
                await super().send_packed_command(command, check_health)
        except (AttributeError, TypeError) as exc:
            if self.is_connected and not self._transport_closing():
                raise  # not the race above: a bug, let it show
            await self.disconnect(nowait=True)
            raise RedisConnectionError("the connection was closed while in use") from exc
        if task is not None and task.cancelling() > cancels:
            await self.disconnect(nowait=True)
            raise asyncio.CancelledError

    def _ready(self, check_health: bool) -> bool:
        """Connected, and no health check due before this write."""
        return self.is_connected and not (
            check_health and self.health_check_interval
            and asyncio.get_running_loop().time() > self.next_health_check)

    async def _write(self, command: Any) -> None:
        """redis-py's write and its errors, with the timer only where a drain waits."""
        if isinstance(command, str):
            command = command.encode()
        writer: Any = self._writer  # None if closed under us: the caller's AttributeError
        try:
            writer.writelines([command] if isinstance(command, bytes) else command)
            if self.socket_timeout and writer.transport.get_write_buffer_size():
                async with asyncio.timeout(self.socket_timeout):
                    await writer.drain()
            else:  # nothing left in the buffer: the drain does not wait
                await writer.drain()
        except TimeoutError:
            await self.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket") from None
        except OSError as exc:
            await self.disconnect(nowait=True)
            raise RedisConnectionError(f"Error while writing to socket: {exc}") from exc
        except (AttributeError, TypeError):
            raise  # the socket closed under us: handled by the caller
        except BaseException:  # cancelled mid-drain: half a command may be out
            await self.disconnect(nowait=True)
            raise

    def _transport_closing(self) -> bool:
        writer = self._writer
        return writer is None or writer.transport.is_closing()


class SafeSentinelConnection(SafeConnection, SentinelManagedConnection):
    """A connection to the master the sentinels name at connect time, with
    :class:`SafeConnection`'s two safeguards (a pool emptied after a failover closes
    sockets other tasks hold, and a cancel must not be lost in a write there either)."""


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """redis-py's sentinel pool (the master looked up on each new connection, idle ones
    dropped when it moved) with the blocking pool's bound: past ``max_connections`` a
    command waits up to ``timeout`` for a free connection, as on ``redis://``. Closing it
    closes the connections to the sentinels too."""

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:
            await self.sentinel_manager.aclose()


@dataclass(frozen=True)
class SentinelUrl:
    """What a ``redis+sentinel://`` URL names (see the module docstring)."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def cluster_nodes(url: str) -> list[tuple[str, int]] | None:
    """The startup nodes of a ``redis+cluster://`` URL; ``None`` for any other URL."""
    if not url.startswith(CLUSTER_SCHEME):
        return None
    netloc = url[len(CLUSTER_SCHEME):].split("/", 1)[0]
    return _hosts(netloc, CLUSTER_SCHEME, default_port=None)


def sentinel_url(url: str) -> SentinelUrl | None:
    """The sentinels, master name and db of a ``redis+sentinel://`` URL; ``None`` for any
    other URL; a :class:`ConfigurationError` saying what is wrong with a malformed one."""
    if not url.startswith(SENTINEL_SCHEME):
        return None
    rest = url[len(SENTINEL_SCHEME):]
    if "?" in rest or "#" in rest:
        raise ConfigurationError(
            "a redis+sentinel:// URL takes no options (?...): the pool, timeouts and retries "
            "are VOXLINE_REDIS__* settings", setting="VOXLINE_REDIS_URL")
    netloc, _, path = rest.partition("/")
    sentinels = _hosts(netloc, SENTINEL_SCHEME, default_port=SENTINEL_PORT)
    parts = path.split("/")
    if parts and parts[-1] == "" and len(parts) > 1:
        parts.pop()  # one trailing slash
    master = unquote(parts[0])
    if not master or len(parts) > 2:
        raise ConfigurationError(
            "a Sentinel URL is redis+sentinel://host:port[,host:port...]/master-name[/db]",
            setting="VOXLINE_REDIS_URL")
    db = parts[1] if len(parts) == 2 else "0"
    if not db.isdigit():
        raise ConfigurationError(f"the database {db!r} in the Redis URL is not a number",
                                 setting="VOXLINE_REDIS_URL")
    username, password = _credentials(netloc)
    return SentinelUrl(tuple(sentinels), master, int(db), username, password)


def _hosts(netloc: str, scheme: str, *, default_port: int | None) -> list[tuple[str, int]]:
    """``host:port[,host:port...]`` after any ``user:password@``; ``[v6]:port`` too."""
    nodes = []
    for part in filter(None, netloc.rsplit("@", 1)[-1].split(",")):
        if part.endswith("]") or ":" not in part:
            host, port = part, ""  # no port given
        else:
            host, _, port = part.rpartition(":")
        if not port and default_port is not None:
            port = str(default_port)
        bare_v6 = ":" in host and not (host.startswith("[") and host.endswith("]"))
        if not host or bare_v6 or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigurationError(f"{part!r} in the Redis URL is not host:port",
                                     setting="VOXLINE_REDIS_URL")
        nodes.append((host.strip("[]"), int(port)))
    if not nodes:
        raise ConfigurationError(f"a {scheme} URL names at least one host:port",
                                 setting="VOXLINE_REDIS_URL")
    return nodes


def _credentials(netloc: str) -> tuple[str | None, str | None]:
    if "@" not in netloc:
        return None, None
    user, _, password = netloc.rsplit("@", 1)[0].partition(":")
    return unquote(user) or None, unquote(password) or None


def is_cluster(redis: object) -> bool:
    """Whether ``redis`` is a cluster client (keys then carry hash tags)."""
    return isinstance(redis, RedisCluster)


def is_sentinel(redis: object) -> bool:
    """Whether ``redis`` reaches its server through sentinels (the address of the master
    is then asked for, not configured: dedicated connections must ask too)."""
    return isinstance(getattr(redis, "connection_pool", None), SentinelConnectionPool)


def create_redis(url: str, settings: RedisSettings | None = None) -> Redis:
    """A binary-safe asyncio client (``decode_responses=False``: audio fields are bytes).

    Its pool is bounded (``max_connections``) and *blocking*: past the bound a command
    waits up to ``socket_timeout_s`` for a free connection instead of failing at once
    with "Too many connections", so a burst (300 sockets opening together) queues. A
    cluster client waits the same way (:class:`BoundedCluster`; redis-py's own fails
    past a node's pool).
    """
    settings = settings or RedisSettings()
    nodes = cluster_nodes(url)
    sentinel = sentinel_url(url)
    if sentinel is not None:
        return _sentinel_master(sentinel, settings)
    if nodes is not None:
        username, password = _credentials(url[len(CLUSTER_SCHEME):].split("/", 1)[0])
        cluster = BoundedCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in nodes],
            max_connections=settings.max_connections,  # per node, and waited for
            wait_s=settings.socket_timeout_s,
            username=username,
            password=password,
            **_connection_options(settings),
        )
        # RedisCluster takes no connection class: set it where its nodes are made from
        cluster.connection_kwargs["connection_class"] = SafeConnection
        for node in cluster.nodes_manager.startup_nodes.values():
            node.connection_class = SafeConnection
        return cast(Redis, cluster)
    pool = BlockingConnectionPool.from_url(
        url,
        connection_class=SafeConnection,
        max_connections=settings.max_connections,
        timeout=settings.socket_timeout_s,
        **_connection_options(settings),
    )
    return Redis.from_pool(pool)


def _connection_options(settings: RedisSettings) -> dict[str, Any]:
    """How every connection is made and retried, whatever the URL: redis-py's retry
    policy with backoff, timeouts, health checks, bytes in and out."""
    return {
        "retry": Retry(
            ExponentialWithJitterBackoff(base=settings.backoff_base_s,
                                         cap=settings.backoff_cap_s),
            retries=settings.retries,
            supported_errors=(RedisConnectionError, RedisTimeoutError),
        ),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError, ConnectionResetError],
        "socket_timeout": settings.socket_timeout_s,
        "socket_connect_timeout": settings.socket_timeout_s,
        "health_check_interval": settings.health_check_interval_s,
        "decode_responses": False,
    }


def _sentinel_master(url: SentinelUrl, settings: RedisSettings) -> Redis:
    """A client of the master the sentinels name; its connections are made as on
    ``redis://`` (same retries, timeouts, bounded blocking pool)."""
    sentinels = Sentinel(  # type: ignore[no-untyped-call]
        list(url.sentinels),
        sentinel_kwargs={  # how the sentinels themselves are asked
            "socket_timeout": settings.socket_timeout_s,
            "socket_connect_timeout": settings.socket_timeout_s,
        },
    )
    for asked in sentinels.sentinels:  # asked from tasks that get cancelled (live reads)
        asked.connection_pool.connection_class = SafeConnection
    client = sentinels.master_for(
        url.master,
        connection_pool_class=_BlockingSentinelPool,
        connection_class=SafeSentinelConnection,
        max_connections=settings.max_connections,
        timeout=settings.socket_timeout_s,
        db=url.db,
        username=url.username,
        password=url.password,
        **_connection_options(settings),
    )
    return cast(Redis, client)
