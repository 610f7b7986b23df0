"""Per-turn latency metrics from the event log, exported through OpenTelemetry.

Three layers, each usable alone:

* **Measuring** (pure, no I/O): :func:`turn_metrics` turns one turn's events into a
  :class:`TurnMeasure` (stage latencies in ms, status, mode); :func:`scan_session` does it
  for every turn in a run of a session's events and says which turns are finished.
* **Recording**: :class:`TurnMetrics` holds the OpenTelemetry instruments, made from an
  injected ``MeterProvider`` (tests pass one with an ``InMemoryMetricReader``;
  :func:`prometheus_endpoint` builds one that Prometheus scrapes).
* **Consuming**: :class:`MetricsConsumer` reads the feed stream in the consumer group
  ``metrics``, reads the session's log for each entry and records every turn once.

Stages (ms; computed from the server's ``ts`` of each event, so from one clock). The origin
of a turn is ``input.speech_stopped`` (voice: the moment VAD declared the end of speech) or
``input.text`` (typed). Each stage is the gap between the *first* event of its kind in the
turn, counting only events up to the turn's ``response.done`` / ``response.cancelled``
(narration appended later is not the turn's latency):

``vad_tail``
    End of speech → ``input.speech_stopped``: the silence VAD waits for plus its lag.
    The log has no wall-clock time of the end of speech, only its position in the input
    audio (``speech_stopped.data.audio_ms``), so it is *estimated* with the preceding
    ``input.speech_started`` as the anchor between audio time and wall time, assuming the
    audio arrives in real time (a microphone)::

        vad_tail = (stopped.ts - started.ts) - (stopped.audio_ms - started.audio_ms)
                   + min_speech_ms

    (``speech_started`` is emitted once speech lasted ``min_speech_ms``, see
    :class:`pipeline.endpointing.EndpointConfig`). Left out when there is no
    ``speech_started`` for the utterance (push-to-talk without detected speech) or the
    estimate is negative (audio streamed faster than real time: no estimate possible).
``stt``
    origin → ``transcript.final`` (voice turns).
``llm_first_token``
    ``transcript.final`` (text turns: ``input.text``) → first ``response.text.delta``.
``first_piece_cut``
    first ``response.text.delta`` → first ``response.sentence``.
``tts_first_chunk``
    first ``response.sentence`` → first ``response.audio.chunk``.
``time_to_first_audio``
    origin → first ``response.audio.chunk`` (TTFA; for voice turns
    ``stt + llm_first_token + first_piece_cut + tts_first_chunk``).
``voice_to_voice``
    end of speech → first audio sent: ``vad_tail + time_to_first_audio``; voice turns
    with a ``vad_tail`` only. The network and the client's playout are not in the log.
``response_done``
    origin → ``response.done``.

Turn status: ``completed`` / ``failed`` (``response.done.data.status``), ``cancelled``
(``response.cancelled``, with its reason), ``failed`` also for a turn whose input failed
before any response (an ``error`` and no ``response.started``), ``no_response`` for an
empty transcript (nothing to answer), ``abandoned`` for a turn that got no ending event
before the next turn or the end of the session (a replica died mid-response), and
``open`` while none of that has happened yet (never recorded).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from redis.asyncio import Redis
from redis.exceptions import RedisError

from pipeline.consumer import Delivery, GroupReader, run_worker
from pipeline.eventlog import DEFAULT_FEED_TYPES, EventLog
from pipeline.timeline import TurnTimeline
from schemas._errors import EventLogError
from schemas._events import (
    ErrorEvent,
    Event,
    ResponseCancelled,
    ResponseDone,
    ResponseStarted,
    SpeechStarted,
    SpeechStopped,
    TranscriptFinal,
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
    "prometheus_endpoint",
    "scan_session",
    "turn_metrics",
    "vad_tail_ms",
]

logger = logging.getLogger(__name__)

#: Stage names: the ``stage`` attribute of the stage histogram, in pipeline order.
STAGES: tuple[str, ...] = (
    "vad_tail",
    "stt",
    "llm_first_token",
    "first_piece_cut",
    "tts_first_chunk",
    "time_to_first_audio",
    "voice_to_voice",
    "response_done",
)

#: Histogram buckets (ms): fine where voice latencies live (100 ms - 2 s), coarse beyond.
BUCKETS_MS: tuple[float, ...] = (
    10, 25, 50, 75, 100, 150, 200, 250, 300, 400, 500, 600, 750, 1000,
    1250, 1500, 2000, 2500, 3000, 4000, 5000, 7500, 10000, 20000, 30000,
)  # fmt: skip

#: The feed types the ingress's :class:`EventLog` should be built with for timely counts:
#: with the defaults alone, cancellations and errors are still counted, but only when the
#: session's next feed entry (input, response.done, session.closed) comes.
METRICS_FEED_TYPES: frozenset[str] = DEFAULT_FEED_TYPES | {"response.cancelled", "error"}

#: ``min_speech_ms`` of :class:`pipeline.endpointing.EndpointConfig`'s default.
DEFAULT_MIN_SPEECH_MS = 250

TurnSource = Literal["audio", "text"]
TurnOutcome = Literal["completed", "failed", "cancelled", "no_response", "abandoned", "open"]

_ORIGINS = frozenset({"input.speech_stopped", "input.audio", "input.text"})


# ---- measuring --------------------------------------------------------------------------


@dataclass(frozen=True)
class TurnMeasure:
    """What the metrics know about one turn."""

    session_id: str
    turn_id: str
    source: TurnSource
    #: ``response.started``'s mode (streaming, sequential, text) or ``none`` (no response)
    mode: str
    status: TurnOutcome
    stages: dict[str, float] = field(default_factory=dict)
    cancel_reason: str | None = None
    #: error codes the turn's ``error`` events carried, in order
    errors: tuple[str, ...] = ()

    @property
    def finished(self) -> bool:
        return self.status != "open"


def vad_tail_ms(
    events: Sequence[Event], turn_id: str, *, min_speech_ms: int = DEFAULT_MIN_SPEECH_MS
) -> float | None:
    """The estimated VAD tail of a voice turn (see the module docstring), or ``None``.

    ``events`` is the session's log (at least from the utterance's ``speech_started`` on).
    """
    started: SpeechStarted | None = None
    for event in events:
        if isinstance(event, SpeechStarted):
            started = event
        elif isinstance(event, SpeechStopped):
            if event.turn_id == turn_id:
                return _tail(started, event, min_speech_ms)
            started = None  # that start belonged to another utterance
    return None


def _tail(
    started: SpeechStarted | None, stopped: SpeechStopped, min_speech_ms: int
) -> float | None:
    if started is None or started.data.audio_ms > stopped.data.audio_ms:
        return None  # no detected onset, or the input stream was restarted in between
    wall = stopped.ts - started.ts
    audio = stopped.data.audio_ms - started.data.audio_ms
    tail = float(wall - audio + min_speech_ms)
    return tail if tail >= 0 else None


def turn_metrics(
    events: Iterable[Event],
    turn_id: str,
    *,
    min_speech_ms: int = DEFAULT_MIN_SPEECH_MS,
    closed: bool = False,
) -> TurnMeasure:
    """Measure one turn from the session's events (a pure function of them).

    ``closed`` (or a later turn's input in ``events``) ends a turn that has no ending
    event of its own (``abandoned``); otherwise such a turn is ``open``.
    """
    events = list(events)
    scan = scan_session(events, min_speech_ms=min_speech_ms, closed=closed)
    for turn in scan.turns:
        if turn.turn_id == turn_id:
            return turn
    raise KeyError(f"no input of turn {turn_id!r} in these events")


@dataclass(frozen=True)
class SessionScan:
    """Every turn whose input is in a run of a session's events, measured."""

    session_id: str | None
    turns: tuple[TurnMeasure, ...]
    errors: tuple[ErrorEvent, ...]
    created: bool
    closed: bool
    #: the id after which a later scan must start to still see every event of every turn
    #: not finished here; ``None``: before the first event scanned (do not move)
    resume_after: str | None


@dataclass
class _Turn:
    turn_id: str
    start: int  # index of its first event (its speech_started when it has one)
    origin: int
    source: TurnSource = "text"
    events: list[Event] = field(default_factory=list)
    ended: bool = False  # response.done / response.cancelled seen


def scan_session(
    events: Sequence[Event],
    *,
    min_speech_ms: int = DEFAULT_MIN_SPEECH_MS,
    closed: bool = False,
) -> SessionScan:
    """Measure every turn whose input (``input.text`` / ``input.speech_stopped`` /
    ``input.audio``) is in ``events`` and say which are finished.

    ``events`` is a contiguous run of one session's log in order; events of turns whose
    input came before the run (narration appended to an older turn) are ignored. A
    turn is finished by its ``response.done`` or ``response.cancelled``, by failing or
    getting an empty transcript before any response, by the next turn's input (the
    session cancels a running response before it appends new input), or by
    ``session.closed`` (in ``events``, or ``closed=True``).
    """
    turns: dict[str, _Turn] = {}
    order: list[_Turn] = []
    errors: list[ErrorEvent] = []
    pending_start: int | None = None  # index of the speech_started of the coming utterance
    created = False
    for index, event in enumerate(events):
        closed = closed or event.type == "session.closed"
        created = created or event.type == "session.created"
        if isinstance(event, ErrorEvent):
            errors.append(event)
        if isinstance(event, SpeechStarted):
            pending_start = index
            continue
        turn_id = event.turn_id
        if turn_id is None:
            continue
        turn = turns.get(turn_id)
        if turn is None:
            if event.type not in _ORIGINS:
                continue  # a turn whose input came before this run
            start = index
            if isinstance(event, SpeechStopped) and pending_start is not None:
                start = pending_start
            turn = turns[turn_id] = _Turn(turn_id, start, index)
            order.append(turn)
        if isinstance(event, SpeechStopped):
            pending_start = None
        if turn.ended:
            continue  # narration and other late events are not the turn's latency
        if event.type in ("input.speech_stopped", "input.audio"):
            turn.source = "audio"
        turn.events.append(event)
        turn.ended = isinstance(event, ResponseDone | ResponseCancelled)

    measures: list[TurnMeasure] = []
    for n, turn in enumerate(order):
        superseded = closed or n + 1 < len(order)
        window = list(events[turn.start : turn.origin]) + turn.events
        measures.append(_measure(turn, window, superseded, min_speech_ms))

    session_id = events[0].session_id if events else None
    needed: int | None = None
    if measures and not measures[-1].finished:
        needed = order[-1].start
    elif pending_start is not None and not closed:
        needed = pending_start  # an utterance in progress: keep its speech_started
    if needed is None:
        resume_after = events[-1].id if events else None
    else:
        resume_after = events[needed - 1].id if needed > 0 else None
    return SessionScan(session_id, tuple(measures), tuple(errors), created, closed, resume_after)


def _measure(turn: _Turn, window: list[Event], superseded: bool, min_speech_ms: int) -> TurnMeasure:
    mode = "none"
    started = empty_transcript = False
    status: TurnOutcome = "open"
    cancel_reason: str | None = None
    codes: list[str] = []
    for event in turn.events:
        match event:
            case ResponseStarted():
                started, mode = True, event.data.mode
            case TranscriptFinal():
                empty_transcript = not event.data.text.strip()
            case ErrorEvent():
                codes.append(event.data.code.value)
            case ResponseDone():
                status = "completed" if event.data.status == "completed" else "failed"
            case ResponseCancelled():
                status, cancel_reason = "cancelled", event.data.reason
            case _:
                pass
    if status == "open":
        if not started and codes:
            status = "failed"  # the input failed (STT): no response follows
        elif not started and empty_transcript:
            status = "no_response"
        elif superseded:
            status = "failed" if codes else "abandoned"
    stages = TurnTimeline.of(turn.events, turn.turn_id).stages()
    if turn.source == "audio":
        tail = vad_tail_ms(window, turn.turn_id, min_speech_ms=min_speech_ms)
        if tail is not None:
            stages["vad_tail"] = tail
            if "time_to_first_audio" in stages:
                stages["voice_to_voice"] = tail + stages["time_to_first_audio"]
    ordered = {name: stages[name] for name in STAGES if name in stages}
    return TurnMeasure(
        session_id=turn.events[0].session_id,
        turn_id=turn.turn_id,
        source=turn.source,
        mode=mode,
        status=status,
        stages=ordered,
        cancel_reason=cancel_reason,
        errors=tuple(codes),
    )


# ---- recording --------------------------------------------------------------------------

#: OpenTelemetry instrument names (Prometheus: dots become underscores, the histogram
#: gets ``_milliseconds``, counters ``_total``).
STAGE_HISTOGRAM = "voxline.turn.stage.duration"
SESSIONS_COUNTER = "voxline.sessions"
TURNS_COUNTER = "voxline.turns"
ERRORS_COUNTER = "voxline.errors"
CANCELLATIONS_COUNTER = "voxline.cancellations"


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

    def record_turn(self, turn: TurnMeasure) -> None:
        """One finished turn: its stages, its status, its cancellation.

        Its errors are not counted here: :meth:`record_error` counts every ``error`` event,
        with or without a turn.
        """
        if not turn.finished:
            raise ValueError(f"turn {turn.turn_id} is still open")
        for stage, ms in turn.stages.items():
            self.stage_ms.record(ms, {"stage": stage, "mode": turn.mode, "source": turn.source})
        self.turns.add(1, {"status": turn.status, "mode": turn.mode, "source": turn.source})
        if turn.status == "cancelled":
            self.cancellations.add(1, {"reason": turn.cancel_reason or "client"})

    def record_session(self, event: Literal["created", "closed"]) -> None:
        self.sessions.add(1, {"event": event})

    def record_error(self, code: str, stage: str | None = None) -> None:
        self.errors.add(1, {"code": code, "stage": stage or "none"})


def prometheus_endpoint(host: str = "127.0.0.1", port: int = 9464) -> MeterProvider:
    """Serve ``/metrics`` on ``host:port`` and return a ``MeterProvider`` that feeds it.

    Once per process: the reader registers with prometheus_client's global registry.
    Pass the provider to :class:`TurnMetrics` (or set it as the global one).
    """
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
    from opentelemetry.sdk.resources import Resource
    from prometheus_client import start_http_server

    start_http_server(port, addr=host)  # first: a taken port fails before anything registers
    reader = PrometheusMetricReader()
    resource = Resource.create({"service.name": "voxline"})
    return SdkMeterProvider(metric_readers=[reader], resource=resource)


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
        self.reader = GroupReader(self.redis, log.feed_key, group, self.consumer, log.settings)

    def _key(self, session_id: str, what: str) -> str:
        return f"{self.log.settings.key_prefix}:metrics:{session_id}:{what}"

    async def run(self, *, start_id: str = "$", block_ms: int = 1000) -> None:
        """Consume the feed until cancelled.

        A new group starts at ``start_id``: ``$`` counts from now on (a first deployment
        does not replay the whole feed into the rates), ``0`` from the oldest entry kept.
        """
        await self.reader.ensure_group(start_id)
        await run_worker(self.reader, self.handle, block_ms=block_ms)

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
        for item in await self._claim(session_id, list(items)):
            value = items[item]
            if isinstance(value, TurnMeasure):
                self.metrics.record_turn(value)
            elif isinstance(value, ErrorEvent):
                self.metrics.record_error(value.data.code.value, value.data.stage)
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
