"""What ``VOXLINE_LOG__REPLICA_ACKS`` costs per append, on the one-machine cluster.

Starts a 3-primary, 3-replica Redis Cluster on loopback (``voxline redis-cluster``'s
code), then times sequential appends (one event, 50 sessions in turn) with
``replica_acks`` 0 and 1, twice each, and prints p50 and p95 per append::

    python -m loadtests.bench_replica_acks [APPENDS]
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid

from pipeline.log import EventLog, create_redis
from schemas import EventLogSettings, InputText, InputTextData
from voxline.redis_cluster import redis_cluster


async def percentiles(url: str, acks: int, appends: int) -> tuple[float, float]:
    redis = create_redis(url)
    prefix = f"voxbench:{uuid.uuid4().hex[:8]}"
    log = EventLog(redis, EventLogSettings(key_prefix=prefix, replica_acks=acks))
    try:
        await log.append(InputText(session_id="warm-up", data=InputTextData(text="w")))
        times = []
        for i in range(appends):
            event = InputText(session_id=f"s{i % 50}", data=InputTextData(text="hello"))
            start = time.perf_counter()
            await log.append(event)
            times.append((time.perf_counter() - start) * 1000)
    finally:
        await redis.aclose()
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.95)]


async def run(url: str, appends: int) -> None:
    for acks in (0, 1, 0, 1):
        p50, p95 = await percentiles(url, acks, appends)
        print(f"replica_acks={acks}: p50 {p50:.3f} ms, p95 {p95:.3f} ms ({appends} appends)")


def main() -> None:
    appends = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with redis_cluster() as cluster:  # stopped (and its keys gone) when the run ends
        asyncio.run(run(cluster.url, appends))


if __name__ == "__main__":
    main()
