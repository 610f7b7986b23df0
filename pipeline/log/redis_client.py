"""The one place a Redis client is built, with redis-py's own retry policy.

Transient failures (a dropped connection, a timeout) are retried by redis-py's ``Retry``
with exponential backoff and jitter, configured in :class:`schemas.RedisSettings`: retries
are configuration, not loops in our code. Commands we send are safe to retry: appends carry
explicit stream ids, so a retried append after a lost reply is recognised as a duplicate
(see :mod:`pipeline.log.eventlog`).
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from schemas import RedisSettings


def create_redis(url: str, settings: RedisSettings | None = None) -> Redis:
    """A binary-safe asyncio client (``decode_responses=False``: audio fields are bytes).

    Its pool is bounded (``max_connections``) and *blocking*: past the bound a command
    waits up to ``socket_timeout_s`` for a free connection instead of failing at once
    with "Too many connections", so a burst (300 sockets opening together) queues.
    """
    settings = settings or RedisSettings()
    retry = Retry(
        ExponentialWithJitterBackoff(base=settings.backoff_base_s, cap=settings.backoff_cap_s),
        retries=settings.retries,
        supported_errors=(RedisConnectionError, RedisTimeoutError),
    )
    pool = BlockingConnectionPool.from_url(
        url,
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
