"""The turn orchestrator's own cost, on scripted engines (loadtests/_scripted.py).

Prints and writes ``reports/bench_pipeline.json``:

* **cost per token and per piece** with instant engines (no ``await`` inside them): a turn's
  CPU time (``process_time``, so that other processes on a busy machine do not count) over
  its tokens, in text mode (LLM → deltas → sentence buffer) and in streaming mode (plus one
  synthesis of two chunks per piece); the sentence buffer's own share is measured apart.
  Goal: < 50 µs per token.
* **piece → TTS call**: from the LLM handing over the token that completes a piece (the one
  whose ``push`` returns it; the end of the stream for the last piece) to the start of that
  piece's synthesis; p50/p95 with an instant LLM and with a 2000 tokens/s LLM. Goal: < 1 ms.
* **cancel → engines**: from ``CancelToken.cancel()`` (at a random moment of a turn) to the
  last engine stream seeing ``CancelledError``/``aclose()``, and to ``response.cancelled``;
  the same for cancelling the consumer's task and for its ``aclose()``. Goal: p95 ≤ 50 ms.
* **machine noise**: how much of half a second a busy loop loses to preemption; the
  latencies above are wall-clock, so on a loaded machine their p95 shows the scheduler.
* **TTFA streaming against sequential** on simulated engines (LLM 2 ms a token, TTS 30 ms to
  its first chunk): what streaming buys, same engines, same pieces.

    .venv/bin/python -m loadtests.bench_pipeline [--turns 200] [--cancels 200] [--smoke]

In-process and bounded (about 10-20 s); it needs no server and no model. The pieces are cut
with the turn's own sentence buffer settings (``ReplyConfig().sentences``), so the figures
follow the first-piece rule the live turn uses.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import time
from dataclasses import replace
from typing import Any

from loadtests._report import add_smoke_flag, percentiles, smoke_reports, write_report
from loadtests._scripted import ScriptedLLM, ScriptedTTS, StreamRecord, tokenize
from pipeline.reply import (
    CancelToken,
    ReplyConfig,
    ReplyOrchestrator,
    SentenceBuffer,
    SentenceBufferConfig,
)
from schemas import ChatMessage, GenerationRequest, SessionSettings

REPLY = " ".join(
    [
        "Sure, here is a short overview of the weather for the coming days.",
        "Today stays mild in Berlin, with a light breeze from the west and a few clouds.",
        "Tomorrow brings some rain in the morning, but the afternoon should be sunny.",
        "On Sunday it gets warmer again, up to twenty-two degrees, e.g. good for a walk.",
        "Take an umbrella if you go out early, just in case the showers last longer.",
        "Dr. Meyer from the weather service expects a dry week after that.",
        "Have a nice weekend, and enjoy the long evenings while they last!",
    ]
    * 3
)
TOKENS = tokenize(REPLY)
SETTINGS = SessionSettings()
REQUEST = GenerationRequest(request_id="bench", messages=(ChatMessage(role="user", content="?"),))


def turn_sentences() -> SentenceBufferConfig:
    """The sentence buffer's settings as a turn on SETTINGS builds them (the orchestrator's)."""
    return replace(ReplyConfig().sentences, language=SETTINGS.language,
                   min_sentence_chars=SETTINGS.min_sentence_chars)


def cut_points(tokens: list[str]) -> list[int]:
    """For each piece, the index of the token whose push returned it (len = end of stream)."""
    buffer = SentenceBuffer(turn_sentences())
    points = [i for i, t in enumerate(tokens) for p in buffer.push(t) if p.strip()]
    return points + [len(tokens) for p in buffer.flush() if p.strip()]


async def drain(orchestrator: ReplyOrchestrator, cancel: CancelToken | None = None) -> int:
    count = 0
    async for _ in orchestrator.run(
        session_id="bench", turn_id="t", request=REQUEST, settings=SETTINGS, cancel=cancel
    ):
        count += 1
    return count


def us(seconds: float) -> float:
    return round(seconds * 1e6, 2)


def ms_figures(values: list[float]) -> dict[str, float]:
    return {k: round(v * 1e3, 3) for k, v in percentiles(values).items()}


# ---- cost per token and per piece ------------------------------------------------------------


async def cost(turns: int) -> dict[str, Any]:
    pieces = len(cut_points(TOKENS))

    def buffer_only() -> None:
        buffer = SentenceBuffer(turn_sentences())
        for token in TOKENS:
            buffer.push(token)
        buffer.flush()

    async def timed(make: Any) -> float:
        times = []
        for _ in range(turns):
            orchestrator = make()
            start = time.process_time()
            await drain(orchestrator)
            times.append(time.process_time() - start)
        return statistics.median(times)

    buffer_times = []
    for _ in range(turns):
        start = time.process_time()
        buffer_only()
        buffer_times.append(time.process_time() - start)
    buffer_turn = statistics.median(buffer_times)

    text_turn = await timed(lambda: ReplyOrchestrator(ScriptedLLM(TOKENS), None))
    per_token_text = await timed(
        lambda: ReplyOrchestrator(ScriptedLLM(TOKENS), None, ReplyConfig(delta_coalesce_ms=0))
    )
    streaming_turn = await timed(
        lambda: ReplyOrchestrator(ScriptedLLM(TOKENS), ScriptedTTS(chunks_per_piece=2))
    )
    n = len(TOKENS)
    return {
        "tokens_per_turn": n,
        "pieces_per_turn": pieces,
        "turn_text_mode_ms": round(text_turn * 1e3, 3),
        "turn_streaming_ms": round(streaming_turn * 1e3, 3),
        "per_token_us_text_mode": us(text_turn / n),
        "per_token_us_text_mode_every_token_an_event": us(per_token_text / n),
        "per_token_us_streaming": us(streaming_turn / n),
        "per_token_us_sentence_buffer_alone": us(buffer_turn / n),
        "per_token_us_orchestration_only": us((text_turn - buffer_turn) / n),
        "per_piece_us_tts_path": us((streaming_turn - text_turn) / pieces),
    }


# ---- piece cut → TTS call --------------------------------------------------------------------


async def to_tts_call(turns: int, token_delay: float) -> dict[str, float]:
    points = cut_points(TOKENS)
    latencies: list[float] = []
    for _ in range(turns):
        llm, tts = ScriptedLLM(TOKENS, delay=token_delay), ScriptedTTS(chunks_per_piece=1)
        await drain(ReplyOrchestrator(llm, tts, ReplyConfig(max_pending_pieces=len(points) + 1)))
        ended = llm.records[0].ended_at
        if ended is None or len(tts.call_times) != len(points):
            raise RuntimeError(f"the turn synthesized {len(tts.call_times)} pieces, the "
                               f"benchmark's buffer cut {len(points)}: their settings differ")
        for k, point in enumerate(points):
            handed_over = llm.yield_times[point] if point < len(TOKENS) else ended
            latencies.append(tts.call_times[k] - handed_over)
    return ms_figures(latencies)


# ---- cancel → engines ------------------------------------------------------------------------


def last_seen(records: list[StreamRecord]) -> float | None:
    ends = [r.ended_at for r in records if r.interrupted and r.ended_at is not None]
    return max(ends) if ends else None


async def cancel_latency(trials: int, via: str) -> dict[str, Any]:
    """``token`` and ``task``: cancel()/task.cancel() from a timer at a random moment;
    ``aclose``: the consumer closes the stream at the first event after that moment."""
    rng = random.Random(7)
    loop = asyncio.get_running_loop()
    to_engines: list[float] = []
    to_event: list[float] = []
    for _ in range(trials):
        llm = ScriptedLLM(TOKENS, delay=0.0005)
        tts = ScriptedTTS(chunks_per_piece=4, delay=0.002)
        token = CancelToken()
        run = ReplyOrchestrator(llm, tts).run(
            session_id="bench", turn_id="t", request=REQUEST, settings=SETTINGS, cancel=token
        )
        at = rng.uniform(0.002, 0.04)
        marks: dict[str, float] = {}

        async def consume(
            run: Any = run,
            at: float = at,
            marks: dict[str, float] = marks,
        ) -> None:
            start = time.perf_counter()
            async for event in run:
                if event.type == "response.cancelled":
                    marks["event"] = time.perf_counter()
                elif via == "aclose" and time.perf_counter() - start >= at:
                    marks["cancel"] = time.perf_counter()
                    await run.aclose()
                    return

        task = asyncio.create_task(consume())

        def fire(
            task: asyncio.Task[None] = task,
            token: CancelToken = token,
            marks: dict[str, float] = marks,
        ) -> None:
            if task.done():
                return
            marks["cancel"] = time.perf_counter()
            if via == "token":
                token.cancel("barge_in")
            else:
                task.cancel()

        if via != "aclose":
            loop.call_later(at, fire)
        await asyncio.wait([task])  # ends cancelled or not; both are fine here
        seen = last_seen(llm.records + tts.records)
        if "cancel" in marks and seen is not None:
            to_engines.append(seen - marks["cancel"])
            if "event" in marks:
                to_event.append(marks["event"] - marks["cancel"])
    return {
        "trials": len(to_engines),
        "to_engines_ms": ms_figures(to_engines),
        "to_cancelled_event_ms": ms_figures(to_event) if to_event else None,
    }


# ---- TTFA streaming vs sequential ------------------------------------------------------------


async def ttfa(runs: int) -> dict[str, Any]:
    tokens = TOKENS[:60]
    figures: dict[str, Any] = {
        "reply_tokens": len(tokens),
        "llm_ms_per_token": 2,
        "tts_ms_to_first_chunk": 30,
    }
    for mode in ("streaming", "sequential"):
        firsts, totals = [], []
        for _ in range(runs):
            llm = ScriptedLLM(tokens, delay=0.002)
            tts = ScriptedTTS(chunks_per_piece=2, delay=lambda _c, k: 0.03 if k == 0 else 0.01)
            start = time.perf_counter()
            first = None
            async for event in ReplyOrchestrator(llm, tts, ReplyConfig(mode=mode)).run(
                session_id="bench", turn_id="t", request=REQUEST, settings=SETTINGS
            ):
                if event.type == "response.audio.chunk" and first is None:
                    first = time.perf_counter() - start
            totals.append(time.perf_counter() - start)
            assert first is not None
            firsts.append(first)
        figures[mode] = {
            "ttfa_ms_p50": round(statistics.median(firsts) * 1e3, 1),
            "turn_ms_p50": round(statistics.median(totals) * 1e3, 1),
        }
    return figures


def machine_noise(seconds: float = 0.5) -> dict[str, float]:
    """Stalls a busy loop sees (gaps over 0.5 ms): other processes taking the CPU."""
    gaps = []
    now = time.perf_counter()
    end = now + seconds
    while now < end:
        last, now = now, time.perf_counter()
        if now - last > 0.0005:
            gaps.append(now - last)
    return {
        "stalls_per_s": round(len(gaps) / seconds, 1),
        "stalled_share": round(sum(gaps) / seconds, 3),
        "longest_stall_ms": round(max(gaps, default=0.0) * 1e3, 2),
    }


async def bench(turns: int, cancels: int, *, ttfa_runs: int = 5,
                noise_s: float = 0.5) -> dict[str, Any]:
    await drain(ReplyOrchestrator(ScriptedLLM(TOKENS), ScriptedTTS()))  # warm up
    gc.collect()
    figures: dict[str, Any] = {"machine_noise": machine_noise(noise_s),
                               "cost": await cost(turns)}
    figures["piece_to_tts_call_instant_llm_ms"] = await to_tts_call(turns // 4, 0.0)
    figures["piece_to_tts_call_2000_tok_s_ms"] = await to_tts_call(max(turns // 40, 3), 0.0005)
    figures["cancel_via_token"] = await cancel_latency(cancels, "token")
    figures["cancel_via_task_cancel"] = await cancel_latency(cancels // 2, "task")
    figures["cancel_via_aclose"] = await cancel_latency(cancels // 2, "aclose")
    figures["ttfa_streaming_vs_sequential"] = await ttfa(ttfa_runs)
    c = figures["cost"]
    figures["goals"] = {
        "per_token_under_50us": c["per_token_us_streaming"] < 50,
        "tts_call_p95_under_1ms": figures["piece_to_tts_call_2000_tok_s_ms"]["p95"] < 1.0
        and figures["piece_to_tts_call_instant_llm_ms"]["p95"] < 1.0,
        "cancel_p95_under_50ms": all(
            figures[f"cancel_via_{via}"]["to_engines_ms"]["p95"] <= 50
            for via in ("token", "task_cancel", "aclose")
        ),
    }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200, help="turns per cost figure")
    parser.add_argument("--cancels", type=int, default=200, help="cancelled turns measured")
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        smoke_reports()
        figures = asyncio.run(bench(8, 6, ttfa_runs=1, noise_s=0.05))
    else:
        figures = asyncio.run(bench(args.turns, args.cancels))

    c = figures["cost"]
    print(f"reply: {c['tokens_per_turn']} tokens, {c['pieces_per_turn']} pieces")
    noise = figures["machine_noise"]
    print(
        f"machine noise: {noise['stalls_per_s']} stalls/s, {noise['stalled_share']:.1%} of the "
        f"time, longest {noise['longest_stall_ms']} ms (wall-clock p95s include it)"
    )
    print(f"CPU per token, streaming:        {c['per_token_us_streaming']:8.2f} µs  (goal < 50)")
    print(f"CPU per token, text mode:        {c['per_token_us_text_mode']:8.2f} µs")
    print(
        f"  every token its own event:     "
        f"{c['per_token_us_text_mode_every_token_an_event']:8.2f} µs"
    )
    print(f"  sentence buffer alone:         {c['per_token_us_sentence_buffer_alone']:8.2f} µs")
    print(f"  orchestration without buffer:  {c['per_token_us_orchestration_only']:8.2f} µs")
    print(f"CPU per piece, TTS path:         {c['per_piece_us_tts_path']:8.2f} µs")
    for key, label in (
        ("piece_to_tts_call_instant_llm_ms", "instant LLM"),
        ("piece_to_tts_call_2000_tok_s_ms", "2000 tok/s LLM"),
    ):
        p = figures[key]
        print(
            f"piece cut → TTS call, {label:14}: p50 {p['p50']:.3f} ms  p95 {p['p95']:.3f} ms"
            "  (goal < 1)"
        )
    for key in ("cancel_via_token", "cancel_via_task_cancel", "cancel_via_aclose"):
        p = figures[key]["to_engines_ms"]
        print(
            f"{key} → engines: p50 {p['p50']:.3f} ms  p95 {p['p95']:.3f} ms  max "
            f"{p['max']:.3f} ms  ({figures[key]['trials']} trials, goal p95 ≤ 50)"
        )
        event = figures[key]["to_cancelled_event_ms"]
        if event:
            print(f"  → response.cancelled: p50 {event['p50']:.3f} ms  p95 {event['p95']:.3f} ms")
    t = figures["ttfa_streaming_vs_sequential"]
    print(
        f"TTFA ({t['reply_tokens']} tokens at {t['llm_ms_per_token']} ms, TTS "
        f"{t['tts_ms_to_first_chunk']} ms): streaming {t['streaming']['ttfa_ms_p50']} ms, "
        f"sequential {t['sequential']['ttfa_ms_p50']} ms"
    )
    print(f"goals: {figures['goals']}")
    print(f"report: {write_report('bench_pipeline', figures)}")


if __name__ == "__main__":
    main()
