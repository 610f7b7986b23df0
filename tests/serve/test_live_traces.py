"""A voice turn through the real Serve app is one trace: the Gateway's spans (the turn and
its stages, as ``voxline trace`` rebuilds them from the log: the same ids and times) and a
span of each stage's call under the stage's own service (Transcriber, LanguageModel,
Synthesizer: on the CPU profile the Gateway runs them in its process; where a profile
places them apart, each replica sends its own from the ``traceparent`` the call carries,
tests/deployments/test_deployments.py), each the child of the turn's root span, and, live
only, the Gateway's log appends and socket deliveries, all sent over OTLP to the session's
receiver (``otlp`` in conftest). The Metrics deployment's latency histograms, exported over
OTLP too, carry the turn's trace as their exemplars."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.tracing import TurnTrace, turn_trace
from tests.support.otlp_receiver import OtlpReceiver
from voxline.client import VoxlineClient
from voxline.demo import RATE, voice_turn, with_pauses

pytestmark = [pytest.mark.serve, pytest.mark.models, pytest.mark.redis]

GREEDY = {"temperature": 0.0, "max_tokens": 24, "seed": 1}
STAGES = {"voxline-stt": "stt.transcribe", "voxline-llm": "llm.generate",
          "voxline-tts": "tts.synthesize"}


async def test_a_voice_turn_is_one_trace_across_the_gateway_and_the_stages(
    client: VoxlineClient, otlp: OtlpReceiver, spoken_question: bytes
) -> None:
    audio = with_pauses(spoken_question, RATE)
    result = await voice_turn(client, audio, speech_end_s=0.5, realtime=False,
                              sampling=GREEDY)
    events = result.events
    turn_id = next(e.turn_id for e in events if e.type == "input.speech_stopped")
    assert turn_id is not None
    logged = turn_trace(result.session.session_id, turn_id, events)
    assert logged is not None
    services = set(STAGES) | {"voxline-gateway"}
    for _ in range(300):  # each process sends its batch within its schedule delay
        seen = {r.service for r in otlp.spans_of(logged.trace_id)}
        names = {r.span.name for r in otlp.spans_of(logged.trace_id)}
        # (the reply's end is sent to the client before its deliver span ends: it may
        # come in the Gateway's next batch)
        if services <= seen and "turn" in names and {
                "response.audio.chunk", "response.done"} <= delivered_events(otlp, logged):
            break
        await asyncio.sleep(0.1)
    received = otlp.spans_of(logged.trace_id)
    assert services <= {r.service for r in received}, {r.service for r in received}
    # the stages in the Gateway's process (the CPU profile): one process, four services
    assert len({r.resource.get("process.pid") for r in received}) == 1
    # the Gateway's spans are the log's: ids, parents and times
    gateway = {r.span.span_id.hex(): r.span for r in received if r.service == "voxline-gateway"}
    for span in logged.spans:
        twin = gateway[span.span_id]
        assert (twin.parent_span_id.hex() or None) == span.parent_id
        assert abs(twin.start_time_unix_nano - span.start_ms * 10**6) <= 5 * 10**6
        assert abs(twin.end_time_unix_nano - span.end_ms * 10**6) <= 5 * 10**6
    # each stage's call is a span of its own process, under the turn's root
    for service, name in STAGES.items():
        calls = [r.span for r in received if r.service == service]
        assert calls and all(s.name == name for s in calls), (service, calls)
        assert all(s.parent_span_id.hex() == logged.root.span_id for s in calls)
    # live only: the appends that matter, and the socket's deliveries, under the root
    extra = [r.span for r in received if r.span.name in ("log.append", "deliver")]
    assert {s.name for s in extra} == {"log.append", "deliver"}
    assert all(s.parent_span_id.hex() == logged.root.span_id for s in extra)
    assert {"response.audio.chunk", "response.done"} <= delivered_events(otlp, logged)
    # the turn's measured latencies point back at its trace
    for _ in range(300):  # measured once the turn's feed entry is read; sent every second
        if {e.metric for e in otlp.exemplars_of(logged.trace_id)} >= {
                "voxline.turn.stage.duration", "voxline.turn.first_audio_part.duration"}:
            break
        await asyncio.sleep(0.1)
    exemplars = otlp.exemplars_of(logged.trace_id)
    stages = {e.attributes.get("stage") for e in exemplars
              if e.metric == "voxline.turn.stage.duration"}
    assert {"stt", "time_to_first_audio"} <= stages, exemplars
    assert {e.span_id for e in exemplars} == {logged.root.span_id}


def delivered_events(otlp: OtlpReceiver, logged: TurnTrace) -> set[str]:
    """The event types of the turn's ``deliver`` spans received so far."""
    return {dict((a.key, a.value.string_value) for a in r.span.attributes)["voxline.event"]
            for r in otlp.spans_of(logged.trace_id) if r.span.name == "deliver"}
