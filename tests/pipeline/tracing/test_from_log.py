"""A turn's trace rebuilt from its log events: the spans' boundaries are the events'
timestamps, the ids are stable, and the OTLP JSON says the same."""

from __future__ import annotations

import schemas as s
from pipeline.tracing import otlp_json, turn_trace, turn_traces
from tests.support.turn_events import SID
from tests.support.turn_events import voice_turn as _voice_turn


def test_a_voice_turn_has_its_stages_as_spans_at_the_events_times() -> None:
    trace = turn_trace(SID, "t1", _voice_turn(), vad_tail_ms=240)
    assert trace is not None
    root = trace.root
    assert (root.name, root.start_ms, root.end_ms) == ("turn", 1_000_000, 1_000_800)
    assert root.attributes["voxline.first_audio_ms"] == 600
    assert root.attributes["voxline.status"] == "completed"
    assert root.attributes["voxline.source"] == "audio"
    by_name = {(sp.name, sp.attributes.get("voxline.sentence_index")): sp for sp in trace.spans}
    offsets = {key: (sp.start_ms - 1_000_000, sp.end_ms - 1_000_000)
               for key, sp in by_name.items()}
    assert offsets[("vad.endpoint", None)] == (-240, 0)
    assert offsets[("stt", None)] == (0, 180)
    assert offsets[("llm", None)] == (185, 810)
    assert offsets[("tts.sentence", 0)] == (460, 700)
    assert offsets[("tts.sentence", 1)] == (720, 800)
    llm = by_name[("llm", None)]
    assert llm.events == (("first_token", 1_000_400, {}),)
    assert llm.attributes["voxline.text_deltas"] == 2
    assert all(sp.parent_id == root.span_id for sp in trace.spans[1:])
    assert len({sp.span_id for sp in trace.spans}) == len(trace.spans)


def test_ids_are_the_same_each_time_and_differ_between_turns() -> None:
    events = _voice_turn("t1") + _voice_turn("t2", at=2_000_000)
    first, second = turn_traces(SID, events)
    again = turn_traces(SID, events)[0]
    assert first.trace_id == again.trace_id and len(first.trace_id) == 32
    assert [sp.span_id for sp in first.spans] == [sp.span_id for sp in again.spans]
    assert first.trace_id != second.trace_id and second.turn_id == "t2"


def test_a_typed_turn_cut_short_shows_the_cancellation_on_its_root() -> None:
    events = [
        s.InputText(session_id=SID, turn_id="t3", data=s.InputTextData(text="Hi"), ts=10),
        s.ResponseStarted(session_id=SID, turn_id="t3", ts=12),
        s.ResponseTextDelta(session_id=SID, turn_id="t3", data=s.TextDeltaData(delta="He"),
                            ts=50),
        s.ResponseCancelled(session_id=SID, turn_id="t3", ts=70,
                            data=s.ResponseCancelledData(reason="barge_in")),
    ]
    trace = turn_trace(SID, "t3", events)
    assert trace is not None and trace.span("stt") is None
    assert (trace.root.start_ms, trace.root.end_ms) == (10, 70)
    assert trace.root.attributes["voxline.status"] == "cancelled"
    assert trace.root.events == (("response.cancelled", 70, {"voxline.reason": "barge_in"}),)
    assert turn_trace(SID, "nope", events) is None


def test_otlp_json_carries_every_span_with_its_ids_and_nanoseconds() -> None:
    trace = turn_trace(SID, "t1", _voice_turn())
    assert trace is not None
    body = otlp_json([trace])
    [resource] = body["resourceSpans"]
    assert resource["resource"]["attributes"] == [
        {"key": "service.name", "value": {"stringValue": "voxline"}}]
    spans = resource["scopeSpans"][0]["spans"]
    assert len(spans) == len(trace.spans)
    root = spans[0]
    assert root["traceId"] == trace.trace_id and "parentSpanId" not in root
    assert root["startTimeUnixNano"] == str(1_000_000 * 1_000_000)
    assert {"key": "voxline.first_audio_ms", "value": {"intValue": "600"}} in root["attributes"]
    assert all(sp["parentSpanId"] == root["spanId"] for sp in spans[1:])
    llm = next(sp for sp in spans if sp["name"] == "llm")
    assert llm["events"][0]["name"] == "first_token"


def test_an_adopted_preemptive_reply_shows_its_head_start() -> None:
    events = [e.model_copy(update={"data": s.ResponseStartedData(prepared_ms=300)})
              if isinstance(e, s.ResponseStarted) else e for e in _voice_turn()]
    trace = turn_trace(SID, "t1", events)
    assert trace is not None
    started = next(e.ts for e in events if e.type == "response.started")
    speculation = trace.span("speculation")
    assert speculation is not None and speculation.parent_id == trace.root.span_id
    assert (speculation.start_ms, speculation.end_ms) == (started - 300, started)
    assert speculation.attributes == {"voxline.speculation": "adopted"}
    assert turn_trace(SID, "t1", _voice_turn()).span("speculation") is None  # type: ignore[union-attr]
