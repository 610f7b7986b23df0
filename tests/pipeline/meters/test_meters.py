"""A Gateway replica's meters: counted, reported through a real Redis, served as
Prometheus text."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from pipeline.log import EventLog, FeedReader, LogFanout, feed_groups
from pipeline.meters import (
    FeedGroupLag,
    GatewayMeters,
    Histogram,
    ReplicaBoard,
    ReplicaCollector,
)
from schemas import SessionCreated, SessionSettings

ADMISSION = {"sessions": {"in_use": 2, "limit": 8, "refused": 1},
             "turns": {"in_use": 1, "limit": None, "refused": 0}}


def created(session: str) -> SessionCreated:
    return SessionCreated(session_id=session, data={"settings": SessionSettings()})


@given(st.lists(st.floats(min_value=0, max_value=10_000), max_size=50))
def test_a_histogram_counts_each_value_in_the_first_bucket_that_holds_it(
    values: list[float]
) -> None:
    histogram = Histogram((1, 10, 100))
    for value in values:
        histogram.observe(value)
    buckets = dict(histogram.data().cumulative())
    assert buckets == {1: sum(v <= 1 for v in values), 10: sum(v <= 10 for v in values),
                       100: sum(v <= 100 for v in values), float("inf"): len(values)}
    assert histogram.data().count == len(values)


def test_bounds_must_increase() -> None:
    with pytest.raises(ValueError):
        Histogram((5, 1))


def test_stage_calls_are_in_flight_for_their_block_and_refusals_count() -> None:
    meters = GatewayMeters("gateway-a")
    with meters.stages.call("llm"):
        assert meters.report(ADMISSION).stages["llm"].in_flight == 1
        with pytest.raises(RuntimeError), meters.stages.call("llm"):
            raise RuntimeError("the stage failed")
    meters.stages.refused("llm")
    llm = meters.report(ADMISSION).stages["llm"]
    assert (llm.in_flight, llm.calls, llm.refused) == (0, 2, 1)


async def test_the_log_times_its_appends_and_the_fanout_its_deliveries(
    event_log: EventLog
) -> None:
    meters = GatewayMeters("gateway-a")
    event_log.on_append = meters.append_timed
    fanout = LogFanout(event_log, block_ms=200, on_deliver=meters.delivered)
    try:
        tail = fanout.tail("sess_meters")
        first = asyncio.ensure_future(anext(tail))
        async with asyncio.timeout(10):
            while not fanout.subscribers:  # noqa: ASYNC110 (the fanout tells no one)
                await asyncio.sleep(0.01)
        await event_log.append(created("sess_meters"))
        await asyncio.wait_for(first, 10)
        await tail.aclose()
    finally:
        await fanout.aclose()
    report = meters.report(ADMISSION, readers=1, sessions=1)
    assert report.log_append_ms.count == 1 and report.log_append_ms.sum > 0
    assert report.tail_lag_ms.count == 1


async def test_reports_go_through_redis_and_stale_ones_are_dropped(
    redis: Redis, key_prefix: str
) -> None:
    board = ReplicaBoard(redis, key_prefix, stale_s=30)
    fresh, gone = GatewayMeters("gateway-a"), GatewayMeters("gateway-b")
    await board.publish(fresh.report(ADMISSION, readers=3))
    old = gone.report(ADMISSION).model_copy(update={"at_ms": int(time.time() * 1000) - 60_000})
    await board.publish(old)
    [report] = await board.read()
    assert (report.replica, report.tail_readers) == ("gateway-a", 3)
    assert report.admission["sessions"].refused == 1
    assert await redis.hkeys(board.key) == [b"gateway-a"]  # the stale one removed
    await board.withdraw("gateway-a")
    assert await board.read() == []


async def test_publishing_stops_with_its_task_and_withdraws(redis: Redis, key_prefix: str) -> None:
    board = ReplicaBoard(redis, key_prefix)
    meters = GatewayMeters("gateway-a")
    task = asyncio.create_task(board.publish_every(lambda: meters.report(ADMISSION), 0.05))
    async with asyncio.timeout(10):
        while not await board.read():  # noqa: ASYNC110 (Redis tells no one)
            await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await board.read() == []


async def test_feed_groups_say_how_far_each_group_is_behind(
    event_log: EventLog, redis: Redis
) -> None:
    await FeedReader(redis, event_log.feed_keys, "narration", "c").ensure_group("0")
    for n in range(3):
        await event_log.append(created(f"sess_{n}"))
    assert await feed_groups(redis, event_log.feed_keys) == {"narration": (3, 0)}
    reader = FeedReader(redis, event_log.feed_keys, "narration", "c")
    delivered = await reader.read(block_ms=100)
    assert delivered
    assert await feed_groups(redis, event_log.feed_keys) == {"narration": (0, len(delivered))}


def test_the_collector_serves_every_replicas_series() -> None:
    a, b = GatewayMeters("gateway-a"), GatewayMeters("gateway-b")
    with a.stages.call("stt"):
        pass
    b.stages.refused("tts")
    a.append_timed(0.002)
    collector = ReplicaCollector()
    collector.update([a.report(ADMISSION, readers=4), b.report(ADMISSION, draining=True)],
                     {"metrics": FeedGroupLag(lag=5, pending=1),
                      "narration": FeedGroupLag(lag=None, pending=0)})
    registry = CollectorRegistry()
    registry.register(collector)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(generate_latest(registry).decode())
               for s in family.samples}
    assert samples[("voxline_admission_in_use",
                    (("kind", "sessions"), ("replica", "gateway-a")))] == 2
    assert ("voxline_admission_limit", (("kind", "turns"), ("replica", "gateway-a"))) \
        not in samples  # no limit: no series
    assert samples[("voxline_admission_refused_total",
                    (("kind", "sessions"), ("replica", "gateway-b")))] == 1
    assert samples[("voxline_replica_draining", (("replica", "gateway-b"),))] == 1
    assert samples[("voxline_stage_calls_total", (("replica", "gateway-a"), ("stage", "stt")))] == 1
    assert samples[("voxline_stage_calls_refused_total",
                    (("replica", "gateway-b"), ("stage", "tts")))] == 1
    assert samples[("voxline_log_append_duration_milliseconds_bucket",
                    (("le", "2.0"), ("replica", "gateway-a")))] == 1
    assert samples[("voxline_log_append_duration_milliseconds_count",
                    (("replica", "gateway-a"),))] == 1
    assert samples[("voxline_log_tail_readers", (("replica", "gateway-a"),))] == 4
    assert samples[("voxline_feed_lag_entries", (("group", "metrics"),))] == 5
    assert ("voxline_feed_lag_entries", (("group", "narration"),)) not in samples
    assert samples[("voxline_feed_pending_entries", (("group", "narration"),))] == 0
