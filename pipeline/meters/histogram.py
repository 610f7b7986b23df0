"""A latency histogram kept by hand, as data that can cross processes.

A Gateway replica measures things only it sees (how long its log appends take, how late
its readers get events) while the one metrics endpoint is served by another deployment,
maybe on another node. So the counts travel as a report (:mod:`pipeline.meters.report`),
not as a live instrument: fixed bucket bounds, a count per bucket, the sum and the
count, which is exactly what a Prometheus histogram exposes.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

from pydantic import BaseModel, Field

__all__ = ["FAST_BUCKETS_MS", "Histogram", "HistogramData"]

#: bounds (ms) for work that should take a millisecond or so: a log append, a delivery
FAST_BUCKETS_MS: tuple[float, ...] = (
    0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 25, 50, 100, 250, 500, 1000, 2500, 5000,
)  # fmt: skip


class HistogramData(BaseModel):
    """A histogram's state: ``counts[i]`` observations ≤ ``bounds[i]`` and above the bound
    before (not cumulative; the last count is above every bound)."""

    bounds: list[float]
    counts: list[int]
    sum: float = 0.0
    count: int = Field(default=0, ge=0)

    def cumulative(self) -> list[tuple[float, int]]:
        """``(bound, count ≤ bound)`` per bucket, ``inf`` last: Prometheus' buckets."""
        total, buckets = 0, []
        for bound, count in zip([*self.bounds, float("inf")], self.counts, strict=True):
            total += count
            buckets.append((bound, total))
        return buckets


class Histogram:
    """Observations counted into fixed buckets (never a list of them: bounded memory)."""

    def __init__(self, bounds: Sequence[float] = FAST_BUCKETS_MS) -> None:
        if list(bounds) != sorted(set(bounds)):
            raise ValueError("bucket bounds must increase")
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def data(self) -> HistogramData:
        return HistogramData(bounds=list(self.bounds), counts=list(self.counts),
                             sum=self.sum, count=self.count)
