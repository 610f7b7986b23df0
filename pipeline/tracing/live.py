"""Traces of live turns, with the OpenTelemetry SDK: each turn's spans recorded when it
ends, exported by the tracer provider the process has (OTLP when the standard
``OTEL_*`` variables ask for it; nothing at all otherwise).

The spans are :mod:`pipeline.tracing.from_log`'s, built from the turn's events as the
session appends them (:class:`TurnSpans`, fed by the session's emitter), so a live trace
and ``voxline trace`` on the logged session give the same spans: the same boundaries
(the events' timestamps), the same trace id and the same span ids
(:class:`DerivedIds` hands the SDK the ids :mod:`~pipeline.tracing.from_log` derives).
Because the ids are known before the spans are recorded, a call to another process can
name its parent span while the turn is still running.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

from opentelemetry import trace
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator

from pipeline.tracing.from_log import Attribute, Span, TurnTrace, turn_trace
from pipeline.tracing.log_context import root_span_id, trace_id
from schemas import Event, ResponseAudioChunk

__all__ = ["Appended", "DeliverySpans", "DerivedIds", "TurnSpans", "call_span",
           "otlp_configured", "otlp_tracing", "record_trace", "turn_root_context"]

logger = logging.getLogger(__name__)

#: (trace id, span id) the SDK is to use for the span being started, as ints
_NEXT: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "voxline_next_span_ids", default=None)
#: turns gathered at once, at most (a turn that never ends is dropped, oldest first)
MAX_TURNS = 4
#: events gathered for one turn, at most (past it the turn is not traced)
MAX_EVENTS = 4096
_END = frozenset({"response.done", "response.cancelled"})
#: the appends a turn's trace shows (each a ``log.append`` span): those of the events
#: that mark its stages, its first text delta and each sentence's first audio chunk
_MARKS = frozenset({"input.speech_stopped", "input.text", "transcript.final",
                    "response.started", "response.done", "response.cancelled"})


class Appended(NamedTuple):
    """When an append of a session's events was asked for, began (the session's append
    lock taken) and ended, in ns since the epoch."""

    asked_ns: int
    began_ns: int
    ended_ns: int


class DerivedIds(IdGenerator):
    """The ids :func:`record_trace` asks for; random ones for every other span."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()

    def generate_span_id(self) -> int:
        chosen = _NEXT.get()
        return chosen[1] if chosen else self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        chosen = _NEXT.get()
        return chosen[0] if chosen else self._random.generate_trace_id()


@contextlib.contextmanager
def _ids(trace_id: str, span_id: str) -> Iterator[None]:
    token = _NEXT.set((int(trace_id, 16), int(span_id, 16)))
    try:
        yield
    finally:
        _NEXT.reset(token)


def _ns(ms: int) -> int:
    return ms * 1_000_000


def _start(tracer: Any, trace_id: str, span: Span, **options: Any) -> Any:
    with _ids(trace_id, span.span_id):
        recorded = tracer.start_span(span.name, start_time=_ns(span.start_ms),
                                     attributes=span.attributes, **options)
    for name, ms, attributes in span.events:
        recorded.add_event(name, attributes, timestamp=_ns(ms))
    return recorded


def record_trace(tracer: Any, turn: TurnTrace) -> None:
    """Record ``turn``'s spans with their own times and ids (needs a tracer provider made
    with :class:`DerivedIds`; another provider's spans get ids of its own)."""
    root = _start(tracer, turn.trace_id, turn.root, kind=trace.SpanKind.SERVER)
    parent = trace.set_span_in_context(root)
    for span in turn.spans[1:]:
        _start(tracer, turn.trace_id, span, context=parent).end(end_time=_ns(span.end_ms))
    root.end(end_time=_ns(turn.root.end_ms))


class TurnSpans:
    """One session's turns, gathered from its events as they are appended and recorded
    when each ends (``response.done`` or ``response.cancelled``). Bounded: at most
    :data:`MAX_TURNS` turns of :data:`MAX_EVENTS` events each; audio is not kept.

    Live only, and recorded at once: a ``log.append`` span for each append that matters
    (:data:`_MARKS`, the first text delta, each sentence's first audio chunk), under the
    turn's root, with how long it waited for the session's earlier appends. The log has
    no such times, so ``voxline trace`` cannot show them."""

    def __init__(self, session_id: str, tracer: Any) -> None:
        self.session_id = session_id
        self.tracer = tracer
        self._turns: OrderedDict[str, list[Event]] = OrderedDict()
        self._last_append: Appended | None = None

    def observe(self, event: Event, appended: Appended | None = None) -> None:
        turn_id = event.turn_id
        if turn_id is None:
            return
        events = self._turns.get(turn_id)
        if events is None:
            events = self._turns[turn_id] = []
            while len(self._turns) > MAX_TURNS:
                self._turns.popitem(last=False)
        if appended is not None and appended != self._last_append and _marks(event, events):
            self._last_append = appended  # one span per append, however many it marks
            self._record_append(event, turn_id, appended)
        if len(events) < MAX_EVENTS:
            if isinstance(event, ResponseAudioChunk):  # its place and time, not its sound
                event = event.without_audio()
            events.append(event)
        if event.type in _END:
            events = self._turns.pop(turn_id)
            if len(events) < MAX_EVENTS:
                traced = turn_trace(self.session_id, turn_id, events)
                if traced is not None:
                    record_trace(self.tracer, traced)

    def _record_append(self, event: Event, turn_id: str, appended: Appended) -> None:
        span = self.tracer.start_span(
            "log.append", context=turn_root_context(self.session_id, turn_id),
            start_time=appended.asked_ns,
            attributes={"voxline.event": event.type,
                        "voxline.waited_ms": (appended.began_ns - appended.asked_ns) / 1e6})
        span.end(end_time=appended.ended_ns)


class DeliverySpans:
    """One reader's deliveries (a socket's, say) of the events of a turn that a listener
    waits for, each sentence's first audio chunk and the reply's end, as ``deliver``
    spans under the turn's root: from the event's append (its ``ts``) to its hand-over
    to the client's connection. Live only, recorded as they happen."""

    def __init__(self, tracer: Any, reader: str) -> None:
        self.tracer = tracer
        self.reader = reader

    def delivered(self, event: Event) -> None:
        if event.turn_id is None:
            return
        attributes: dict[str, Attribute] = {"voxline.event": event.type,
                                            "voxline.reader": self.reader}
        if isinstance(event, ResponseAudioChunk):
            if event.data.chunk_index:
                return
            attributes["voxline.sentence_index"] = event.data.sentence_index
        elif event.type not in _END:
            return
        span = self.tracer.start_span(
            "deliver", context=turn_root_context(event.session_id, event.turn_id),
            start_time=_ns(event.ts), attributes=attributes)
        span.end()


def _marks(event: Event, before: list[Event]) -> bool:
    """Whether ``event``'s append is one a turn's trace shows (``before``: the turn's
    events so far, ``event`` not among them yet)."""
    if event.type in _MARKS:
        return True
    if event.type == "response.text.delta":
        return not any(e.type == "response.text.delta" for e in reversed(before))
    return isinstance(event, ResponseAudioChunk) and event.data.chunk_index == 0


def otlp_configured(signal: str) -> bool:
    """Whether the standard variables ask for OTLP export of ``signal`` (``traces``,
    ``metrics``): ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT``
    set, and the SDK not turned off (``OTEL_SDK_DISABLED=true``)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"))


def otlp_tracing(service: str) -> Any | None:
    """A tracer provider exporting over OTLP (HTTP/protobuf) where the standard variables
    ask for it (``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``;
    the exporter reads them, its headers and timeout too; ``OTEL_SDK_DISABLED=true`` turns
    it off); None otherwise, and then nothing is traced: no span is made, nothing costs.
    Its owner calls ``shutdown()`` when done (what is batched is sent)."""
    if not otlp_configured("traces"):
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(id_generator=DerivedIds(), resource=Resource.create(
        {"service.name": service, "process.pid": os.getpid()}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    logger.info("tracing turns over OTLP as %s", service)
    return provider


def call_span(tracer: Any, name: str, context: Mapping[str, str] | None,
              **attributes: Attribute) -> Any | None:
    """A span for one call another process made for a turn, the child of that turn's
    root (the caller's ``traceparent``, :func:`pipeline.tracing.carrier`); started now,
    ended by the caller. None without a tracer or a turn: nothing is traced."""
    if tracer is None or not context or "traceparent" not in context:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    parent = TraceContextTextMapPropagator().extract(carrier=dict(context))
    return tracer.start_span(name, context=parent, kind=trace.SpanKind.SERVER,
                             attributes=attributes)


def turn_root_context(session_id: str, turn_id: str) -> Any:
    """An OpenTelemetry context whose current span is the turn's root (its derived ids,
    sampled): a histogram recorded in it keeps the turn's trace and span ids as its
    exemplar, so a slow bucket of a latency chart links to the trace that made it."""
    ids = trace_id(session_id, turn_id)
    root = trace.SpanContext(int(ids, 16), int(root_span_id(ids), 16), is_remote=True,
                             trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED))
    return trace.set_span_in_context(trace.NonRecordingSpan(root))
