"""Live traces over OTLP from the API (the Gateway's process, scripted engines, real
Redis): with ``OTEL_EXPORTER_OTLP_ENDPOINT`` set, a turn's spans reach an OTLP receiver
(HTTP/protobuf, in this test) when it ends, and they are the spans ``voxline trace``
rebuilds from the session's log: the same trace id, span ids, parents and times, and
besides them only the live-only spans (``log.append``, ``deliver``) under the same root."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from pipeline.tracing import turn_trace
from tests.support.api_harness import call_api
from tests.support.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.redis

#: spans only a live trace has: the log keeps no append or delivery times
LIVE_ONLY = {"log.append", "deliver"}


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as server:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", server.url)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # ms: export soon after a turn
        yield server


async def test_a_turns_spans_reach_the_otlp_receiver_as_the_log_has_them(
    receiver: OtlpReceiver, redis_url: str, key_prefix: str
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
            if any(r.span.name == "turn" for r in receiver.received):
                break
            await asyncio.sleep(0.05)
        events = await harness.services.log.read_all(session.session_id)
    turn_id = next(e.turn_id for e in events if e.type == "input.text")
    assert turn_id is not None
    logged = turn_trace(session.session_id, turn_id, events)
    assert logged is not None
    live_only = [r.span for r in receiver.received if r.span.name in LIVE_ONLY]
    live = {r.span.span_id.hex(): r.span for r in receiver.received
            if r.span.name not in LIVE_ONLY}
    assert set(live) == {span.span_id for span in logged.spans}
    assert {span.name for span in live_only} == LIVE_ONLY  # the socket's, the emitter's
    for extra in live_only:
        assert extra.trace_id.hex() == logged.trace_id
        assert extra.parent_span_id.hex() == logged.root.span_id
    for span in logged.spans:
        twin = live[span.span_id]
        assert twin.trace_id.hex() == logged.trace_id and twin.name == span.name
        assert (twin.parent_span_id.hex() or None) == span.parent_id
        assert (twin.start_time_unix_nano, twin.end_time_unix_nano) == (
            span.start_ms * 10**6, span.end_ms * 10**6)
    assert {r.service for r in receiver.received} == {"voxline-gateway"}
