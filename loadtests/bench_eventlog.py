"""Event log throughput and latency against a real Redis.

Prints and writes ``reports/bench_eventlog.json``: events/s appended singly and in
batches, tail wake-up latency (append → tailing reader has it), replay time of 10k
events. Goal: ≥ 25k events/s batched on 2 cores.

    python -m loadtests.bench_eventlog [--redis-url redis://127.0.0.1:6379/0] [--smoke]

Uses its own key prefix and deletes what it wrote. Loopback only; bounded in count.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

from loadtests._report import (
    add_smoke_flag,
    forget_prefix,
    percentiles,
    smoke_reports,
    write_report,
)
from pipeline.log import EventLog, create_redis
from schemas import EventLogSettings, ResponseTextDelta, TextDeltaData
from voxline.redis_server import redis_url_or_server


def delta(session: str, i: int) -> ResponseTextDelta:
    return ResponseTextDelta(
        session_id=session, turn_id="t1", data=TextDeltaData(delta=f" word{i}")
    )


async def bench(
    url: str, singles: int, batched: int, batch_size: int, tails: int, replayed: int = 10_000
) -> dict[str, object]:
    redis = create_redis(url)
    prefix = f"voxbench:{uuid.uuid4().hex[:8]}"
    log = EventLog(redis, EventLogSettings(key_prefix=prefix, maxlen=None))
    figures: dict[str, object] = {}
    try:
        await log.append(delta("warm", 0))

        start = time.perf_counter()
        for i in range(singles):
            await log.append(delta("single", i))
        elapsed = time.perf_counter() - start
        figures["append_single_events_per_s"] = round(singles / elapsed)

        # several sessions at once, as several turns would write
        sessions = 4
        per_session = batched // sessions

        async def writer(name: str) -> None:
            for start_i in range(0, per_session, batch_size):
                await log.append_batch(
                    [delta(name, i) for i in range(start_i, start_i + batch_size)]
                )

        start = time.perf_counter()
        await asyncio.gather(*(writer(f"batch{s}") for s in range(sessions)))
        elapsed = time.perf_counter() - start
        figures["append_batched_events_per_s"] = round(sessions * per_session / elapsed)
        figures["batch_size"] = batch_size

        waits: list[float] = []
        last_id: str | None = None
        for i in range(tails):
            tail = log.tail("tailed", after=last_id, block_ms=2000)
            reader = asyncio.ensure_future(anext(tail))
            await asyncio.sleep(0.005)  # let the reader block in XREAD
            sent = time.perf_counter()
            event = await log.append(delta("tailed", i))
            await reader
            waits.append((time.perf_counter() - sent) * 1000)
            last_id = event.id
            await tail.aclose()
        figures["tail_wakeup_ms"] = {k: round(v, 3) for k, v in percentiles(waits).items()}

        for start_i in range(0, replayed, 1000):
            await log.append_batch([delta("replay", i)
                                    for i in range(start_i, min(start_i + 1000, replayed))])
        start = time.perf_counter()
        read = await log.read_all("replay")
        name = "replay_10k_s" if replayed == 10_000 else f"replay_{replayed}_s"
        figures[name] = round(time.perf_counter() - start, 3)
        assert len(read) == replayed
    finally:
        await forget_prefix(redis, prefix)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--redis-url", default=None,
        help="default: VOXLINE_REDIS_URL, else a server of our own (never one merely found running)"
    )
    parser.add_argument("--singles", type=int, default=5000)
    parser.add_argument("--batched", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--tails", type=int, default=200)
    add_smoke_flag(parser)
    args = parser.parse_args()
    replayed = 10_000
    if args.smoke:
        smoke_reports()
        args.singles, args.batched, args.batch_size, args.tails = 50, 400, 20, 5
        replayed = 500
    configured = args.redis_url or os.environ.get("VOXLINE_REDIS_URL")
    with redis_url_or_server(configured) as url:
        figures = asyncio.run(bench(url, args.singles, args.batched, args.batch_size, args.tails,
                                    replayed))
    figures["goal_batched_events_per_s"] = 25_000
    for name, value in figures.items():
        print(f"{name:32} {value}")
    print(f"report: {write_report('bench_eventlog', figures)}")


if __name__ == "__main__":
    main()
