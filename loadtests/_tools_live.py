"""bench_tools' live part: tools in live sessions, on the CPU engines and a real Redis.

* **spoken**: requests spoken by the TTS engine (Piper) and streamed into a live session
  as 20 ms frames paced like a microphone, heard by Silero and Whisper, answered by the
  packaged LLM with the six tools as server tools (``tool_choice: required``). Measured
  from the log's timestamps: end of speech → ``tool.call.started``, the call's output →
  the first audio of the answer after it, end of speech → the first audio of all; the
  tool chosen, its arguments valid. One tool (``get_weather``) is slow
  (:data:`SLOW_S`): weather requests that name it (the model then calls it) measure when
  the filler is heard;
* **crash**: a replica killed around a side effect (:mod:`loadtests._tool_crash`), seeded;
  the side effect must be made once (duplicates, goal 0);
* **barge-in**: a reply cancelled at a seeded moment while its side-effect tool runs,
  under each policy (``cancel``: the call stops, ``finish``: it ends and logs its output);
  the side effect is never made twice and a ``finish`` call's output is logged once.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from typing import Any

from loadtests._scripted import RoundsLLM
from loadtests._tool_crash import run_trial
from pipeline.audio import resample_pcm16
from pipeline.engines import create_engine, schema_problem
from pipeline.log import EventLog, create_redis
from pipeline.session import LiveSession, SessionEngines
from pipeline.tools import CallContext, ServerTool, Toolbox
from schemas import (
    Event,
    EventLogSettings,
    RedisSettings,
    SamplingSettings,
    SessionSettings,
    SynthesisRequest,
    ToolCallDelta,
    ToolFunction,
    ToolSettings,
)
from voxline.demo import with_pauses

RATE = 16000
FRAME = 2 * RATE // 50  # 20 ms
#: the slow tool's time: past the filler's wait, so its requests hear the filler
SLOW_S = 1.5


class BenchTool(ServerTool):
    """One of the benchmark's tools: answers at once (or after ``delay``), deterministic."""

    def __init__(self, spec: dict[str, Any], delay: float = 0.0) -> None:
        self.function = ToolFunction(**spec)
        self.delay = delay
        self.runs: Counter[str] = Counter()  # call id → runs (a side effect's count)
        self.idempotent = True

    async def call(self, arguments: dict[str, Any], context: CallContext) -> str:
        self.runs[context.call_id] += 1
        await asyncio.sleep(self.delay)
        return json.dumps({"done": True, **arguments})


def _first(events: list[Event], kind: str, after: int = 0) -> Event | None:
    return next((e for e in events if e.type == kind and e.ts >= after), None)


async def spoken(redis_url: str, prefix: str, tools: list[dict[str, Any]],
                 requests: list[tuple[str, str]], system: str,
                 choice: str | dict[str, str] = "required") -> list[dict[str, Any]]:
    """Each request spoken into its own live session (see the module docstring), under
    ``choice`` (the filler's requests name the slow tool: the model calls it)."""
    stt = create_engine("stt", "faster-whisper", {"model": "whisper-tiny.en", "cpu_threads": 2})
    tts = create_engine("tts", "piper", {})
    vad = create_engine("vad", "silero", {})
    llm = create_engine("llm", "llama-cpp", {"n_ctx": 2048, "n_threads": 2,
                                             "parallel_sequences": 1})
    for engine in (stt, tts, vad, llm):
        await engine.load()
    redis = create_redis(redis_url, RedisSettings())
    log = EventLog(redis, EventLogSettings(key_prefix=prefix))
    bench_tools = [BenchTool(spec, SLOW_S if spec["name"] == "get_weather" else 0.0)
                   for spec in tools]
    toolbox = Toolbox(ToolSettings(allow=tuple(t["name"] for t in tools)), bench_tools)
    engines = SessionEngines(llm=llm, tts=tts, stt=stt, vad=vad)  # type: ignore[arg-type]
    settings = SessionSettings(
        system_prompt=system, tool_choice=choice, preemptive_turns=False,  # type: ignore[arg-type]
        tools=[{"type": "server", "name": t["name"]} for t in tools],  # type: ignore[misc]
        sampling=SamplingSettings(temperature=0.0, max_tokens=60), output_sample_rate=RATE)
    results = []
    try:
        for number, (text, needed) in enumerate(requests):
            speech = await _speak(tts, text)  # type: ignore[arg-type]
            session_id = f"sess_bench_tools_{number}_{abs(hash(str(choice))) % 1000}"
            session = await LiveSession.open(session_id, log, engines, create=settings,
                                             toolbox=toolbox)
            try:
                await _stream(session, with_pauses(speech, RATE, 0.3, 1.2))
                await asyncio.wait_for(session.wait_response(), 120)
            finally:
                await session.close()
            events = await log.read_all(session_id)
            results.append(_measured(text, needed, events, tools))
            print(f"spoken   {text[:44]:44} -> {results[-1]['called'] or 'words'}"
                  f" call {results[-1]['speech_to_call_ms']} ms")
    finally:
        for engine in (stt, tts, vad, llm):
            await engine.close()
        keys = [k async for k in redis.scan_iter(match=f"{prefix}:*", count=500)]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
    return results


async def _speak(tts: Any, text: str) -> bytes:
    pcm, rate = b"", RATE
    async for chunk in tts.synthesize(SynthesisRequest(text=text)):
        pcm += chunk.audio
        rate = chunk.sample_rate
    return resample_pcm16(pcm, rate, RATE)


async def _stream(session: LiveSession, audio: bytes) -> None:
    started = time.perf_counter()
    for n, offset in enumerate(range(0, len(audio), FRAME)):
        await session.push_audio(audio[offset:offset + FRAME])
        ahead = started + (n + 1) * 0.02 - time.perf_counter()
        if ahead > 0:
            await asyncio.sleep(ahead)


def _measured(text: str, needed: str, events: list[Event],
              tools: list[dict[str, Any]]) -> dict[str, Any]:
    stopped = _first(events, "input.speech_stopped")
    started = _first(events, "tool.call.started")
    ended = next((e for e in events if e.type in ("tool.call.output", "tool.call.failed")), None)
    heard = _first(events, "transcript.final")
    result: dict[str, Any] = {"request": text, "needed": needed, "called": None,
                              "valid": None, "heard": getattr(heard, "data", None)
                              and heard.data.text}  # type: ignore[union-attr]
    if stopped is None:
        return {**result, "speech_to_call_ms": None}
    first_audio = _first(events, "response.audio.chunk", stopped.ts)
    result["speech_to_first_audio_ms"] = None if first_audio is None else (
        first_audio.ts - stopped.ts)
    if started is None:
        return {**result, "speech_to_call_ms": None}
    data: Any = started.data
    schema = next(t["parameters"] for t in tools if t["name"] == data.name)
    result.update(called=data.name, arguments=data.arguments,
                  valid=schema_problem(json.loads(data.arguments), schema) is None,
                  speech_to_call_ms=started.ts - stopped.ts)
    if ended is not None:
        answer = _first(events, "response.audio.chunk", ended.ts)
        result["output_to_answer_audio_ms"] = None if answer is None else answer.ts - ended.ts
    return result


async def crash(redis_url: str, prefix: str, trials: int) -> dict[str, Any]:
    """Seeded replica kills (idempotent booking): side effects made, duplicates."""
    done = [await run_trial(redis_url, f"{prefix}:crash{seed}", seed, idempotent=True)
            for seed in range(trials)]
    return {"trials": len(done), "duplicated_side_effects": sum(t.bookings > 1 for t in done),
            "missing_side_effects": sum(t.bookings < 1 for t in done),
            "run_again": sum(t.runs > 1 for t in done),
            "answered": sum(t.answered for t in done),
            "ended_before_kill": sum(t.ended_before_kill for t in done)}


async def barge_in(redis_url: str, prefix: str, trials: int) -> dict[str, Any]:
    """A reply cancelled while its side-effect tool runs, under each policy."""
    redis = create_redis(redis_url, RedisSettings())
    log = EventLog(redis, EventLogSettings(key_prefix=prefix))
    figures: dict[str, Any] = {}
    try:
        for policy in ("cancel", "finish"):
            tool = BenchTool({"name": "book", "parameters": {"type": "object"}}, delay=0.3)
            tool.on_barge_in = policy  # type: ignore[assignment]
            toolbox = Toolbox(ToolSettings(allow=("book",), filler_after_ms=None), [tool])
            outputs_logged = []
            rng = random.Random(7)
            for n in range(trials):
                call = ToolCallDelta(id=f"call_{policy}_{n}", name="book", arguments="{}")
                llm = RoundsLLM([[call], ["Booked."]])
                session = await LiveSession.open(
                    f"sess_barge_{policy}_{n}", log, SessionEngines(llm=llm),
                    create=SessionSettings(tools=[{"type": "server", "name": "book"}]),  # type: ignore[list-item]
                    toolbox=toolbox)
                await session.submit_text("Book it.")
                await asyncio.sleep(rng.uniform(0, 0.4))
                await session.cancel_response("barge_in")
                await asyncio.sleep(0.5)  # a finishing call ends and logs its output
                await session.close()
                events = await log.read_all(f"sess_barge_{policy}_{n}")
                outputs_logged.append(sum(e.type == "tool.call.output" for e in events))
            figures[policy] = {
                "trials": trials, "duplicated_side_effects": sum(
                    runs > 1 for runs in tool.runs.values()),
                "outputs_logged": outputs_logged.count(1),
                "outputs_logged_twice": sum(count > 1 for count in outputs_logged)}
    finally:
        keys = [k async for k in redis.scan_iter(match=f"{prefix}:*", count=500)]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
    return figures
