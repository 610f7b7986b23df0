"""Per-turn metrics: stage latencies from event timestamps, recorded once per turn."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry, generate_latest
from redis.asyncio import Redis

import schemas as s
from pipeline.log import Delivery, EventLog
from pipeline.meters import FeedGroupLag, GatewayMeters, ReplicaCollector
from pipeline.tracing import turn_trace
from pipeline.workers import (
    METRICS_FEED_TYPES,
    STAGES,
    MetricsConsumer,
    TurnMetrics,
    prometheus_endpoint,
    scan_session,
    turn_metrics,
    vad_tail_ms,
)

ROOT = Path(__file__).resolve().parents[3]
SESSION = "s1"
AUDIO = bytes(960)  # 20 ms of PCM16 at 24 kHz


# ---- scripted events --------------------------------------------------------------------


def voice_turn(turn: str, t0: int, *, started: bool = True) -> list[s.EventBase]:
    """A voice turn whose stages are known: speech from audio 500 ms to 2000 ms, the
    decision 2100 ms after the onset was confirmed; then 200/200/150/150 ms stages."""
    sid = SESSION
    events: list[s.EventBase] = []
    if started:
        events.append(
            s.SpeechStarted(session_id=sid, ts=t0, data=s.SpeechBoundaryData(audio_ms=500))
        )
    events += [
        s.SpeechStopped(session_id=sid, turn_id=turn, ts=t0 + 2100,
                        data=s.SpeechStoppedData(audio_ms=2000)),
        s.InputAudio(session_id=sid, turn_id=turn, ts=t0 + 2100,
                     data=s.InputAudioData(sample_rate=16000, duration_ms=2000, audio=AUDIO)),
        s.TranscriptFinal(session_id=sid, turn_id=turn, ts=t0 + 2300,
                          data=s.TranscriptData(text="What is the capital of France?")),
        s.ResponseStarted(session_id=sid, turn_id=turn, ts=t0 + 2310),
        s.ResponseTextDelta(session_id=sid, turn_id=turn, ts=t0 + 2500,
                            data=s.TextDeltaData(delta="Paris is")),
        s.ResponseTextDelta(session_id=sid, turn_id=turn, ts=t0 + 2520,
                            data=s.TextDeltaData(delta=" the capital.")),
        s.ResponseSentence(session_id=sid, turn_id=turn, ts=t0 + 2650,
                           data=s.SentenceData(index=0, text="Paris is the capital.")),
        *[
            s.ResponseAudioChunk(
                session_id=sid, turn_id=turn, ts=t0 + 2800 + 20 * i,
                data=s.AudioChunkData(sample_rate=24000, sentence_index=0, chunk_index=i,
                                      audio=AUDIO),
            )
            for i in range(3)
        ],
        s.ResponseAudioDone(session_id=sid, turn_id=turn, ts=t0 + 3400,
                            data=s.AudioDoneData(sentence_count=1, chunk_count=3)),
        s.ResponseDone(session_id=sid, turn_id=turn, ts=t0 + 3500,
                       data=s.ResponseDoneData(text="Paris is the capital.")),
    ]  # fmt: skip
    return events


VOICE_STAGES = {
    "vad_tail": 2100 - (2000 - 500) + 250,  # 850: wall gap - audio gap + min_speech_ms
    "stt": 200.0,
    "llm_first_token": 200.0,
    "first_piece_cut": 150.0,
    "tts_first_chunk": 150.0,
    "time_to_first_audio": 700.0,
    "voice_to_voice": 850.0 + 700.0,
    "response_done": 1400.0,
}


def text_turn(turn: str, t0: int, *, end: str = "done") -> list[s.EventBase]:
    sid = SESSION
    events: list[s.EventBase] = [
        s.InputText(session_id=sid, turn_id=turn, ts=t0, data=s.InputTextData(text="Hi")),
        s.ResponseStarted(session_id=sid, turn_id=turn, ts=t0 + 5,
                          data=s.ResponseStartedData(mode="sequential")),
        s.ResponseTextDelta(session_id=sid, turn_id=turn, ts=t0 + 90,
                            data=s.TextDeltaData(delta="Hello there, how are you?")),
        s.ResponseSentence(session_id=sid, turn_id=turn, ts=t0 + 130,
                           data=s.SentenceData(index=0, text="Hello there, how are you?")),
    ]  # fmt: skip
    if end == "done":
        events += [
            s.ResponseAudioChunk(session_id=sid, turn_id=turn, ts=t0 + 400,
                                 data=s.AudioChunkData(sample_rate=24000, sentence_index=0,
                                                       chunk_index=0, audio=AUDIO)),
            s.ResponseDone(session_id=sid, turn_id=turn, ts=t0 + 600,
                           data=s.ResponseDoneData(text="Hello there, how are you?")),
        ]  # fmt: skip
    elif end == "cancelled":
        events.append(
            s.ResponseCancelled(
                session_id=sid,
                turn_id=turn,
                ts=t0 + 200,
                data=s.ResponseCancelledData(reason="barge_in", text_sent="Hello there"),
            )
        )
    return events


def stamp(events: list[s.EventBase]) -> list[s.Event]:
    return [e.model_copy(update={"id": f"{i + 1}-0"}) for i, e in enumerate(events)]


def error(turn: str | None, ts: int, code: s.ErrorCode, stage: str) -> s.ErrorEvent:
    return s.ErrorEvent(
        session_id=SESSION,
        turn_id=turn,
        ts=ts,
        data=s.ErrorPayload(code=code, message="boom", stage=stage),
    )


# ---- reading what was recorded ------------------------------------------------------------


@pytest.fixture
def redis_url(both_redis_urls: str) -> str:
    """The consumer on a standalone Redis and on the cluster (feeds per partition there)."""
    return both_redis_urls


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def metrics(reader: InMemoryMetricReader) -> Iterator[TurnMetrics]:
    provider = MeterProvider(metric_readers=[reader])
    yield TurnMetrics(provider)
    provider.shutdown()


def points(reader: InMemoryMetricReader, name: str) -> dict[tuple[tuple[str, Any], ...], Any]:
    """Data points of metric ``name`` by their sorted attributes."""
    data = reader.get_metrics_data()
    found: dict[tuple[tuple[str, Any], ...], Any] = {}
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        found[tuple(sorted(point.attributes.items()))] = point
    return found


def counts(reader: InMemoryMetricReader, name: str, key: str) -> dict[str, int]:
    totals: dict[str, int] = {}
    for attrs, point in points(reader, name).items():
        label = dict(attrs)[key]
        totals[label] = totals.get(label, 0) + int(point.value)
    return totals


def stage_points(reader: InMemoryMetricReader) -> dict[str, tuple[int, float]]:
    """stage → (count, sum) over every mode and source."""
    out: dict[str, tuple[int, float]] = {}
    for attrs, point in points(reader, "voxline.turn.stage.duration").items():
        stage = dict(attrs)["stage"]
        count, total = out.get(stage, (0, 0.0))
        out[stage] = (count + point.count, total + point.sum)
    return out


# ---- measuring ----------------------------------------------------------------------------


def test_voice_turn_stages_are_the_timestamps_differences() -> None:
    events = stamp([*voice_turn("t1", 10_000)])
    turn = turn_metrics(events, "t1")
    assert turn.stages == VOICE_STAGES
    assert list(turn.stages) == list(VOICE_STAGES)  # pipeline order
    assert (turn.status, turn.source, turn.mode) == ("completed", "audio", "streaming")
    parts = ("stt", "llm_first_token", "first_piece_cut", "tts_first_chunk")
    assert sum(turn.stages[p] for p in parts) == turn.stages["time_to_first_audio"]
    assert (
        turn.stages["vad_tail"] + sum(turn.stages[p] for p in parts)
        == turn.stages["voice_to_voice"]
    )


def test_recorded_histograms_hold_the_scripted_turn(
    metrics: TurnMetrics, reader: InMemoryMetricReader
) -> None:
    metrics.record_turn(turn_metrics(stamp(voice_turn("t1", 10_000)), "t1"))
    assert stage_points(reader) == {name: (1, ms) for name, ms in VOICE_STAGES.items()}
    attrs = dict(next(iter(points(reader, "voxline.turn.stage.duration"))))
    assert attrs["mode"] == "streaming" and attrs["source"] == "audio"
    assert counts(reader, "voxline.turns", "status") == {"completed": 1}
    # the first audio's parts: one point each, summing to the time to first audio
    parts = {dict(a)["part"]: p.sum for a, p in
             points(reader, "voxline.turn.first_audio_part.duration").items()}
    assert set(parts) == {"stt", "handoff", "llm_first_token", "first_piece",
                          "tts_first_chunk"}
    assert sum(parts.values()) == VOICE_STAGES["time_to_first_audio"]
    assert not points(reader, "voxline.speculations.adopted")  # not a preemptive reply


def test_each_latency_keeps_its_turns_trace_as_exemplar(
    metrics: TurnMetrics, reader: InMemoryMetricReader
) -> None:
    events = stamp(voice_turn("t1", 10_000))
    metrics.record_turn(turn_metrics(events, "t1"))
    traced = turn_trace(SESSION, "t1", events)
    assert traced is not None
    data = reader.get_metrics_data()  # once: a collection hands the exemplars over
    assert data is not None
    histograms = [m for rm in data.resource_metrics for sm in rm.scope_metrics
                  for m in sm.metrics if m.name in ("voxline.turn.stage.duration",
                                                    "voxline.turn.first_audio_part.duration")]
    assert len(histograms) == 2
    for point in (p for m in histograms for p in m.data.data_points):
        [exemplar] = point.exemplars
        assert format(exemplar.trace_id, "032x") == traced.trace_id
        assert format(exemplar.span_id, "016x") == traced.root.span_id
        assert exemplar.value == point.sum


def test_text_turn_starts_at_the_text_and_ignores_later_narration() -> None:
    events = text_turn("t1", 1000)
    narration = s.ResponseAudioChunk(
        session_id=SESSION,
        turn_id="t2",
        ts=9000,
        data=s.AudioChunkData(sample_rate=24000, sentence_index=0, chunk_index=0, audio=AUDIO),
    )
    silent = [
        s.InputText(session_id=SESSION, turn_id="t2", ts=5000, data=s.InputTextData(text="x")),
        s.ResponseStarted(session_id=SESSION, turn_id="t2", ts=5001,
                          data=s.ResponseStartedData(mode="text")),
        s.ResponseTextDelta(session_id=SESSION, turn_id="t2", ts=5040,
                            data=s.TextDeltaData(delta="y")),
        s.ResponseDone(session_id=SESSION, turn_id="t2", ts=5100,
                       data=s.ResponseDoneData(text="y")),
        narration,  # auto-play, after the response: not the turn's latency
    ]  # fmt: skip
    scan = scan_session(stamp(events + silent))
    first, second = scan.turns
    assert first.stages == {
        "llm_first_token": 90.0, "first_piece_cut": 40.0, "tts_first_chunk": 270.0,
        "time_to_first_audio": 400.0, "response_done": 600.0,
    }  # fmt: skip
    assert (first.source, first.mode) == ("text", "sequential")
    assert second.stages == {"llm_first_token": 40.0, "response_done": 100.0}
    assert second.mode == "text"


def test_vad_tail_needs_a_real_time_onset() -> None:
    assert vad_tail_ms(stamp(voice_turn("t1", 0)), "t1") == 850.0
    assert vad_tail_ms(stamp(voice_turn("t1", 0)), "t1", min_speech_ms=100) == 700.0
    no_onset = turn_metrics(stamp(voice_turn("t1", 0, started=False)), "t1")
    assert "vad_tail" not in no_onset.stages and "voice_to_voice" not in no_onset.stages
    assert no_onset.stages["time_to_first_audio"] == 700.0
    # audio pushed faster than real time: 1500 ms of speech "took" 100 ms of wall time
    fast = voice_turn("t1", 0)
    fast[1] = fast[1].model_copy(update={"ts": 100})
    assert vad_tail_ms(stamp(fast), "t1") is None
    # an onset belongs to the utterance after it, never to a later one
    two = voice_turn("t1", 0) + voice_turn("t2", 10_000, started=False)
    assert vad_tail_ms(stamp(two), "t2") is None


def test_turn_statuses() -> None:
    sid = SESSION
    stt_failed = [
        *voice_turn("a", 0)[:3],
        error("a", 2200, s.ErrorCode.STT_FAILED, "stt"),
    ]
    empty = [
        *voice_turn("b", 10_000)[1:3],
        s.TranscriptFinal(session_id=sid, turn_id="b", ts=12_200, data=s.TranscriptData(text="")),
    ]
    dangling = text_turn("c", 20_000, end="none")
    before = text_turn("x", -5000, end="cancelled") + stt_failed + empty
    scan = scan_session(stamp(before + dangling))
    status = {t.turn_id: (t.status, t.cancel_reason, t.errors) for t in scan.turns}
    assert status == {
        "x": ("cancelled", "barge_in", ()),
        "a": ("failed", None, ("stt_failed",)),
        "b": ("no_response", None, ()),
        "c": ("open", None, ()),
    }
    assert [t.status for t in scan_session(stamp(dangling), closed=True).turns] == ["abandoned"]
    # an open turn keeps the cursor before its first event (ids are 1-based positions)
    assert scan.resume_after == f"{len(before)}-0"


def test_cursor_keeps_an_utterance_in_progress() -> None:
    onset = s.SpeechStarted(session_id=SESSION, ts=20_000, data=s.SpeechBoundaryData(audio_ms=9000))
    events = [*voice_turn("t1", 0), onset]
    scan = scan_session(stamp(events))
    assert [t.status for t in scan.turns] == ["completed"]
    assert scan.resume_after == f"{len(events) - 1}-0"  # the speech_started is read again
    assert scan_session(stamp(voice_turn("t1", 0))).resume_after == f"{len(voice_turn('t1', 0))}-0"


# ---- the consumer, on a real Redis --------------------------------------------------------


def scripted_session() -> list[list[s.EventBase]]:
    """Batches as the ingress appends them: created; a voice turn; a text turn cancelled
    by the user speaking (whose STT then fails); a bad message; a text turn with a TTS
    error that still completes; closed."""
    sid = SESSION
    settings = s.SessionSettings()
    d_turn = text_turn("d", 40_000)
    d_turn.insert(4, error("d", 40_300, s.ErrorCode.TTS_FAILED, "tts"))
    c_turn = voice_turn("c", 30_000)
    return [
        [s.SessionCreated(session_id=sid, ts=1, data=s.SessionCreatedData(settings=settings))],
        voice_turn("a", 10_000),
        text_turn("b", 20_000, end="none"),
        [*text_turn("b", 20_000, end="cancelled")[-1:], c_turn[0]],  # barge-in, then speech
        [*c_turn[1:3], error("c", 32_200, s.ErrorCode.STT_FAILED, "stt")],
        [error(None, 35_000, s.ErrorCode.INVALID_MESSAGE, "")],
        [s.SpeculationDiscarded(  # a reply prepared during a pause, dropped: no turn
            session_id=sid, ts=35_500,
            data=s.SpeculationDiscardedData(reason="speech_resumed", audio_ms=100))],
        d_turn,
        [s.SessionClosed(session_id=sid, ts=50_000)],
    ]


async def feed_deliveries(redis: Redis, log: EventLog) -> list[Delivery]:
    feed = log.feed_key_for(SESSION)
    return [Delivery(feed, eid.decode(), fields, 1) for eid, fields in await redis.xrange(feed)]


async def handle_read(consumer: MetricsConsumer, block_ms: int) -> int:
    """One read of the consumer's feeds, each delivery handled and acked: how many."""
    deliveries = await consumer.reader.read(block_ms=block_ms)
    for delivery in deliveries:
        await consumer.handle(delivery)
        await consumer.reader.ack(delivery)
    return len(deliveries)


def assert_session_counts(reader: InMemoryMetricReader) -> None:
    assert counts(reader, "voxline.sessions", "event") == {"created": 1, "closed": 1}
    assert counts(reader, "voxline.turns", "status") == {
        "completed": 2, "cancelled": 1, "failed": 1}  # fmt: skip
    assert counts(reader, "voxline.cancellations", "reason") == {"barge_in": 1}
    assert counts(reader, "voxline.errors", "code") == {
        "stt_failed": 1, "invalid_message": 1, "tts_failed": 1}  # fmt: skip
    assert counts(reader, "voxline.speculations.discarded", "reason") == {"speech_resumed": 1}
    stages = stage_points(reader)
    assert stages["time_to_first_audio"] == (2, 700.0 + 400.0)  # turns a and d
    assert stages["voice_to_voice"] == (1, VOICE_STAGES["voice_to_voice"])  # turn a
    assert stages["vad_tail"] == (2, 2 * VOICE_STAGES["vad_tail"])  # a and the failed c
    assert stages["stt"] == (1, 200.0)  # c has no transcript


@pytest.mark.redis
@pytest.mark.parametrize("feed_types", ["default", "metrics"])
async def test_consumer_counts_a_session_once_under_redelivery(
    redis: Redis,
    log_settings: s.EventLogSettings,
    reader: InMemoryMetricReader,
    metrics: TurnMetrics,
    feed_types: str,
) -> None:
    kinds = METRICS_FEED_TYPES if feed_types == "metrics" else None
    log = (
        EventLog(redis, log_settings)
        if kinds is None
        else EventLog(redis, log_settings, feed_types=kinds)
    )
    consumer = MetricsConsumer(log, metrics, consumer="a")
    await consumer.reader.ensure_group("0")
    handled = 0
    for batch in scripted_session():
        await log.append_batch(batch)
        handled += await handle_read(consumer, block_ms=10)
    # a clustered log reads 16 feeds at once, and one read returns what the first feeds to
    # answer brought: the last entries may come in a later read (as the worker's loop does)
    expected = len(await feed_deliveries(redis, log))
    for _ in range(100):
        if handled >= expected:
            break
        handled += await handle_read(consumer, block_ms=100)
    assert handled == expected
    assert_session_counts(reader)

    # every entry delivered again, to this consumer and to a second one, and the cursor
    # lost: the whole log is read again and nothing is recorded twice
    await redis.delete(f"{log_settings.key_prefix}:metrics:{SESSION}:cursor")
    other = MetricsConsumer(log, metrics, consumer="b")
    for delivery in await feed_deliveries(redis, log):
        await consumer.handle(delivery)
        await other.handle(delivery)
    assert_session_counts(reader)


@pytest.mark.redis
async def test_cancellations_and_errors_are_counted_by_the_next_entry(
    redis: Redis, event_log: EventLog, reader: InMemoryMetricReader, metrics: TurnMetrics
) -> None:
    """With the default feed types a cancellation has no feed entry of its own; the
    session's next entry (here ``session.closed``) brings it in."""
    consumer = MetricsConsumer(event_log, metrics, consumer="a")
    await consumer.reader.ensure_group("0")
    await event_log.append_batch(text_turn("b", 20_000, end="cancelled"))
    await event_log.append(error(None, 20_500, s.ErrorCode.INVALID_JSON, ""))
    assert await consumer.reader.read(block_ms=10) == []  # nothing on the feed yet
    await event_log.append(s.SessionClosed(session_id=SESSION, ts=21_000))
    for _ in range(50):  # a cluster's partition feeds answer one by one: read until it came
        deliveries = await consumer.reader.read(block_ms=100)
        for delivery in deliveries:
            await consumer.handle(delivery)
        if deliveries:
            break
    assert counts(reader, "voxline.cancellations", "reason") == {"barge_in": 1}
    assert counts(reader, "voxline.errors", "code") == {"invalid_json": 1}
    assert counts(reader, "voxline.turns", "status") == {"cancelled": 1}


@pytest.mark.redis
async def test_a_dead_consumers_entries_are_taken_over_and_counted_once(
    redis: Redis, key_prefix: str, reader: InMemoryMetricReader, metrics: TurnMetrics
) -> None:
    settings = s.EventLogSettings(key_prefix=key_prefix, claim_idle_ms=50)
    log = EventLog(redis, settings, feed_types=METRICS_FEED_TYPES)
    dying = MetricsConsumer(log, metrics, consumer="dying")
    await dying.reader.ensure_group("0")
    batches = scripted_session()
    for batch in batches[:2]:
        await log.append_batch(batch)
    held: list[Delivery] = []  # read, never acknowledged (read until all came: a
    for _ in range(50):  # cluster's partition feeds answer one by one)
        held += await dying.reader.read(block_ms=100)
        if len(held) >= 3:
            break
    assert len(held) == 3  # created, input.audio, response.done
    await dying.handle(held[0])  # it got as far as one entry, then died
    for batch in batches[2:]:
        await log.append_batch(batch)

    taker = MetricsConsumer(log, metrics, consumer="taker")
    worker = asyncio.create_task(taker.run(block_ms=20))
    try:
        for _ in range(250):
            pending = await redis.xpending(log.feed_key_for(SESSION), "metrics")
            closed = counts(reader, "voxline.sessions", "event").get("closed")
            if pending["pending"] == 0 and closed:
                break
            await asyncio.sleep(0.02)
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    assert pending["pending"] == 0
    for delivery in held:  # the "dead" one wakes up and finishes its work late
        await dying.handle(delivery)
    assert_session_counts(reader)


@pytest.mark.redis
async def test_a_new_group_starts_at_the_end_of_the_feed(
    redis: Redis, event_log: EventLog, metrics: TurnMetrics, reader: InMemoryMetricReader
) -> None:
    await event_log.append_batch(voice_turn("old", 0))
    consumer = MetricsConsumer(event_log, metrics, consumer="a")
    await consumer.reader.ensure_group("$")
    assert await consumer.reader.read(block_ms=10) == []


# ---- the Prometheus endpoint --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_prometheus_endpoint_serves_the_metric_names() -> None:
    port = free_port()
    provider = prometheus_endpoint(port=port)
    try:
        recorder = TurnMetrics(provider)
        recorder.record_turn(turn_metrics(stamp(voice_turn("t1", 0)), "t1"))
        recorder.record_session("created")
        recorder.record_error("stt_failed", "stt")
        cancelled = turn_metrics(stamp(text_turn("t2", 0, end="cancelled")), "t2")
        recorder.record_turn(cancelled)
        preemptive = [e.model_copy(update={"data": s.ResponseStartedData(prepared_ms=200)})
                      if isinstance(e, s.ResponseStarted) else e for e in voice_turn("t3", 0)]
        recorder.record_turn(turn_metrics(stamp(preemptive), "t3"))
        recorder.record_discarded_speculation("speech_resumed")
        body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        provider.shutdown()
    samples = {line.split("{")[0] for line in body.splitlines() if not line.startswith("#")}
    assert {
        "voxline_turn_stage_duration_milliseconds_bucket",
        "voxline_turn_stage_duration_milliseconds_count",
        "voxline_turn_stage_duration_milliseconds_sum",
        "voxline_turn_first_audio_part_duration_milliseconds_bucket",
        "voxline_turn_first_audio_part_duration_milliseconds_sum",
        "voxline_turn_first_audio_part_duration_milliseconds_count",
        "voxline_speculations_adopted_total",
        "voxline_speculations_discarded_total",
        "voxline_turns_total",
        "voxline_sessions_total",
        "voxline_errors_total",
        "voxline_cancellations_total",
    } <= samples
    for label in (
        'stage="voice_to_voice"',
        'le="1000"',
        'status="cancelled"',
        'reason="barge_in"',
        'code="stt_failed"',
        'event="created"',
    ):
        assert label in body, label

    # the Grafana dashboard queries exactly these names, labels and stages, and those a
    # Gateway replica reports (served by the same endpoint: the Metrics deployment's)
    samples |= {line.split("{")[0] for line in _replica_lines() if not line.startswith("#")}
    dashboard = json.loads((ROOT / "cluster" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", ())]
    assert len(exprs) >= 10
    used = {name for e in exprs for name in re.findall(r"voxline_\w+", e)}
    assert used <= samples
    labels = {name for e in exprs for name in re.findall(r"(\w+)=~?\"", e)}
    labels |= {
        n.strip() for e in exprs for g in re.findall(r"by \(([^)]*)\)", e) for n in g.split(",")
    }
    assert labels <= {"le", "stage", "mode", "source", "status", "event", "code", "reason",
                      "part", "kind", "replica", "group"}
    stages = {st for e in exprs for m in re.findall(r'stage=~?"([^"]+)"', e) for st in m.split("|")}
    assert stages and stages <= set(STAGES)


def _replica_lines() -> list[str]:
    """What the endpoint serves of one Gateway replica's report and one feed group."""
    meters = GatewayMeters("gateway-a")
    meters.append_timed(0.001)
    meters.stages.refused("llm")
    collector = ReplicaCollector()
    collector.update([meters.report({"turns": {"in_use": 0, "limit": 1, "refused": 0}})],
                     {"metrics": FeedGroupLag(0, 0)})
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode().splitlines()


def test_a_preemptive_reply_is_counted_adopted_with_its_head_start(
    metrics: TurnMetrics, reader: InMemoryMetricReader
) -> None:
    events = [e.model_copy(update={"data": s.ResponseStartedData(prepared_ms=300)})
              if isinstance(e, s.ResponseStarted) else e for e in voice_turn("t1", 10_000)]
    turn = turn_metrics(stamp(events), "t1")
    assert turn.parts["preemptive_head_start"] == 300
    metrics.record_turn(turn)
    [adopted] = points(reader, "voxline.speculations.adopted").values()
    assert adopted.value == 1
    head = {dict(a)["part"]: p.sum for a, p in
            points(reader, "voxline.turn.first_audio_part.duration").items()}
    assert head["preemptive_head_start"] == 300
