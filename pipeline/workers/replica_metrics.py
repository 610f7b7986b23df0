"""The Gateway replicas' own counts and the feeds' consumer lag, kept current for the
metrics endpoint.

The Metrics deployment serves one ``/metrics`` for the whole deployment. Beside the turn
metrics it measures from the log, it serves what each Gateway replica reports about itself
(:mod:`pipeline.meters`: admission, stage calls, log appends, readers' lag) and how far
each consumer group of the feeds is behind (narration, refinement, metrics). Both are read
from Redis every ``every_s`` into a :class:`pipeline.meters.ReplicaCollector`, so a scrape
never waits on Redis.
"""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from pipeline.log import EventLog, feed_groups
from pipeline.meters import FeedGroupLag, ReplicaBoard, ReplicaCollector

__all__ = ["ReplicaMetrics"]

logger = logging.getLogger(__name__)


class ReplicaMetrics:
    """Refreshes ``collector`` from the replicas' board and the feeds' groups."""

    def __init__(self, log: EventLog, collector: ReplicaCollector, board: ReplicaBoard) -> None:
        self.log = log
        self.collector = collector
        self.board = board

    async def refresh(self) -> None:
        reports = await self.board.read()
        groups = await feed_groups(self.log.redis, self.log.feed_keys)
        self.collector.update(reports, {name: FeedGroupLag(lag, pending)
                                        for name, (lag, pending) in groups.items()})

    async def run(self, every_s: float = 2.0) -> None:
        """Refresh until cancelled; Redis failing is logged, the last values stay."""
        while True:
            try:
                await self.refresh()
            except RedisError as exc:
                logger.warning("could not read the replicas' reports: %s", exc)
            await asyncio.sleep(every_s)
