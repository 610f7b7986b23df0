"""The background workers' replicas, built as plain classes on the suite's Redis."""

from __future__ import annotations

import gc

from deployments.workers import MetricsReplica
from schemas import EventLogSettings, Settings


async def test_a_started_worker_keeps_its_start_up_heap_out_of_collections(
    redis_url: str, key_prefix: str,
) -> None:
    """As the Gateway and the stage replicas do (pipeline/aio/_heap.py): what the worker
    made while it started (OpenTelemetry, its consumer) is frozen, so a full collection
    on its loop walks only what its work made since."""
    cls = MetricsReplica.func_or_class

    class Plain(cls):  # type: ignore[misc,valid-type]
        def __del__(self) -> None:  # Serve awaits the async one; Python would not
            pass

    gc.unfreeze()
    replica = Plain.__new__(Plain)
    try:
        await replica.__init__(Settings(redis_url=redis_url, metrics_port=None,
                                        log=EventLogSettings(key_prefix=key_prefix)))
        assert gc.get_freeze_count() > 1000  # this process's imports and the worker's
        assert await replica.status() == {"ready": True, "consumers": ["metrics"],
                                          "prometheus": None}
    finally:
        await cls.__del__(replica)
        gc.unfreeze()
