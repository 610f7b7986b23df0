"""What a Gateway replica counts about itself, for the operator's metrics.

The metrics consumer measures turns from the log; some things only the replica that
serves the sockets sees: its admission (work in flight and refused, per kind), its calls
into each stage (in flight, and refused by a stage's full queue), how long its appends to
the log take, and how late its live readers get each event (the event's append time to
its hand-over to a socket's or stream's queue). :class:`GatewayMeters` keeps them;
:meth:`GatewayMeters.report` writes them as a :class:`~pipeline.meters.report.
ReplicaReport`, which the replica publishes for the metrics endpoint.

Plain counters on the event loop: counting costs an addition, never an await.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from typing import Any

from pipeline.meters.histogram import Histogram
from pipeline.meters.report import AdmissionCounts, ReplicaReport, StageCounts

__all__ = ["GatewayMeters", "StageCalls"]


class StageCalls:
    """One replica's calls into the model stages: in flight now, made and refused."""

    def __init__(self) -> None:
        self.counts: dict[str, StageCounts] = {}

    def _of(self, stage: str) -> StageCounts:
        counts = self.counts.get(stage)
        if counts is None:
            counts = self.counts[stage] = StageCounts()
        return counts

    @contextlib.contextmanager
    def call(self, stage: str) -> Iterator[None]:
        """One call, in flight for the block."""
        counts = self._of(stage)
        counts.in_flight += 1
        counts.calls += 1
        try:
            yield
        finally:
            counts.in_flight -= 1

    def refused(self, stage: str) -> None:
        """The stage refused a call at once (its queue was full)."""
        self._of(stage).refused += 1


class GatewayMeters:
    """A Gateway replica's own meters (see the module docstring)."""

    def __init__(self, replica: str) -> None:
        self.replica = replica
        self.stages = StageCalls()
        #: one append (a batch of one session's events) to the log, ms
        self.log_append_ms = Histogram()
        #: an event's append → its hand-over to a live reader of this replica, ms
        self.tail_lag_ms = Histogram()

    def append_timed(self, seconds: float) -> None:
        self.log_append_ms.observe(seconds * 1000)

    def delivered(self, event_ts_ms: int) -> None:
        """A live reader was handed an event appended at ``event_ts_ms`` (server clock)."""
        self.tail_lag_ms.observe(max(0, time.time() * 1000 - event_ts_ms))

    def report(self, admission: Mapping[str, Mapping[str, Any]], *, draining: bool = False,
               readers: int = 0, sessions: int = 0) -> ReplicaReport:
        """The replica's counts now, with its admission's :meth:`~pipeline.session.
        Admission.snapshot` and its log readers."""
        return ReplicaReport(
            replica=self.replica, at_ms=int(time.time() * 1000), draining=draining,
            admission={kind: AdmissionCounts.model_validate(counts)
                       for kind, counts in admission.items()},
            stages={stage: counts.model_copy() for stage, counts in self.stages.counts.items()},
            log_append_ms=self.log_append_ms.data(), tail_lag_ms=self.tail_lag_ms.data(),
            tail_readers=readers, tail_sessions=sessions,
        )
