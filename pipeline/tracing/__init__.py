"""Traces of turns. :mod:`~pipeline.tracing.from_log` rebuilds a turn's spans from its
log events (any session, also one served before tracing was on);
:mod:`~pipeline.tracing.otlp` writes them as OTLP JSON for a tracing backend;
:mod:`~pipeline.tracing.live` records live turns' spans with the OpenTelemetry SDK;
:mod:`~pipeline.tracing.log_context` puts a record's session, turn and trace ids on
every log record."""

from pipeline.tracing.from_log import Span, TurnTrace, turn_trace, turn_traces
from pipeline.tracing.live import (
    Appended,
    DeliverySpans,
    DerivedIds,
    TurnSpans,
    call_span,
    otlp_configured,
    otlp_tracing,
    record_trace,
    turn_root_context,
)
from pipeline.tracing.log_context import (
    adopt,
    bind_session,
    carrier,
    install_log_context,
    trace_id,
    turn_context,
)
from pipeline.tracing.otlp import otlp_json

__all__ = [
    "Appended",
    "DeliverySpans",
    "DerivedIds",
    "Span",
    "TurnSpans",
    "TurnTrace",
    "adopt",
    "bind_session",
    "call_span",
    "carrier",
    "install_log_context",
    "otlp_configured",
    "otlp_json",
    "otlp_tracing",
    "record_trace",
    "trace_id",
    "turn_context",
    "turn_root_context",
    "turn_trace",
    "turn_traces",
]
