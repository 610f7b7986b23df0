"""Traces of turns. :mod:`~pipeline.tracing.from_log` rebuilds a turn's spans from its
log events (any session, also one served before tracing was on);
:mod:`~pipeline.tracing.otlp` writes them as OTLP JSON for a tracing backend."""

from pipeline.tracing.from_log import Span, TurnTrace, turn_trace, turn_traces
from pipeline.tracing.otlp import otlp_json

__all__ = ["Span", "TurnTrace", "otlp_json", "turn_trace", "turn_traces"]
