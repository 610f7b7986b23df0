"""What ``VOXLINE_LOG__REPLICA_ACKS`` costs per append, on the one-machine cluster.

Starts a 3-primary, 3-replica Redis Cluster on loopback (``voxline redis-cluster``'s
code), then times sequential appends (one event, 50 sessions in turn) with
``replica_acks`` 0 and 1, twice each, prints p50 and p95 per append and writes
``reports/bench_replica_acks.json`` (goal: ``WAIT 1`` costs at most 2 ms at p50)::

    python -m loadtests.bench_replica_acks [--appends 2000] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from typing import Any

from loadtests._report import add_smoke_flag, smoke_reports, write_report
from pipeline.log import EventLog, create_redis
from schemas import EventLogSettings, InputText, InputTextData
from voxline.redis_cluster import redis_cluster


async def percentiles(url: str, acks: int, appends: int) -> tuple[float, float]:
    redis = create_redis(url)
    prefix = f"voxbench:{uuid.uuid4().hex[:8]}"
    # a generous ack timeout: this measures what a confirmation costs, and a replica that
    # is slow on a busy machine should be measured, not turned into an error
    log = EventLog(redis, EventLogSettings(key_prefix=prefix, replica_acks=acks,
                                           replica_ack_timeout_ms=5000))
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


async def run(url: str, appends: int) -> dict[str, Any]:
    rounds: dict[int, list[tuple[float, float]]] = {0: [], 1: []}
    for acks in (0, 1, 0, 1):
        p50, p95 = await percentiles(url, acks, appends)
        rounds[acks].append((p50, p95))
        print(f"replica_acks={acks}: p50 {p50:.3f} ms, p95 {p95:.3f} ms ({appends} appends)")
    figures: dict[str, Any] = {"appends": appends, "rounds_ms": {
        str(acks): [{"p50": round(a, 3), "p95": round(b, 3)} for a, b in values]
        for acks, values in rounds.items()}}
    cost = (statistics.median(p50 for p50, _ in rounds[1])
            - statistics.median(p50 for p50, _ in rounds[0]))
    figures["goals"] = {"wait_1_costs_at_most_2ms_p50": {"value": round(cost, 3),
                                                          "met": cost <= 2.0}}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=2000, help="appends per round")
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        smoke_reports()
        args.appends = 50
    with redis_cluster() as cluster:  # stopped (and its keys gone) when the run ends
        figures = asyncio.run(run(cluster.url, args.appends))
    print(f"report: {write_report('bench_replica_acks', figures)}", flush=True)


if __name__ == "__main__":
    main()
