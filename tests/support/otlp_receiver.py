"""An OTLP/HTTP receiver on loopback, in a thread: keeps every span posted to
``/v1/traces`` (protobuf), with its resource's attributes, and every histogram
exemplar posted to ``/v1/metrics``. For the live-trace and metrics tests."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from voxline.redis_server import free_port


@dataclass(frozen=True)
class Received:
    """One span as a backend would see it: its process's resource and the span."""

    resource: dict[str, Any]
    span: Any  # opentelemetry.proto.trace.v1.trace_pb2.Span

    @property
    def service(self) -> str:
        return str(self.resource.get("service.name"))


@dataclass(frozen=True)
class Exemplar:
    """One exemplar of a histogram's data point: the metric, the point's attributes."""

    metric: str
    attributes: dict[str, str]
    trace_id: str
    span_id: str
    value: float


class OtlpReceiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.exemplars: list[Exemplar] = []
        self._lock = threading.Lock()
        super().__init__(("127.0.0.1", free_port()), _Handler)
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.shutdown()
        self.server_close()

    def keep(self, request: ExportTraceServiceRequest) -> None:
        with self._lock:
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value.string_value or a.value.int_value
                            for a in resource_spans.resource.attributes}
                for scope in resource_spans.scope_spans:
                    self.received.extend(Received(resource, span) for span in scope.spans)

    def keep_metrics(self, request: ExportMetricsServiceRequest) -> None:
        with self._lock:
            for resource_metrics in request.resource_metrics:
                for scope in resource_metrics.scope_metrics:
                    for metric in scope.metrics:
                        for point in metric.histogram.data_points:
                            attributes = {a.key: a.value.string_value for a in point.attributes}
                            self.exemplars.extend(
                                Exemplar(metric.name, attributes, e.trace_id.hex(),
                                         e.span_id.hex(), e.as_double)
                                for e in point.exemplars)

    def exemplars_of(self, trace_id: str) -> list[Exemplar]:
        with self._lock:
            return [e for e in self.exemplars if e.trace_id == trace_id]

    def spans_of(self, trace_id: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.span.trace_id.hex() == trace_id]


class _Handler(BaseHTTPRequestHandler):
    server: OtlpReceiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/v1/metrics":
            self.server.keep_metrics(ExportMetricsServiceRequest.FromString(body))
        else:
            self.server.keep(ExportTraceServiceRequest.FromString(body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass
