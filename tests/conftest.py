"""Shared fixtures: a real Redis server (the local one on 6379, else one we start)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from pipeline.log import EventLog, create_redis
from schemas import EventLogSettings
from voxline.redis_server import is_reachable, start_redis_server


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if is_reachable("127.0.0.1", 6379):
        yield "redis://127.0.0.1:6379/0"
        return
    server = start_redis_server()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def key_prefix() -> str:
    """A prefix of our own per test, so tests never see each other's streams."""
    return f"voxtest:{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def redis(redis_url: str, key_prefix: str) -> AsyncIterator[Redis]:
    client = create_redis(redis_url)
    try:
        yield client
    finally:
        keys = [key async for key in client.scan_iter(match=f"{key_prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture
def log_settings(key_prefix: str) -> EventLogSettings:
    return EventLogSettings(key_prefix=key_prefix)


@pytest.fixture
def event_log(redis: Redis, log_settings: EventLogSettings) -> EventLog:
    return EventLog(redis, log_settings)
