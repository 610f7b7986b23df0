"""Live turns' spans through the OpenTelemetry SDK: recorded as each turn ends, with the
times and ids the log gives the same turn (so a live trace and ``voxline trace`` agree),
bounded, and off without the OTLP variables."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pipeline.tracing import (
    Appended,
    DeliverySpans,
    DerivedIds,
    TurnSpans,
    otlp_tracing,
    turn_trace,
)
from pipeline.tracing.live import MAX_TURNS
from tests.support.turn_events import SID, voice_turn


def _tracing() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(id_generator=DerivedIds())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_a_turns_live_spans_are_its_logged_spans_with_the_same_ids_and_times() -> None:
    provider, exporter = _tracing()
    spans = TurnSpans(SID, provider.get_tracer("test"))
    events = voice_turn("t1")
    for event in events[:-1]:
        spans.observe(event)
    assert not exporter.get_finished_spans()  # nothing before the turn ends
    spans.observe(events[-1])
    live = {(sp.name, sp.attributes.get("voxline.sentence_index")): sp
            for sp in exporter.get_finished_spans()}
    logged = turn_trace(SID, "t1", events)
    assert logged is not None and len(live) == len(logged.spans)
    for span in logged.spans:
        twin = live[(span.name, span.attributes.get("voxline.sentence_index"))]
        assert f"{twin.context.trace_id:032x}" == logged.trace_id
        assert f"{twin.context.span_id:016x}" == span.span_id
        assert (twin.start_time, twin.end_time) == (span.start_ms * 10**6, span.end_ms * 10**6)
        parent = twin.parent
        assert (parent is None) == (span.parent_id is None)
        if parent is not None:
            assert f"{parent.span_id:016x}" == span.parent_id
    llm = live[("llm", None)]
    assert [e.name for e in llm.events] == ["first_token"]
    provider.shutdown()


def test_the_appends_that_matter_are_spans_of_the_turn_as_they_happen() -> None:
    provider, exporter = _tracing()
    spans = TurnSpans(SID, provider.get_tracer("test"))
    events = voice_turn("t1")
    logged = turn_trace(SID, "t1", events)
    assert logged is not None
    marked = []
    for n, event in enumerate(events):
        asked = event.ts * 10**6
        appended = Appended(asked, asked + 200_000, asked + 700_000 + n)
        spans.observe(event, appended)
        if event.type in ("input.speech_stopped", "transcript.final", "response.started",
                          "response.done") or (
                event.type == "response.text.delta" and "response.text.delta" not in
                {e.type for e in events[:n]}) or (
                event.type == "response.audio.chunk" and event.data.chunk_index == 0):
            marked.append((event.type, appended))
        if event.type != "response.done":  # recorded as they happen, not at the turn's end
            assert len([s for s in exporter.get_finished_spans()
                        if s.name == "log.append"]) == len(marked)
    appends = [s for s in exporter.get_finished_spans() if s.name == "log.append"]
    assert [(s.attributes["voxline.event"], s.start_time, s.end_time) for s in appends] == [
        (kind, a.asked_ns, a.ended_ns) for kind, a in marked]
    assert {s.attributes["voxline.waited_ms"] for s in appends} == {0.2}
    assert all(f"{s.parent.span_id:016x}" == logged.root.span_id  # type: ignore[union-attr]
               and f"{s.context.trace_id:032x}" == logged.trace_id for s in appends)
    # one span per append, however many of its events matter
    again = Appended(1, 2, 3)
    spans.observe(events[1].model_copy(update={"turn_id": "t2"}), again)
    spans.observe(events[1].model_copy(update={"turn_id": "t2"}), again)
    assert len([s for s in exporter.get_finished_spans() if s.name == "log.append"]) == len(
        appends) + 1
    provider.shutdown()


def test_a_sockets_deliveries_of_first_chunks_and_the_end_are_spans_of_the_turn() -> None:
    provider, exporter = _tracing()
    deliveries = DeliverySpans(provider.get_tracer("test"), "socket")
    events = voice_turn("t1")
    for event in events:
        deliveries.delivered(event)
    logged = turn_trace(SID, "t1", events)
    assert logged is not None
    spans = exporter.get_finished_spans()
    firsts = [e for e in events if e.type == "response.audio.chunk"
              and e.data.chunk_index == 0]
    assert [(s.attributes["voxline.event"], s.attributes.get("voxline.sentence_index"),
             s.start_time) for s in spans] == [
        *[("response.audio.chunk", e.data.sentence_index, e.ts * 10**6) for e in firsts],
        ("response.done", None, events[-1].ts * 10**6)]
    assert all(s.name == "deliver" and s.attributes["voxline.reader"] == "socket"
               and f"{s.parent.span_id:016x}" == logged.root.span_id  # type: ignore[union-attr]
               for s in spans)
    provider.shutdown()


def test_turns_that_never_end_are_dropped_oldest_first() -> None:
    provider, exporter = _tracing()
    spans = TurnSpans(SID, provider.get_tracer("test"))
    for n in range(MAX_TURNS + 3):  # begun, never answered
        spans.observe(voice_turn(f"open{n}")[1])
    assert len(spans._turns) == MAX_TURNS
    events = voice_turn("t9", at=5_000_000)
    for event in events:
        spans.observe(event)
    assert {sp.attributes.get("voxline.turn_id") for sp in exporter.get_finished_spans()
            if sp.name == "turn"} == {"t9"}
    provider.shutdown()


def test_without_the_otlp_variables_nothing_is_traced(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert otlp_tracing("voxline-test") is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert otlp_tracing("voxline-test") is None
    monkeypatch.delenv("OTEL_SDK_DISABLED")
    provider = otlp_tracing("voxline-test")
    assert provider is not None
    provider.shutdown()
