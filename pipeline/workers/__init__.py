"""Background workers over the session feed, and the measures they record.

Each worker is a consumer group on the feed stream (:class:`FeedWorker`): auto-play
narration of finished text replies (:class:`NarrationWorker`), high-quality
re-transcription (:class:`RefineWorker`) and per-stage latency metrics
(:class:`MetricsConsumer`, from the pure measures in :mod:`~pipeline.workers.measures`),
with the Gateway replicas' own counts beside them (:class:`ReplicaMetrics`).
"""

from pipeline.workers.feed_worker import FeedEntry, FeedWorker, Job, Lease, LeaseBusy, LeaseLost
from pipeline.workers.measures import (
    STAGES,
    SessionScan,
    TurnMeasure,
    scan_session,
    turn_metrics,
    vad_tail_ms,
)
from pipeline.workers.metrics import (
    BUCKETS_MS,
    METRICS_FEED_TYPES,
    MetricsConsumer,
    TurnMetrics,
    otlp_metrics,
    prometheus_endpoint,
)
from pipeline.workers.narration import NarrationWorker, narration_pieces
from pipeline.workers.refine import RefineWorker
from pipeline.workers.replica_metrics import ReplicaMetrics
from pipeline.workers.timeline import PARTS, LatencyParts, TurnTimeline, playback_stalls

__all__ = [
    "BUCKETS_MS",
    "METRICS_FEED_TYPES",
    "PARTS",
    "STAGES",
    "FeedEntry",
    "FeedWorker",
    "Job",
    "LatencyParts",
    "Lease",
    "LeaseBusy",
    "LeaseLost",
    "MetricsConsumer",
    "NarrationWorker",
    "RefineWorker",
    "ReplicaMetrics",
    "SessionScan",
    "TurnMeasure",
    "TurnMetrics",
    "TurnTimeline",
    "narration_pieces",
    "otlp_metrics",
    "playback_stalls",
    "prometheus_endpoint",
    "scan_session",
    "turn_metrics",
    "vad_tail_ms",
]
