"""The turn orchestrator, driven by scripted engines: order, failures, cancel, bounds, modes.

No assertion here depends on wall-clock time: delays only shape the interleaving, and
every bound is checked on counters the engines or the orchestrator record.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import pytest

from pipeline.reply import (
    CancelToken,
    ReplyConfig,
    ReplyOrchestrator,
    ReplyStats,
    SentenceBuffer,
)
from schemas import (
    AudioChunk,
    ChatMessage,
    ConfigurationError,
    EngineError,
    ErrorCode,
    Event,
    GenerationRequest,
    SessionSettings,
    SynthesisRequest,
)
from tests.support.engines import ScriptedLLM, ScriptedTTS, scripted_audio, tokenize
from tests.support.waiting import until

REPLY = (
    "The weather in Berlin is mild today, with a light breeze from the west. "
    "Tomorrow brings some rain in the morning and sunshine after noon. "
    "On Sunday it gets warmer again, up to twenty two degrees. "
    "Take an umbrella if you go out early, just in case. "
    "Have a nice weekend and enjoy the long evenings"
)
TOKENS = tokenize(REPLY)
SETTINGS = SessionSettings()
REQUEST = GenerationRequest(
    request_id="req-1", messages=(ChatMessage(role="user", content="Weather?"),)
)


def turn_buffer() -> SentenceBuffer:
    """The sentence buffer a turn cuts with under the session's settings."""
    return SentenceBuffer(replace(
        ReplyConfig().sentences, language="en", min_sentence_chars=SETTINGS.min_sentence_chars
    ))


def expected_pieces(tokens: list[str]) -> list[str]:
    """What the turn's sentence buffer makes of ``tokens``."""
    buffer = turn_buffer()
    pieces = [p for t in tokens for p in buffer.push(t)] + buffer.flush()
    return [p for p in pieces if p.strip()]


async def collect(
    orchestrator: ReplyOrchestrator,
    *,
    settings: SessionSettings = SETTINGS,
    cancel: CancelToken | None = None,
    stats: ReplyStats | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> list[Event]:
    events: list[Event] = []

    async def consume() -> None:
        async for event in orchestrator.run(
            session_id="s1", turn_id="t1", request=REQUEST, settings=settings,
            cancel=cancel, stats=stats,
        ):
            events.append(event)
            if on_event is not None:
                on_event(event)

    await asyncio.wait_for(consume(), timeout=10)
    return events


def of_type(events: list[Event], type_: str) -> list[Event]:
    return [e for e in events if e.type == type_]


def audio_of(events: list[Event]) -> list[tuple[int, bytes]]:
    return [(e.data.sentence_index, e.data.audio) for e in of_type(events, "response.audio.chunk")]


def assert_well_formed(events: list[Event]) -> None:
    """The contract shared by every finished response."""
    assert events[0].type == "response.started"
    assert events[-1].type in ("response.done", "response.cancelled")
    assert all(e.session_id == "s1" and e.turn_id == "t1" and e.id is None for e in events)
    chunks = of_type(events, "response.audio.chunk")
    assert [c.data.chunk_index for c in chunks] == list(range(len(chunks)))
    assert [c.data.sentence_index for c in chunks] == sorted(c.data.sentence_index for c in chunks)
    sentences = of_type(events, "response.sentence")
    assert [s.data.index for s in sentences] == list(range(len(sentences)))
    position = {s.data.index: events.index(s) for s in sentences}
    assert all(position[c.data.sentence_index] < events.index(c) for c in chunks)
    # the deltas before each sentence event contain its text
    text = ""
    for event in events:
        if event.type == "response.text.delta":
            text += event.data.delta
        elif event.type == "response.sentence":
            assert event.data.text.strip() in text


# ---- the happy path and order --------------------------------------------------------------


async def test_streaming_turn_emits_the_contract() -> None:
    llm, tts = ScriptedLLM(TOKENS), ScriptedTTS(chunks_per_piece=3)
    stats = ReplyStats()
    events = await collect(ReplyOrchestrator(llm, tts), stats=stats)

    assert_well_formed(events)
    assert events[0].data.mode == "streaming"
    pieces = expected_pieces(TOKENS)
    assert [s.data.text for s in of_type(events, "response.sentence")] == pieces
    assert audio_of(events) == [(i, scripted_audio(p, k)) for i, p in enumerate(pieces)
                                for k in range(3)]
    chunk = of_type(events, "response.audio.chunk")[0]
    assert (chunk.data.format, chunk.data.sample_rate) == ("pcm16", tts.sample_rate)
    assert [e.type for e in events[-2:]] == ["response.audio.done", "response.done"]
    assert events[-2].data.sentence_count == len(pieces)
    assert events[-2].data.chunk_count == 3 * len(pieces)
    assert events[-1].data.text == REPLY
    assert events[-1].data.status == "completed"
    assert "".join(e.data.delta for e in of_type(events, "response.text.delta")) == REPLY
    assert [r.outcome for r in llm.records] == ["completed"]
    assert tts.completed == len(pieces) and not tts.running
    assert stats.tokens == len(TOKENS) and stats.pieces == len(pieces)
    assert stats.chunks == 3 * len(pieces)


async def test_the_first_piece_is_synthesized_a_token_early() -> None:
    # the LLM stalls on the token after the first piece's last word: its synthesis has
    # already started on the text that token cuts
    first = expected_pieces(TOKENS)[0]
    after = next(i for i in range(len(TOKENS)) if "".join(TOKENS[:i]).strip() == first)
    llm, tts = ScriptedLLM(TOKENS, gate_at=after), ScriptedTTS()
    stats = ReplyStats()
    turn = asyncio.create_task(collect(ReplyOrchestrator(llm, tts), stats=stats))
    await until(lambda: bool(tts.records), "the first piece's early synthesis")
    assert [r.label for r in tts.records] == [first]
    llm.gate.set()
    events = await turn
    assert_well_formed(events)
    pieces = [s.data.text for s in of_type(events, "response.sentence")]
    assert pieces == expected_pieces(TOKENS) and pieces[0] == first
    assert [r.label for r in tts.records] == pieces  # each piece synthesized once
    assert (stats.early_pieces, stats.early_pieces_dropped) == (1, 0)


async def test_a_word_that_goes_on_drops_the_guess_and_speaks_the_piece() -> None:
    tokens = ["The", " capital", " of", " Ott", "awa", " is", " a", " quiet", " city", "."]
    llm, tts = ScriptedLLM(tokens, gate_at=4), ScriptedTTS(gated=True)
    stats = ReplyStats()
    turn = asyncio.create_task(collect(ReplyOrchestrator(llm, tts), stats=stats))
    await until(lambda: bool(tts.records), "the guess's synthesis")
    llm.gate.set()
    await until(lambda: tts.records[0].outcome != "running", "the guess dropped")
    assert tts.records[0].label == "The capital of Ott" and tts.records[0].interrupted
    assert tts.gate is not None
    for _ in range(10):
        tts.gate.release()
    events = await turn
    assert_well_formed(events)
    first = of_type(events, "response.sentence")[0]
    assert first.data.text == "The capital of Ottawa"
    assert audio_of(events)[0] == (0, scripted_audio("The capital of Ottawa", 0))
    assert {i for i, _ in audio_of(events)} == {0, 1}
    assert (stats.early_pieces, stats.early_pieces_dropped) == (1, 1)


async def test_sequential_and_text_turns_guess_nothing() -> None:
    for config, settings in ((ReplyConfig(mode="sequential"), SETTINGS),
                             (ReplyConfig(), SETTINGS.model_copy(update={"realtime_tts": False}))):
        stats = ReplyStats()
        await collect(ReplyOrchestrator(ScriptedLLM(TOKENS), ScriptedTTS(), config),
                      settings=settings, stats=stats)
        assert (stats.early_pieces, stats.early_pieces_dropped) == (0, 0)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
async def test_audio_keeps_piece_order_under_random_tts_latencies(seed: int) -> None:
    rng = random.Random(seed)
    latencies: dict[tuple[int, int], float] = {}

    def delay(call: int, chunk: int) -> float:
        return latencies.setdefault((call, chunk), rng.uniform(0, 0.004))

    llm = ScriptedLLM(TOKENS, delay=lambda _i: rng.uniform(0, 0.0005))
    tts = ScriptedTTS(chunks_per_piece=3, delay=delay)
    config = ReplyConfig(tts_concurrency=3, max_pending_pieces=5)
    events = await collect(ReplyOrchestrator(llm, tts, config))

    assert_well_formed(events)
    pieces = expected_pieces(TOKENS)
    assert audio_of(events) == [(i, scripted_audio(p, k)) for i, p in enumerate(pieces)
                                for k in range(3)]
    assert tts.max_active <= 3


# ---- failures ------------------------------------------------------------------------------


async def test_tts_failure_on_one_piece_reports_and_goes_on() -> None:
    llm, tts = ScriptedLLM(TOKENS), ScriptedTTS(chunks_per_piece=2, fail_on={1})
    events = await collect(ReplyOrchestrator(llm, tts))

    assert_well_formed(events)
    pieces = expected_pieces(TOKENS)
    assert len(pieces) >= 3
    [error] = of_type(events, "error")
    assert error.data.code == ErrorCode.TTS_FAILED
    assert (error.data.stage, error.data.recoverable) == ("tts", True)
    assert error.data.details["sentence_index"] == 1
    spoken = [(i, scripted_audio(p, k)) for i, p in enumerate(pieces) if i != 1 for k in range(2)]
    assert audio_of(events) == spoken
    # the error sits between the audio of piece 0 and piece 2
    chunks = of_type(events, "response.audio.chunk")
    assert events.index(chunks[1]) < events.index(error) < events.index(chunks[2])
    assert events[-1].data.status == "completed"


async def test_tts_failure_after_some_chunks_keeps_them_and_a_specific_code() -> None:
    overloaded = EngineError("busy", code=ErrorCode.ENGINE_OVERLOADED, transient=True)
    tts = ScriptedTTS(chunks_per_piece=3, fail_on={0}, fail_after_chunks=2, error=overloaded)
    events = await collect(ReplyOrchestrator(ScriptedLLM(TOKENS), tts))

    [error] = of_type(events, "error")
    assert error.data.code == ErrorCode.ENGINE_OVERLOADED and error.data.transient
    assert error.data.stage == "tts"
    sentence_indexes = [i for i, _ in audio_of(events)]
    assert sentence_indexes[:2] == [0, 0] and sentence_indexes[2] == 1


async def test_a_synthesizer_that_yields_no_audio_fails_only_its_piece() -> None:
    class Broken(ScriptedTTS):
        async def synthesize(self, request: SynthesisRequest) -> AsyncIterator[AudioChunk]:
            if request.text.startswith("Tomorrow"):
                yield "not audio"  # type: ignore[misc]
            async for chunk in super().synthesize(request):
                yield chunk

    events = await collect(ReplyOrchestrator(ScriptedLLM(TOKENS), Broken()))

    [error] = of_type(events, "error")
    assert error.data.code == ErrorCode.TTS_FAILED and error.data.details["sentence_index"] == 2
    assert {i for i, _ in audio_of(events)} == set(range(len(expected_pieces(TOKENS)))) - {2}
    assert events[-1].data.status == "completed"


async def test_llm_failure_mid_stream_ends_the_response_failed() -> None:
    fail_at = 30
    llm, tts = ScriptedLLM(TOKENS, fail_at=fail_at), ScriptedTTS()
    events = await collect(ReplyOrchestrator(llm, tts))

    assert_well_formed(events)
    [error] = of_type(events, "error")
    assert error.data.code == ErrorCode.LLM_FAILED
    assert (error.data.stage, error.data.recoverable) == ("llm", False)
    done = events[-1]
    assert done.type == "response.done" and done.data.status == "failed"
    assert done.data.text == "".join(TOKENS[:fail_at])
    # pieces cut before the failure are still spoken, the unfinished tail is not
    buffer = turn_buffer()
    cut = [p for t in TOKENS[:fail_at] for p in buffer.push(t)]
    assert [s.data.text for s in of_type(events, "response.sentence")] == cut
    assert sorted({i for i, _ in audio_of(events)}) == list(range(len(cut)))
    assert [r.outcome for r in llm.records] == ["failed"]


async def test_a_bug_in_a_stage_ends_the_turn_with_an_internal_error() -> None:
    llm = ScriptedLLM(["Hello", 42, " world"])  # type: ignore[list-item]
    events = await collect(ReplyOrchestrator(llm, ScriptedTTS()))

    assert of_type(events, "error")[-1].data.code == ErrorCode.INTERNAL_ERROR
    assert events[-1].type == "response.done" and events[-1].data.status == "failed"
    assert not llm.running


# ---- cancellation --------------------------------------------------------------------------


def slow_engines() -> tuple[ScriptedLLM, ScriptedTTS]:
    return ScriptedLLM(TOKENS, delay=0.001), ScriptedTTS(chunks_per_piece=4, delay=0.005)


@pytest.mark.parametrize("reason", ["client", "barge_in"])
async def test_cancel_reaches_the_engines_and_nothing_follows(reason: str) -> None:
    llm, tts = slow_engines()
    token = CancelToken()
    running_at_cancelled: list[int] = []

    def on_event(event: Event) -> None:
        if event.type == "response.audio.chunk" and not token.cancelled:
            token.cancel(reason)  # type: ignore[arg-type]
        if event.type == "response.cancelled":
            running_at_cancelled.append(len(llm.running) + len(tts.running))

    events = await collect(ReplyOrchestrator(llm, tts), cancel=token, on_event=on_event)

    assert_well_formed(events)
    last = events[-1]
    assert last.type == "response.cancelled"
    # the event after the one being handled when cancel() ran is the last one
    assert events[-2].type == "response.audio.chunk"
    assert last.data.reason == reason
    sent = events[:-1]
    deltas = of_type(sent, "response.text.delta")
    assert last.data.text_sent == "".join(e.data.delta for e in deltas)
    assert last.data.sentences_sent == len(of_type(sent, "response.sentence"))
    assert last.data.chunks_sent == len(of_type(sent, "response.audio.chunk")) == 1
    assert llm.records[0].interrupted
    assert tts.interrupted, "the synthesis under way saw the cancel"
    assert running_at_cancelled == [0]


async def test_cancel_from_another_task_while_the_consumer_waits() -> None:
    at_gate = asyncio.Event()
    # the LLM stalls before token 5
    llm = ScriptedLLM(TOKENS, gate_at=5, on_token=lambda i: i == 4 and at_gate.set())
    tts = ScriptedTTS(gated=True)
    token = CancelToken()
    events: list[Event] = []

    async def consume() -> None:
        async for event in ReplyOrchestrator(llm, tts).run(
            session_id="s1", turn_id="t1", request=REQUEST, settings=SETTINGS, cancel=token
        ):
            events.append(event)

    task = asyncio.create_task(consume())
    await asyncio.wait_for(at_gate.wait(), timeout=5)
    await asyncio.sleep(0)  # let the LLM reach the gate
    token.cancel("barge_in")
    await asyncio.wait_for(task, timeout=5)

    assert events[-1].type == "response.cancelled" and events[-1].data.reason == "barge_in"
    assert [r.outcome for r in llm.records] == ["cancelled"]  # it was awaiting the gate
    assert not tts.running


async def test_cancel_before_the_start_runs_no_engine() -> None:
    llm, tts = ScriptedLLM(TOKENS), ScriptedTTS()
    token = CancelToken()
    token.cancel("shutdown")
    events = await collect(ReplyOrchestrator(llm, tts), cancel=token)

    assert [e.type for e in events] == ["response.started", "response.cancelled"]
    assert events[-1].data.reason == "shutdown"
    assert not llm.running and not tts.records


async def test_aclose_by_the_consumer_reaches_the_engines() -> None:
    llm, tts = slow_engines()
    run = ReplyOrchestrator(llm, tts).run(
        session_id="s1", turn_id="t1", request=REQUEST, settings=SETTINGS
    )
    assert isinstance(run, AsyncIterator)
    async for event in run:
        if event.type == "response.audio.chunk":
            break
    await run.aclose()  # type: ignore[attr-defined]

    assert llm.records[0].interrupted
    assert tts.interrupted
    assert not llm.running and not tts.running


async def test_cancelling_the_consumer_task_reaches_the_engines() -> None:
    llm, tts = slow_engines()
    started = asyncio.Event()

    async def consume() -> None:
        async for event in ReplyOrchestrator(llm, tts).run(
            session_id="s1", turn_id="t1", request=REQUEST, settings=SETTINGS
        ):
            if event.type == "response.sentence":
                started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert llm.records[0].interrupted
    assert not llm.running and not tts.running


# ---- bounds --------------------------------------------------------------------------------


SENTENCE = tokenize(" Each of these sentences has exactly ten words in it.")
MANY = SENTENCE * 20


async def test_a_stalled_tts_stops_the_llm() -> None:
    """With every synthesis held, the LLM is not read beyond the pending-piece window."""
    llm, tts = ScriptedLLM(MANY), ScriptedTTS(gated=True)
    config = ReplyConfig(tts_concurrency=2, max_pending_pieces=3)
    stats = ReplyStats()
    run = asyncio.create_task(collect(ReplyOrchestrator(llm, tts, config), stats=stats))
    for _ in range(500):  # instant engines: the system is quiescent long before this
        await asyncio.sleep(0)

    assert not run.done()
    yielded = llm.records[0].items
    assert yielded < len(MANY) // 2
    # admitted pieces + the one waiting for admission + the unfinished sentence
    assert yielded <= (config.max_pending_pieces + 2) * len(SENTENCE)
    assert stats.pieces <= config.max_pending_pieces + 1
    assert tts.active == config.tts_concurrency

    assert tts.gate is not None
    for _ in range(len(MANY)):
        tts.gate.release()
    events = await run
    assert events[-1].data.status == "completed"
    assert stats.max_pieces_pending == config.max_pending_pieces


async def test_cancel_while_backpressured_closes_the_waiting_llm_stream() -> None:
    """An LLM held at a yield by backpressure is closed (aclose), the syntheses cancelled."""
    llm, tts = ScriptedLLM(MANY), ScriptedTTS(gated=True)
    token = CancelToken()
    outcomes: list[list[str]] = []

    def on_event(event: Event) -> None:
        if event.type == "response.cancelled":  # the engines let go before it is sent
            outcomes.append([r.outcome for r in llm.records + tts.records])

    run = asyncio.create_task(
        collect(ReplyOrchestrator(llm, tts), cancel=token, on_event=on_event))
    for _ in range(500):
        await asyncio.sleep(0)
    assert not run.done() and llm.records[0].items < len(MANY)
    token.cancel()
    events = await run

    assert events[-1].type == "response.cancelled"
    assert outcomes == [["closed", "cancelled", "cancelled"]]


async def test_a_fast_llm_never_runs_far_ahead_of_a_slow_tts() -> None:
    """1000 tokens/s (~11 ms a sentence) against a TTS of 20 ms a piece: the LLM's lead
    stays within the window (unbounded, it would end ~9 pieces ahead)."""
    leads: list[int] = []
    tts = ScriptedTTS(chunks_per_piece=2, delay=0.01)

    def on_token(i: int) -> None:
        sentences_written = i // len(SENTENCE)
        leads.append(sentences_written - tts.completed)

    llm = ScriptedLLM(MANY, delay=0.001, on_token=on_token)
    config = ReplyConfig(tts_concurrency=1, max_pending_pieces=2)
    stats = ReplyStats()
    events = await collect(ReplyOrchestrator(llm, tts, config), stats=stats)

    assert events[-1].data.status == "completed"
    assert max(leads) <= config.max_pending_pieces + 2
    assert stats.max_pieces_pending <= config.max_pending_pieces
    assert stats.max_tts_active <= config.tts_concurrency
    assert tts.max_active <= config.tts_concurrency


# ---- modes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("with_tts", [True, False])
async def test_text_mode_emits_text_and_sentences_only(with_tts: bool) -> None:
    llm, tts = ScriptedLLM(TOKENS), ScriptedTTS()
    settings = SETTINGS.merged({"realtime_tts": False}) if with_tts else SETTINGS
    orchestrator = ReplyOrchestrator(llm, tts if with_tts else None)
    events = await collect(orchestrator, settings=settings)

    assert_well_formed(events)
    assert events[0].data.mode == "text"
    types = {e.type for e in events}
    assert types == {"response.started", "response.text.delta", "response.sentence",
                     "response.done"}
    assert [s.data.text for s in of_type(events, "response.sentence")] == expected_pieces(TOKENS)
    assert events[-1].data.text == REPLY
    assert not tts.records


async def test_sequential_mode_speaks_the_same_audio_after_the_whole_reply() -> None:
    results = {}
    for mode in ("streaming", "sequential"):
        llm, tts = ScriptedLLM(TOKENS, delay=0.0002), ScriptedTTS(chunks_per_piece=2)
        events = await collect(ReplyOrchestrator(llm, tts, ReplyConfig(mode=mode)))
        assert_well_formed(events)
        assert events[0].data.mode == mode
        results[mode] = (events, llm, tts)

    streaming, sequential = results["streaming"][0], results["sequential"][0]
    assert audio_of(sequential) == audio_of(streaming)
    assert [s.data for s in of_type(sequential, "response.sentence")] == [
        s.data for s in of_type(streaming, "response.sentence")]
    _, llm, tts = results["sequential"]
    assert llm.records[0].ended_at is not None
    assert tts.call_times[0] > llm.records[0].ended_at  # TTS only after the whole reply
    _, llm, tts = results["streaming"]
    assert tts.call_times[0] < llm.records[0].ended_at  # TTS while the LLM writes


async def test_empty_reply_completes() -> None:
    events = await collect(ReplyOrchestrator(ScriptedLLM([]), ScriptedTTS()))
    assert [e.type for e in events] == ["response.started", "response.audio.done",
                                        "response.done"]
    assert events[-1].data.text == "" and events[-1].data.status == "completed"


# ---- delta coalescing ----------------------------------------------------------------------


async def test_deltas_coalesce_up_to_the_token_limit() -> None:
    config = ReplyConfig(delta_coalesce_tokens=4, delta_coalesce_ms=10_000)
    events = await collect(ReplyOrchestrator(ScriptedLLM(TOKENS), None, config))

    deltas = [e.data.delta for e in of_type(events, "response.text.delta")]
    assert "".join(deltas) == REPLY
    assert deltas[0] == TOKENS[0]  # the first delta goes out at once
    assert all(len(tokenize(d)) <= 4 for d in deltas)
    assert len(deltas) < len(TOKENS) // 2


async def test_every_token_alone_without_a_window() -> None:
    config = ReplyConfig(delta_coalesce_ms=0)
    events = await collect(ReplyOrchestrator(ScriptedLLM(TOKENS), None, config))
    assert [e.data.delta for e in of_type(events, "response.text.delta")] == TOKENS


async def test_held_deltas_go_out_when_the_llm_stalls() -> None:
    """The window flushes held text on its own; the LLM resumes only once it did."""
    llm = ScriptedLLM(TOKENS, gate_at=3)
    config = ReplyConfig(delta_coalesce_tokens=100, delta_coalesce_chars=10_000,
                        delta_coalesce_ms=5)

    def on_event(event: Event) -> None:
        if event.type == "response.text.delta" and event.data.delta.endswith(TOKENS[2]):
            llm.gate.set()

    events = await collect(ReplyOrchestrator(llm, None, config), on_event=on_event)
    deltas = [e.data.delta for e in of_type(events, "response.text.delta")]
    assert deltas[:2] == [TOKENS[0], "".join(TOKENS[1:3])]
    assert "".join(deltas) == REPLY


# ---- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["tts_concurrency", "max_pending_pieces", "outbox_size"])
def test_config_refuses_zero_bounds(field: str) -> None:
    with pytest.raises(ConfigurationError):
        ReplyConfig(**{field: 0})  # type: ignore[arg-type]


def test_cancel_token_first_reason_wins_and_callbacks_can_be_removed() -> None:
    token = CancelToken()
    calls: list[str] = []
    remove = token.add_callback(calls.append)
    token.add_callback(lambda r: calls.append("second:" + r))
    remove()
    token.cancel("barge_in")
    token.cancel("client")
    assert token.reason == "barge_in" and calls == ["second:barge_in"]
    token.add_callback(lambda r: calls.append("late:" + r))
    assert calls[-1] == "late:barge_in"
