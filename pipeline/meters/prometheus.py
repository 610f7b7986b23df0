"""Replicas' reports and the feeds' consumer lag as Prometheus metrics.

A custom collector on prometheus_client's registry, beside the OpenTelemetry reader of
the turn metrics: the same ``/metrics``. It serves what it was last given
(:meth:`ReplicaCollector.update`), so a scrape never waits on Redis.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from pipeline.meters.histogram import HistogramData
from pipeline.meters.report import ReplicaReport

__all__ = ["FeedGroupLag", "ReplicaCollector"]


@dataclass(frozen=True)
class FeedGroupLag:
    """A consumer group of the feeds: entries not yet delivered to it (None: Redis cannot
    tell) and entries delivered but not acknowledged, summed over the feeds."""

    lag: int | None
    pending: int


class ReplicaCollector:
    """Yields the latest reports' families on every scrape."""

    def __init__(self) -> None:
        self._reports: tuple[ReplicaReport, ...] = ()
        self._feeds: dict[str, FeedGroupLag] = {}

    def update(self, reports: Sequence[ReplicaReport],
               feeds: Mapping[str, FeedGroupLag] | None = None) -> None:
        self._reports = tuple(reports)
        if feeds is not None:
            self._feeds = dict(feeds)

    def register(self) -> ReplicaCollector:
        """Serve it on prometheus_client's registry (the one the endpoint serves); once
        per process."""
        from prometheus_client import REGISTRY

        REGISTRY.register(self)
        return self

    def describe(self) -> Iterable[Metric]:
        return []  # the families depend on what was reported: no check at registration

    def collect(self) -> Iterator[Metric]:
        reports = self._reports
        yield from self._admission(reports)
        yield from self._stages(reports)
        yield _histogram("voxline_log_append_duration_milliseconds",
                         "One append of a session's events to the log, per Gateway replica",
                         ((r.replica, r.log_append_ms) for r in reports))
        yield _histogram("voxline_log_tail_lag_milliseconds",
                         "An event's append to its hand-over to a live reader (socket, "
                         "stream) of a Gateway replica",
                         ((r.replica, r.tail_lag_ms) for r in reports))
        readers = GaugeMetricFamily("voxline_log_tail_readers",
                                    "Live readers of the log (sockets, streams) per replica",
                                    labels=["replica"])
        for report in reports:
            readers.add_metric([report.replica], report.tail_readers)
        yield readers
        yield from self._feed_groups()

    @staticmethod
    def _admission(reports: Sequence[ReplicaReport]) -> Iterator[Metric]:
        in_use = GaugeMetricFamily("voxline_admission_in_use",
                                   "Work admitted and in flight, per kind and replica",
                                   labels=["kind", "replica"])
        limit = GaugeMetricFamily("voxline_admission_limit",
                                  "A replica's capacity per kind (absent: no limit)",
                                  labels=["kind", "replica"])
        waiting = GaugeMetricFamily("voxline_admission_waiting",
                                    "Work waiting for a place (voice turns, up to "
                                    "voice_turn_wait_ms), per kind and replica",
                                    labels=["kind", "replica"])
        refused = CounterMetricFamily("voxline_admission_refused",
                                      "Work refused at capacity or while draining (503 + "
                                      "Retry-After, or an overloaded error event)",
                                      labels=["kind", "replica"])
        draining = GaugeMetricFamily("voxline_replica_draining",
                                     "1 while a Gateway replica is stopping",
                                     labels=["replica"])
        for report in reports:
            draining.add_metric([report.replica], int(report.draining))
            for kind, counts in report.admission.items():
                in_use.add_metric([kind, report.replica], counts.in_use)
                waiting.add_metric([kind, report.replica], counts.waiting)
                refused.add_metric([kind, report.replica], counts.refused)
                if counts.limit is not None:
                    limit.add_metric([kind, report.replica], counts.limit)
        yield from (in_use, limit, waiting, refused, draining)

    @staticmethod
    def _stages(reports: Sequence[ReplicaReport]) -> Iterator[Metric]:
        in_flight = GaugeMetricFamily("voxline_stage_calls_in_flight",
                                      "A Gateway replica's calls into a model stage now "
                                      "(running or in the stage's queue)",
                                      labels=["stage", "replica"])
        calls = CounterMetricFamily("voxline_stage_calls", "Calls into a model stage",
                                    labels=["stage", "replica"])
        refused = CounterMetricFamily("voxline_stage_calls_refused",
                                      "Calls a stage refused at once, its queue full "
                                      "(max_queued_requests)", labels=["stage", "replica"])
        for report in reports:
            for stage, counts in report.stages.items():
                in_flight.add_metric([stage, report.replica], counts.in_flight)
                calls.add_metric([stage, report.replica], counts.calls)
                refused.add_metric([stage, report.replica], counts.refused)
        yield from (in_flight, calls, refused)

    def _feed_groups(self) -> Iterator[Metric]:
        lag = GaugeMetricFamily("voxline_feed_lag_entries",
                                "Feed entries not yet delivered to a consumer group "
                                "(narration, refine, metrics)", labels=["group"])
        pending = GaugeMetricFamily("voxline_feed_pending_entries",
                                    "Feed entries delivered to a group and not yet "
                                    "acknowledged", labels=["group"])
        for group, counts in sorted(self._feeds.items()):
            if counts.lag is not None:
                lag.add_metric([group], counts.lag)
            pending.add_metric([group], counts.pending)
        yield from (lag, pending)


def _histogram(name: str, documentation: str,
               series: Iterable[tuple[str, HistogramData]]) -> Metric:
    family = HistogramMetricFamily(name, documentation, labels=["replica"])
    for replica, data in series:
        buckets = [("+Inf" if bound == float("inf") else str(float(bound)), count)
                   for bound, count in data.cumulative()]
        family.add_metric([replica], buckets, data.sum)
    return family
