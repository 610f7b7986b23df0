"""Per-turn latency metrics from the event log, exported through OpenTelemetry.

Three layers, each usable alone:

* **Measuring** (:mod:`pipeline.workers.measures`, pure, no I/O): :func:`turn_metrics` turns one
  turn's events into a :class:`TurnMeasure` (stage latencies in ms, status, mode);
  :func:`scan_session` does it for every turn in a run of a session's events.
* **Recording**: :class:`TurnMetrics` holds the OpenTelemetry instruments, made from an
  injected ``MeterProvider`` (tests pass one with an ``InMemoryMetricReader``;
  :func:`prometheus_endpoint` builds one that Prometheus scrapes).
* **Consuming**: :class:`MetricsConsumer` reads the feed stream in the consumer group
  ``metrics``, reads the session's log for each entry and records every turn once.

The stages and statuses are defined in :mod:`pipeline.workers.measures`.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from redis.asyncio import Redis
from redis.exceptions import RedisError

from pipeline.log import DEFAULT_FEED_TYPES, Delivery, EventLog, FeedReader, run_worker
from pipeline.tracing import otlp_configured, turn_root_context
from pipeline.workers.measures import (
    DEFAULT_MIN_SPEECH_MS,
    STAGES,
    SessionScan,
    TurnMeasure,
    scan_session,
    turn_metrics,
    vad_tail_ms,
)
from schemas import (
    ErrorEvent,
    Event,
    EventLogError,
    SpeculationDiscarded,
)

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

__all__ = [
    "BUCKETS_MS",
    "METRICS_FEED_TYPES",
    "STAGES",
    "MetricsConsumer",
    "SessionScan",
    "TurnMeasure",
    "TurnMetrics",
    "otlp_metrics",
    "prometheus_endpoint",
    "scan_session",
    "turn_metrics",
    "vad_tail_ms",
]

logger = logging.getLogger(__name__)

#: Histogram buckets (ms): fine where voice latencies live (100 ms - 2 s), coarse beyond.
BUCKETS_MS: tuple[float, ...] = (
    10, 25, 50, 75, 100, 150, 200, 250, 300, 400, 500, 600, 750, 1000,
    1250, 1500, 2000, 2500, 3000, 4000, 5000, 7500, 10000, 20000, 30000,
)  # fmt: skip

#: The feed types the ingress's :class:`EventLog` should be built with for timely counts:
#: with the defaults alone, cancellations and errors are still counted, but only when the
#: session's next feed entry (input, response.done, session.closed) comes.
METRICS_FEED_TYPES: frozenset[str] = DEFAULT_FEED_TYPES | {"response.cancelled", "error"}

# ---- recording --------------------------------------------------------------------------

#: OpenTelemetry instrument names (Prometheus: dots become underscores, the histogram
#: gets ``_milliseconds``, counters ``_total``).
STAGE_HISTOGRAM = "voxline.turn.stage.duration"
PART_HISTOGRAM = "voxline.turn.first_audio_part.duration"
SESSIONS_COUNTER = "voxline.sessions"
TURNS_COUNTER = "voxline.turns"
ERRORS_COUNTER = "voxline.errors"
CANCELLATIONS_COUNTER = "voxline.cancellations"
SPECULATIONS_DISCARDED_COUNTER = "voxline.speculations.discarded"
SPECULATIONS_ADOPTED_COUNTER = "voxline.speculations.adopted"


class TurnMetrics:
    """The instruments, from a meter of ``meter_provider`` (default: the global one)."""

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        if meter_provider is None:
            from opentelemetry.metrics import get_meter_provider

            meter_provider = get_meter_provider()
        meter = meter_provider.get_meter("voxline")
        self.stage_ms = meter.create_histogram(
            STAGE_HISTOGRAM,
            unit="ms",
            description="Latency of one stage of a turn, from event timestamps "
            "(attributes: stage, mode, source)",
            explicit_bucket_boundaries_advisory=list(BUCKETS_MS),
        )
        self.part_ms = meter.create_histogram(
            PART_HISTOGRAM,
            unit="ms",
            description="One part of a turn's end of input → first audio; a turn's parts "
            "add up to its time_to_first_audio stage (attributes: part, source; part "
            "preemptive_head_start is the time a preemptive reply was prepared before, "
            "outside the sum)",
            explicit_bucket_boundaries_advisory=list(BUCKETS_MS),
        )
        self.sessions = meter.create_counter(
            SESSIONS_COUNTER, description="Sessions created and closed (attribute: event)"
        )
        self.turns = meter.create_counter(
            TURNS_COUNTER, description="Finished turns (attributes: status, mode, source)"
        )
        self.errors = meter.create_counter(
            ERRORS_COUNTER, description="error events (attributes: code, stage)"
        )
        self.cancellations = meter.create_counter(
            CANCELLATIONS_COUNTER, description="Cancelled responses (attribute: reason)"
        )
        self.speculations_discarded = meter.create_counter(
            SPECULATIONS_DISCARDED_COUNTER,
            description="Replies prepared during a pause and dropped unsent: wasted work "
            "of preemptive turns (attribute: reason)",
        )
        self.speculations_adopted = meter.create_counter(
            SPECULATIONS_ADOPTED_COUNTER,
            description="Replies prepared during a pause and sent when the turn ended: "
            "preemptive turns that paid off (their head start is the part "
            "preemptive_head_start)",
        )

    def record_turn(self, turn: TurnMeasure) -> None:
        """One finished turn: its stages, its status, its cancellation.

        Its errors are not counted here: :meth:`record_error` counts every ``error`` event,
        with or without a turn.
        """
        if not turn.finished:
            raise ValueError(f"turn {turn.turn_id} is still open")
        # each latency's exemplar names the turn's trace (ids derived as the trace's are)
        context = turn_root_context(turn.session_id, turn.turn_id)
        for stage, ms in turn.stages.items():
            self.stage_ms.record(ms, {"stage": stage, "mode": turn.mode, "source": turn.source},
                                 context=context)
        for part, ms in turn.parts.items():
            self.part_ms.record(ms, {"part": part, "source": turn.source}, context=context)
        if "preemptive_head_start" in turn.parts:
            self.speculations_adopted.add(1)
        self.turns.add(1, {"status": turn.status, "mode": turn.mode, "source": turn.source})
        if turn.status == "cancelled":
            self.cancellations.add(1, {"reason": turn.cancel_reason or "client"})

    def record_session(self, event: Literal["created", "closed"]) -> None:
        self.sessions.add(1, {"event": event})

    def record_error(self, code: str, stage: str | None = None) -> None:
        self.errors.add(1, {"code": code, "stage": stage or "none"})

    def record_discarded_speculation(self, reason: str) -> None:
        self.speculations_discarded.add(1, {"reason": reason})


def prometheus_endpoint(host: str = "127.0.0.1", port: int = 9464) -> MeterProvider:
    """Serve ``/metrics`` on ``host:port`` and return a ``MeterProvider`` that feeds it
    (and, where the ``OTEL_*`` variables ask for it, exports over OTLP too:
    :func:`otlp_metrics`).

    Once per process: the reader registers with prometheus_client's global registry.
    Pass the provider to :class:`TurnMetrics` (or set it as the global one).
    """
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import start_http_server

    start_http_server(port, addr=host)  # first: a taken port fails before anything registers
    return _provider([PrometheusMetricReader()])


def otlp_metrics() -> MeterProvider | None:
    """A ``MeterProvider`` exporting over OTLP (HTTP/protobuf) where the standard
    variables ask for it (``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``..._METRICS_ENDPOINT``;
    ``OTEL_METRIC_EXPORT_INTERVAL``, default 60 s); None otherwise.

    OTLP carries the latency histograms' exemplars (each names a turn's trace: see
    :meth:`TurnMetrics.record_turn`); the Prometheus text the endpoint serves has none
    (OpenTelemetry's Prometheus reader writes no exemplars)."""
    return _provider([]) if otlp_configured("metrics") else None


def _provider(readers: list[Any]) -> MeterProvider:
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
    from opentelemetry.sdk.resources import Resource

    if otlp_configured("metrics"):
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        logger.info("exporting turn metrics over OTLP")
    resource = Resource.create({"service.name": "voxline-metrics"})
    return SdkMeterProvider(metric_readers=readers, resource=resource)


# ---- consuming --------------------------------------------------------------------------


class MetricsConsumer:
    """Records each turn, error and session event of the log exactly once per group.

    **What it reads.** Any feed entry of a session (``session.created``, ``input.audio``,
    ``response.done``, ``session.closed`` ..., plus ``response.cancelled`` and ``error``
    when the writers use :data:`METRICS_FEED_TYPES`) makes it read that session's log
    from a per-session cursor, measure every turn finished since (:func:`scan_session`),
    count every ``error`` event, and count ``session.created`` / ``session.closed``.
    Cancellations and errors therefore need no feed entries of their own; with the
    default feed types they are counted when the session's next entry arrives (at the
    latest its ``session.closed``).

    **Once.** Before recording, each item (``turn:<id>``, ``error:<event id>``,
    ``session:created``, ``session:closed``) is claimed with ``SADD`` in the set
    ``{prefix}:metrics:<session>:recorded`` (TTL ``ttl_s``, renewed on use); only the
    claimant records it. So a redelivered or claimed feed entry, two entries of one
    session, or two replicas racing record nothing twice. The price is at most once: a
    process dying between the claim and the (in-memory) record loses that item, as it
    loses everything it had not yet been scraped for anyway.

    **Cursor.** ``{prefix}:metrics:<session>:cursor`` is the stream id before which every
    turn is recorded, so a long session is not re-read whole for every turn. Any value a
    handler writes is safe (it never passes an unfinished turn), so racing writers need no
    lock; a lost cursor costs a re-read, never a double count.
    """

    def __init__(
        self,
        log: EventLog,
        metrics: TurnMetrics,
        *,
        consumer: str | None = None,
        group: str = "metrics",
        ttl_s: int | None = None,
        min_speech_ms: int = DEFAULT_MIN_SPEECH_MS,
    ) -> None:
        self.log = log
        self.redis: Redis = log.redis
        self.metrics = metrics
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.ttl_s = ttl_s or log.settings.closed_ttl_s or 7 * 24 * 3600
        self.min_speech_ms = min_speech_ms
        self.reader = FeedReader(self.redis, log.feed_keys, group, self.consumer, log.settings)

    def _key(self, session_id: str, what: str) -> str:
        return f"{self.log.settings.key_prefix}:metrics:{session_id}:{what}"

    async def run(self, *, start_id: str = "$", block_ms: int = 1000) -> None:
        """Consume the feed until cancelled.

        A new group starts at ``start_id``: ``$`` counts from now on (a first deployment
        does not replay the whole feed into the rates), ``0`` from the oldest entry kept.
        """
        await self.reader.ensure_group(start_id)
        await run_worker(self.reader, self.handle, block_ms=block_ms,
                         outage_grace_s=self.log.settings.outage_grace_s)

    async def handle(self, delivery: Delivery) -> None:
        """Handle one feed entry (idempotent: any number of deliveries record once)."""
        raw = delivery.fields.get(b"session")
        if not raw:
            logger.warning("feed entry %s has no session; skipped", delivery.entry_id)
            return
        await self.catch_up(raw.decode())

    async def catch_up(self, session_id: str) -> SessionScan:
        """Record everything of ``session_id`` not yet recorded; returns what it scanned."""
        cursor_key = self._key(session_id, "cursor")
        try:
            stored: Any = await self.redis.get(cursor_key)
        except RedisError as exc:
            raise EventLogError(f"event log unavailable: {exc}") from exc
        cursor = stored.decode() if stored else None
        events = await self._read(session_id, cursor)
        scan = scan_session(events, min_speech_ms=self.min_speech_ms)
        items: dict[str, Any] = {}
        if scan.created:
            items["session:created"] = "created"
        if scan.closed:
            items["session:closed"] = "closed"
        for turn in scan.turns:
            if turn.finished:
                items[f"turn:{turn.turn_id}"] = turn
        for error in scan.errors:
            items[f"error:{error.id}"] = error
        for discarded in scan.discarded:
            items[f"discarded:{discarded.id}"] = discarded
        for item in await self._claim(session_id, list(items)):
            value = items[item]
            if isinstance(value, TurnMeasure):
                self.metrics.record_turn(value)
            elif isinstance(value, ErrorEvent):
                self.metrics.record_error(value.data.code.value, value.data.stage)
            elif isinstance(value, SpeculationDiscarded):
                self.metrics.record_discarded_speculation(value.data.reason)
            else:
                self.metrics.record_session(value)
        if scan.resume_after is not None and scan.resume_after != cursor:
            await self.redis.set(cursor_key, scan.resume_after, ex=self.ttl_s)
        return scan

    async def _read(self, session_id: str, cursor: str | None) -> list[Event]:
        events, horizon = await self.log.read_remaining(session_id, cursor)
        if horizon is not None:  # trimmed: measure what is left
            logger.warning(
                "session %s was trimmed up to %s; metrics from there", session_id, horizon
            )
        return events

    async def _claim(self, session_id: str, items: Sequence[str]) -> list[str]:
        """The items this call is first to claim (``SADD`` answers 1 only once)."""
        if not items:
            return []
        key = self._key(session_id, "recorded")
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for item in items:
                    pipe.sadd(key, item)
                pipe.expire(key, self.ttl_s)
                replies = await pipe.execute()
        except RedisError as exc:
            raise EventLogError(f"event log unavailable: {exc}") from exc
        return [item for item, added in zip(items, replies[: len(items)], strict=True) if added]
