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
"""

from __future__ import annotations

import asyncio
from typing import Any, cast
from urllib.parse import unquote

from redis.asyncio import BlockingConnectionPool, Connection, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from schemas import ConfigurationError, RedisSettings

CLUSTER_SCHEME = "redis+cluster://"


class SafeConnection(Connection):
    """redis-py's connection, with two ways of failing that nothing above it handles.

    * **A socket closed under it is a connection error.** redis-py's cluster client
      closes a node's free connections after a connection error on that node (and all of
      them on CLUSTERDOWN) while other tasks may have just taken them; their write then
      fails with ``AttributeError: 'NoneType' object has no attribute 'writelines'``,
      which nothing retries. As a :class:`ConnectionError` it is retried by the client's
      own policy, on a fresh socket, like any dropped connection.
    * **A cancel is never lost in a write.** With a socket timeout every write runs in
      ``asyncio.wait_for``, which on CPython 3.11 swallows a ``cancel()`` arriving as the
      write completes: the cancelled task reads the answer and carries on (a blocking
      read for its whole block time, a lease keeper forever). A cancel requested during
      the write is raised after it, and the connection, whose answer nobody will read,
      is closed.
    """

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        task = asyncio.current_task()
        cancels = task.cancelling() if task is not None else 0
        try:
            await super().send_packed_command(command, check_health)
        except AttributeError as exc:
            if self.is_connected:
                raise  # not the race above: a bug, let it show
            await self.disconnect(nowait=True)
            raise RedisConnectionError("the connection was closed while in use") from exc
        if task is not None and task.cancelling() > cancels:
            await self.disconnect(nowait=True)
            raise asyncio.CancelledError


def cluster_nodes(url: str) -> list[tuple[str, int]] | None:
    """The startup nodes of a ``redis+cluster://`` URL; ``None`` for any other URL."""
    if not url.startswith(CLUSTER_SCHEME):
        return None
    rest = url[len(CLUSTER_SCHEME):].split("/", 1)[0].rsplit("@", 1)[-1]
    nodes = []
    for part in filter(None, rest.split(",")):
        host, _, port = part.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigurationError(f"{part!r} in the Redis URL is not host:port")
        nodes.append((host.strip("[]"), int(port)))
    if not nodes:
        raise ConfigurationError("a redis+cluster:// URL names at least one host:port")
    return nodes


def _credentials(url: str) -> tuple[str | None, str | None]:
    netloc = url[len(CLUSTER_SCHEME):].split("/", 1)[0]
    if "@" not in netloc:
        return None, None
    user, _, password = netloc.rsplit("@", 1)[0].partition(":")
    return unquote(user) or None, unquote(password) or None


def is_cluster(redis: object) -> bool:
    """Whether ``redis`` is a cluster client (keys then carry hash tags)."""
    return isinstance(redis, RedisCluster)


def create_redis(url: str, settings: RedisSettings | None = None) -> Redis:
    """A binary-safe asyncio client (``decode_responses=False``: audio fields are bytes).

    Its pool is bounded (``max_connections``) and *blocking*: past the bound a command
    waits up to ``socket_timeout_s`` for a free connection instead of failing at once
    with "Too many connections", so a burst (300 sockets opening together) queues.
    """
    settings = settings or RedisSettings()
    nodes = cluster_nodes(url)
    retry = Retry(
        ExponentialWithJitterBackoff(base=settings.backoff_base_s, cap=settings.backoff_cap_s),
        retries=settings.retries,
        supported_errors=(RedisConnectionError, RedisTimeoutError),
    )
    if nodes is not None:
        username, password = _credentials(url)
        cluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in nodes],
            max_connections=settings.max_connections,  # per node
            retry=retry,
            retry_on_error=[RedisConnectionError, RedisTimeoutError, ConnectionResetError],
            socket_timeout=settings.socket_timeout_s,
            socket_connect_timeout=settings.socket_timeout_s,
            health_check_interval=settings.health_check_interval_s,
            username=username,
            password=password,
            decode_responses=False,
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
        retry=retry,
        retry_on_error=[RedisConnectionError, RedisTimeoutError, ConnectionResetError],
        socket_timeout=settings.socket_timeout_s,
        socket_connect_timeout=settings.socket_timeout_s,
        health_check_interval=settings.health_check_interval_s,
        decode_responses=False,
    )
    return Redis.from_pool(pool)
