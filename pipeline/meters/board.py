"""Replicas' reports, shared through Redis: each Gateway replica publishes, the metrics
endpoint reads them all.

One hash (``{prefix}:replica-reports``), a field per replica, rewritten every few
seconds: a handful of small writes a second for a whole deployment, on whatever node
each replica runs, with no port per replica for Prometheus to find. A replica that
stops takes its field away; one that dies leaves it, and the readers drop it once it is
older than ``stale_s`` (its series then end, as a scrape target's do when it goes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from pipeline.meters.report import ReplicaReport

__all__ = ["ReplicaBoard"]

logger = logging.getLogger(__name__)


class ReplicaBoard:
    """Publish and read replicas' latest :class:`ReplicaReport`\\ s."""

    def __init__(self, redis: Redis, key_prefix: str, *, stale_s: float = 30.0) -> None:
        self.redis = redis
        self.key = f"{key_prefix}:replica-reports"
        self.stale_s = stale_s

    @classmethod
    def for_interval(cls, redis: Redis, key_prefix: str, interval_s: float) -> ReplicaBoard:
        """A board whose reports come every ``interval_s``: one is stale after three
        missed ones (and never sooner than 30 s: a busy loop may be late)."""
        return cls(redis, key_prefix, stale_s=max(30.0, 3 * interval_s))

    async def publish(self, report: ReplicaReport) -> None:
        await self.redis.hset(self.key, report.replica, report.model_dump_json())

    async def withdraw(self, replica: str) -> None:
        await self.redis.hdel(self.key, replica)

    async def read(self) -> list[ReplicaReport]:
        """Every replica's latest report no older than ``stale_s``; older and unreadable
        ones are removed."""
        raw: dict[bytes | str, bytes | str] = await self.redis.hgetall(self.key)
        oldest = (time.time() - self.stale_s) * 1000
        reports, gone = [], []
        for field, value in raw.items():
            try:
                report = ReplicaReport.model_validate_json(value)
            except ValidationError:
                logger.warning("unreadable replica report %r: dropped", field)
                gone.append(field)
                continue
            if report.at_ms < oldest:
                gone.append(field)
            else:
                reports.append(report)
        if gone:
            await self.redis.hdel(self.key, *gone)
        return sorted(reports, key=lambda r: r.replica)

    async def publish_every(self, make: Callable[[], ReplicaReport], interval_s: float) -> None:
        """Publish ``make()`` every ``interval_s`` until cancelled, then withdraw. Redis
        failing is logged and tried again next time: metrics never stop a replica."""
        replica = None
        try:
            while True:
                report = make()
                replica = report.replica
                try:
                    await self.publish(report)
                except RedisError as exc:
                    logger.warning("could not publish the replica's report: %s", exc)
                await asyncio.sleep(interval_s)
        finally:
            if replica is not None:
                with contextlib.suppress(RedisError, asyncio.CancelledError):
                    await asyncio.shield(self.withdraw(replica))
