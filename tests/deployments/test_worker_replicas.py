"""The background workers' replicas, built as plain classes on the suite's Redis."""

from __future__ import annotations

import gc
from typing import Any

import pytest

from deployments.workers import MetricsReplica, WorkersReplica
from schemas import EventLogSettings, Settings


class Unused:
    """A stage handle no event of the test ever calls."""

    def options(self, **_: Any) -> Unused:
        return self


@pytest.mark.parametrize(("deployment", "args", "consumers"), [
    (MetricsReplica, (), ["metrics"]),
    (WorkersReplica, (Unused(), Unused()), ["autoplay", "metrics", "refine"]),
])
async def test_a_started_worker_keeps_its_start_up_heap_out_of_collections(
    redis_url: str, key_prefix: str, deployment: Any, args: tuple[Any, ...],
    consumers: list[str],
) -> None:
    """As the Gateway and the stage replicas do (pipeline/aio/_heap.py): what the worker
    made while it started (OpenTelemetry, its consumer) is frozen, so a full collection
    on its loop walks only what its work made since. The Workers replica (the CPU
    profiles') runs Narrator's consumers and Metrics' in one."""
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
