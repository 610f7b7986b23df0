"""Live traces over OTLP from the API (the Gateway's process, scripted engines, real
Redis): with ``OTEL_EXPORTER_OTLP_ENDPOINT`` set, a turn's spans reach an OTLP receiver
(HTTP/protobuf, in this test) when it ends, and they are the spans ``voxline trace``
rebuilds from the session's log: the same trace id, span ids, parents and times."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from pipeline.tracing import turn_trace
from tests.support.api_harness import call_api
from voxline.redis_server import free_port

pytestmark = pytest.mark.redis


class _Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP trace receiver: keeps every span posted to ``/v1/traces``."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.resources: list[dict[str, str]] = []
        super().__init__(("127.0.0.1", free_port()), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value
                          for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    self.server.spans.append(span)
                    self.server.resources.append(attributes)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Receiver]:
    server = _Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # ms: export soon after a turn
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


async def test_a_turns_spans_reach_the_otlp_receiver_as_the_log_has_them(
    receiver: _Receiver, redis_url: str, key_prefix: str
) -> None:
    async with call_api(redis_url, key_prefix) as harness:
        assert harness.services.tracing is not None
        session = await harness.client.create_session()
        async with harness.client.connect(session) as conn:
            await conn.send_text("Hello")
            async for event in conn.events():
                if event.type == "response.done":
                    break
        for _ in range(200):  # the batch goes out within a few schedule delays
            if any(span.name == "turn" for span in receiver.spans):
                break
            await asyncio.sleep(0.05)
        events = await harness.services.log.read_all(session.session_id)
    turn_id = next(e.turn_id for e in events if e.type == "input.text")
    assert turn_id is not None
    logged = turn_trace(session.session_id, turn_id, events)
    assert logged is not None
    live = {span.span_id.hex(): span for span in receiver.spans}
    assert set(live) == {span.span_id for span in logged.spans}
    for span in logged.spans:
        twin = live[span.span_id]
        assert twin.trace_id.hex() == logged.trace_id and twin.name == span.name
        assert (twin.parent_span_id.hex() or None) == span.parent_id
        assert (twin.start_time_unix_nano, twin.end_time_unix_nano) == (
            span.start_ms * 10**6, span.end_ms * 10**6)
    assert {r["service.name"] for r in receiver.resources} == {"voxline-gateway"}
