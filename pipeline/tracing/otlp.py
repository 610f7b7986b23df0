"""Traces as OTLP JSON (``ExportTraceServiceRequest``, the protobuf's JSON mapping): what
an OpenTelemetry collector takes on ``/v1/traces`` with ``Content-Type:
application/json``, and what Jaeger, Tempo and Honeycomb import."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pipeline.tracing.from_log import Attribute, TurnTrace

__all__ = ["otlp_json"]

_SERVER = 2  # SpanKind.SPAN_KIND_SERVER: the root; the stages are internal (1)


def _attributes(values: dict[str, Attribute]) -> list[dict[str, Any]]:
    def value(v: Attribute) -> dict[str, Any]:
        if isinstance(v, bool):
            return {"boolValue": v}
        if isinstance(v, int):
            return {"intValue": str(v)}  # int64 as a string, per the JSON mapping
        if isinstance(v, float):
            return {"doubleValue": v}
        return {"stringValue": v}

    return [{"key": k, "value": value(v)} for k, v in values.items()]


def _nanos(ms: int) -> str:
    return str(ms * 1_000_000)


def otlp_json(traces: Iterable[TurnTrace], *, service: str = "voxline",
              scope: str = "voxline.trace-from-log") -> dict[str, Any]:
    """One request with every span of ``traces``."""
    spans = [
        {
            "traceId": trace.trace_id,
            "spanId": span.span_id,
            **({"parentSpanId": span.parent_id} if span.parent_id else {}),
            "name": span.name,
            "kind": _SERVER if span.parent_id is None else 1,
            "startTimeUnixNano": _nanos(span.start_ms),
            "endTimeUnixNano": _nanos(span.end_ms),
            "attributes": _attributes(span.attributes),
            "events": [{"name": name, "timeUnixNano": _nanos(ms),
                        "attributes": _attributes(attrs)}
                       for name, ms, attrs in span.events],
        }
        for trace in traces for span in trace.spans
    ]
    return {"resourceSpans": [{
        "resource": {"attributes": _attributes({"service.name": service})},
        "scopeSpans": [{"scope": {"name": scope}, "spans": spans}],
    }]}
