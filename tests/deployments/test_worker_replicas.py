"""The background workers' replicas, built as plain classes on the suite's Redis."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from deployments.workers import FeedConsumers, MetricsReplica, NarratorReplica
from schemas import EventLogSettings, Settings


class Unused:
    """A stage handle no event of the test ever calls."""

    def options(self, **_: Any) -> Unused:
        return self


@pytest.mark.parametrize(("deployment", "args", "consumers"), [
    (MetricsReplica, (), ["metrics"]),
    (NarratorReplica, (Unused(), Unused()), ["autoplay", "refine"]),
])
async def test_a_started_worker_keeps_its_start_up_heap_out_of_collections(
    redis_url: str, key_prefix: str, deployment: Any, args: tuple[Any, ...],
    consumers: list[str],
) -> None:
    """As the Gateway and the stage replicas do (pipeline/aio/_heap.py): what the worker
    made while it started (OpenTelemetry, its consumer) is frozen, so a full collection
    on its loop walks only what its work made since."""
    cls = deployment.func_or_class

    class Plain(cls):  # type: ignore[misc,valid-type]
        def __del__(self) -> None:  # Serve awaits the async one; Python would not
            pass

    gc.unfreeze()
    replica = Plain.__new__(Plain)
    try:
        await replica.__init__(*args, Settings(redis_url=redis_url, metrics_port=None,
                                               log=EventLogSettings(key_prefix=key_prefix)))
        assert gc.get_freeze_count() > 1000  # this process's imports and the worker's
        assert await replica.status() == {"ready": True, "consumers": consumers,
                                          "prometheus": None}
    finally:
        await cls.__del__(replica)
        gc.unfreeze()


async def test_consumers_in_the_gateway_start_again_where_a_replica_would_be_replaced(
    redis_url: str, key_prefix: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """The CPU profiles' Gateway runs the feed's consumers itself: one that stopped is
    started again (a failing health check would replace the Gateway and close every
    socket), where a worker replica's health check fails so that Serve replaces it."""
    settings = Settings(redis_url=redis_url, metrics_port=None,
                        log=EventLogSettings(key_prefix=key_prefix))
    consumers = FeedConsumers(settings)
    try:
        consumers.start_all(Unused(), Unused(), settings)
        assert (await consumers.status())["consumers"] == ["autoplay", "metrics", "refine"]
        first = consumers.tasks["metrics"]
        first.cancel()
        await asyncio.wait({first})
        assert (await consumers.status())["ready"] is False
        with pytest.raises(RuntimeError, match="the metrics consumer stopped"):
            consumers.check_health()
        assert consumers.revive() == ["metrics"]
        assert consumers.tasks["metrics"] is not first
        assert (await consumers.status())["ready"] is True
        consumers.check_health()
        assert consumers.revive() == []
        assert "the metrics consumer stopped" in caplog.text
    finally:
        await consumers.aclose()
