"""Shared fixtures: real Redis servers of the suite's own, on free loopback ports.

Never the one that may run on 6379: it may be a user's, serving Voxline on this machine.
Ray's settings for the one-machine app are put in the environment here, before any test
module imports Ray: the Serve apps the tests start then listen on loopback only
(:data:`voxline.server.LOOPBACK_ONLY`)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis

from pipeline.log import EventLog, create_redis
from schemas import EventLogSettings
from tests.support.api_harness import forget_keys
from tests.support.redis_proxy import RedisProxy
from voxline.redis_cluster import redis_cluster
from voxline.redis_sentinel import RedisSentinelServers, redis_sentinel
from voxline.redis_server import start_redis_server
from voxline.server import ray_environment

ray_environment()


def _serve_modules() -> frozenset[str]:
    """The test modules that start a Serve app (marked ``serve``), as node ids name them."""
    root = Path(__file__).resolve().parent.parent
    return frozenset(str(path.relative_to(root)) for path in root.glob("tests/**/test_*.py")
                     if "pytest.mark.serve" in path.read_text(encoding="utf-8"))


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """How pytest-xdist shares the tests out (scripts/test.sh runs three workers): module by
    module, each module's tests in their order on one worker with its module fixtures made
    once (several modules' tests build on state an earlier test of theirs left); and
    every module that starts the Serve app on one worker, so the session's app (a whole
    Ray cluster) is made once. (``--dist loadgroup`` would do this with marks, but
    xdist 3.8 cannot rename pytest 9's node ids, so its groups are ignored.)"""
    from xdist.scheduler import LoadScopeScheduling

    serve = _serve_modules()

    class ServeTogether(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "serve" if module in serve else module

    return ServeTogether(config, log)


@pytest.fixture(scope="session")
def redis_url(standalone_redis_url: str) -> str:
    return standalone_redis_url


@pytest.fixture(scope="session")
def standalone_redis_url() -> Iterator[str]:
    server = start_redis_server()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """A 3-primary, 3-replica Redis Cluster of our own on loopback (started once, in a few
    seconds, by the first test that asks)."""
    with redis_cluster() as cluster:
        yield cluster.url


@pytest.fixture(scope="session")
def redis_sentinel_servers() -> Iterator[RedisSentinelServers]:
    """A primary, its replica and 3 sentinels of our own on loopback (started once, in a
    few seconds, by the first test that asks). Nothing here kills them: failover trials
    start setups of their own."""
    with redis_sentinel() as setup:
        yield setup


@pytest.fixture(scope="session")
def redis_sentinel_url(redis_sentinel_servers: RedisSentinelServers) -> str:
    return redis_sentinel_servers.url


@pytest.fixture(params=["standalone", "cluster"])
def both_redis_urls(request: pytest.FixtureRequest) -> str:
    """A standalone Redis, then the cluster: a module that overrides ``redis_url`` with
    this fixture runs each of its tests on both (the event-log contract)::

        @pytest.fixture
        def redis_url(both_redis_urls: str) -> str:
            return both_redis_urls
    """
    return str(request.getfixturevalue(
        "standalone_redis_url" if request.param == "standalone" else "redis_cluster_url"))


@pytest.fixture
async def redis_proxy(redis_url: str) -> AsyncIterator[RedisProxy]:
    """A proxy in front of the (standalone) test Redis that a test can cut and restore,
    or make lose replies (:class:`tests.support.redis_proxy.RedisProxy`)."""
    target = urlsplit(redis_url)
    proxy = RedisProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.restore()
    try:
        yield proxy
    finally:
        await proxy.close()


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    """A prefix of our own per test, so tests never see each other's streams; what the
    test wrote under it goes when it ends (CI reuses this machine's Redis)."""
    prefix = f"voxtest:{uuid.uuid4().hex[:12]}"
    yield prefix
    forget_keys(redis_url, prefix)


@pytest.fixture
async def redis(redis_url: str, key_prefix: str) -> AsyncIterator[Redis]:
    client = create_redis(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def log_settings(key_prefix: str) -> EventLogSettings:
    return EventLogSettings(key_prefix=key_prefix)


@pytest.fixture
def event_log(redis: Redis, log_settings: EventLogSettings) -> EventLog:
    return EventLog(redis, log_settings)
