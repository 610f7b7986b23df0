"""The capacity runner's replay (``--replay-recent``) finds recorded sessions in the log of
``VOXLINE_REDIS_URL``: a standalone Redis, or a Redis Cluster whose sessions live on
every primary (a SCAN that asked one node would find a third of them)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from loadtests.capacity import recorded_scripts
from pipeline.log import EventLog, is_cluster
from schemas import InputText, InputTextData

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_url(both_redis_urls: str) -> str:
    return both_redis_urls


async def test_replay_recent_reads_sessions_from_every_shard(
    redis: Redis, event_log: EventLog, redis_url: str, key_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sessions = [f"recorded-{i}" for i in range(24)]
    for session in sessions:
        await event_log.append(InputText(session_id=session,
                                         data=InputTextData(text=f"question {session}")))
    if is_cluster(redis):
        cluster: RedisCluster = redis  # type: ignore[assignment]
        homes = set()
        for session in sessions:
            node = cluster.get_node_from_key(event_log.key(session))
            assert node is not None
            homes.add(node.name)
        assert len(homes) == 3, "the sessions should live on every primary"
    monkeypatch.setenv("VOXLINE_REDIS_URL", redis_url)
    monkeypatch.setenv("VOXLINE_LOG__KEY_PREFIX", key_prefix)
    scripts = await recorded_scripts([], recent=len(sessions))
    assert sorted(u.text or "" for script in scripts for u in script) == sorted(
        f"question {s}" for s in sessions)
