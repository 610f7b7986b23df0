"""What a replica counts about itself for the operator's metrics: a Gateway's admission,
stage calls, log appends and readers' lag (:class:`GatewayMeters`), reported through
Redis (:class:`ReplicaBoard`) and served on the metrics endpoint
(:class:`ReplicaCollector`) beside the turn metrics measured from the log."""

from pipeline.meters.board import ReplicaBoard
from pipeline.meters.gateway import GatewayMeters, StageCalls
from pipeline.meters.histogram import FAST_BUCKETS_MS, Histogram, HistogramData
from pipeline.meters.prometheus import FeedGroupLag, ReplicaCollector
from pipeline.meters.report import AdmissionCounts, ReplicaReport, StageCounts

__all__ = [
    "FAST_BUCKETS_MS",
    "AdmissionCounts",
    "FeedGroupLag",
    "GatewayMeters",
    "Histogram",
    "HistogramData",
    "ReplicaBoard",
    "ReplicaCollector",
    "ReplicaReport",
    "StageCalls",
    "StageCounts",
]
