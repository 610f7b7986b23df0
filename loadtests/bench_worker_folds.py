"""What a background worker spends per turn as a call grows, with and without its folds.

One session of ``--turns`` voice turns, each as the log holds a real one (its 2 s of input
audio, three 0.5 s chunks of reply audio, the text in deltas), appended turn by turn to a
real Redis; after each turn the narration and re-transcription workers handle its feed
entries, as they would in the Gateway (auto-play and WhisperX off: the case of nearly
every voice session, where each entry is judged and needs nothing). Measured: the
workers' CPU per turn in this process (where the CPU profile runs them: the Gateway's
loop) and Redis's, at a few points of the call, with ``worker_folds`` 0 (each entry folds
the whole log, as before 2026-11-30) and at its default. Prints and writes
``reports/bench_worker_folds.json``.

    python -m loadtests.bench_worker_folds [--turns 200] [--smoke]

Uses its own key prefix and deletes what it wrote; loopback only; bounded in turns.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from typing import Any

import numpy as np

from loadtests._report import add_smoke_flag, forget_prefix, smoke_reports, write_report
from pipeline.log import EventLog, create_redis
from pipeline.workers import NarrationWorker, RefineWorker
from schemas import (
    AudioChunkData,
    AudioDoneData,
    EventBase,
    EventLogSettings,
    InputAudio,
    InputAudioData,
    ResponseAudioChunk,
    ResponseAudioDone,
    ResponseDone,
    ResponseDoneData,
    ResponseSentence,
    ResponseStarted,
    ResponseTextDelta,
    SentenceData,
    SessionCreated,
    SessionCreatedData,
    SessionSettings,
    SpeechBoundaryData,
    SpeechStarted,
    SpeechStopped,
    SpeechStoppedData,
    TextDeltaData,
    TranscriptData,
    TranscriptFinal,
)
from voxline.redis_server import redis_url_or_server

_NOISE = np.random.default_rng(0)
QUESTION = _NOISE.integers(-3000, 3000, 32_000).astype("<i2").tobytes()  # 2 s at 16 kHz
CHUNK = _NOISE.integers(-3000, 3000, 12_000).astype("<i2").tobytes()  # 0.5 s at 24 kHz


def voice_turn(session_id: str, k: int) -> list[EventBase]:
    kw = {"session_id": session_id, "turn_id": f"turn_{k:05d}"}
    reply = "Paris is the capital of France."
    return [
        SpeechStarted(session_id=session_id, data=SpeechBoundaryData(audio_ms=500)),
        SpeechStopped(**kw, data=SpeechStoppedData(audio_ms=2500)),
        InputAudio(**kw, data=InputAudioData(sample_rate=16_000, duration_ms=2000,
                                             audio=QUESTION)),
        TranscriptFinal(**kw, data=TranscriptData(text="What is the capital of France?")),
        ResponseStarted(**kw),
        *[ResponseTextDelta(**kw, data=TextDeltaData(delta=word))
          for word in reply.split(" ")],
        ResponseSentence(**kw, data=SentenceData(index=0, text=reply)),
        *[ResponseAudioChunk(**kw, data=AudioChunkData(
            sample_rate=24_000, sentence_index=0, chunk_index=c, audio=CHUNK))
          for c in range(3)],
        ResponseAudioDone(**kw, data=AudioDoneData(sentence_count=1, chunk_count=3)),
        ResponseDone(**kw, data=ResponseDoneData(text=reply)),
    ]


def redis_cpu_s(info: dict[str, Any]) -> float:
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def one_call(url: str, turns: int, folds: int, marks: list[int]) -> dict[str, Any]:
    """The call's turns appended and handled; CPU per turn at each mark (averaged over
    the turns since the previous mark)."""
    redis = create_redis(url)
    prefix = f"voxbench:{uuid.uuid4().hex[:8]}"
    log = EventLog(redis, EventLogSettings(key_prefix=prefix, maxlen=None,
                                           worker_folds=folds))
    session = "sess_long_call"
    workers = [NarrationWorker(log, None, consumer="bench"),  # type: ignore[arg-type]
               RefineWorker(log, None, consumer="bench")]  # type: ignore[arg-type]
    points: list[dict[str, Any]] = []
    try:
        for worker in workers:
            await worker.reader.ensure_group("$")
        await log.append(SessionCreated(session_id=session, data=SessionCreatedData(
            settings=SessionSettings())))
        ours = theirs = 0.0
        since = 0
        for k in range(1, turns + 1):
            await log.append_batch(voice_turn(session, k))
            before, redis_before = time.process_time(), redis_cpu_s(await redis.info("cpu"))
            for worker in workers:
                for delivery in await worker.reader.read(block_ms=None):
                    await worker.handle(delivery)
                    await worker.reader.ack(delivery)
            ours += time.process_time() - before
            theirs += redis_cpu_s(await redis.info("cpu")) - redis_before
            if k in marks:
                n = k - since
                points.append({"turn": k, "workers_cpu_ms_per_turn": round(1000 * ours / n, 2),
                               "redis_cpu_ms_per_turn": round(1000 * theirs / n, 2)})
                ours = theirs = 0.0
                since = k
        stored = await redis.memory_usage(log.keys.session(session))
    finally:
        await forget_prefix(redis, prefix)
    return {"points": points, "session_bytes": stored}


async def bench(url: str, turns: int) -> dict[str, Any]:
    marks = sorted({m for m in (10, 50, 100, 200, 400, turns) if m <= turns})
    figures: dict[str, Any] = {"turns": turns}
    for name, folds in (("whole_log", 0), ("folds", EventLogSettings().worker_folds)):
        started = time.perf_counter()
        figures[name] = await one_call(url, turns, folds, marks)
        figures[name]["wall_s"] = round(time.perf_counter() - started, 1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=None,
                        help="default: VOXLINE_REDIS_URL, else a server of our own")
    parser.add_argument("--turns", type=int, default=200, help="turns of the call (1..2000)")
    add_smoke_flag(parser)
    args = parser.parse_args()
    if not 1 <= args.turns <= 2000:
        parser.error("--turns must be 1..2000")
    if args.smoke:
        smoke_reports()
        args.turns = 12
    configured = args.redis_url or os.environ.get("VOXLINE_REDIS_URL")
    with redis_url_or_server(configured) as url:
        figures = asyncio.run(bench(url, args.turns))
    print(f"one call of {figures['turns']} voice turns; the narration and re-transcription "
          "workers' CPU per turn (ms), in their process and in Redis")
    print(f"{'at turn':>8} {'whole log':>20} {'folds':>20}")
    for whole, folded in zip(figures["whole_log"]["points"], figures["folds"]["points"],
                             strict=True):
        print(f"{whole['turn']:>8} {whole['workers_cpu_ms_per_turn']:>11} + "
              f"{whole['redis_cpu_ms_per_turn']:<6} {folded['workers_cpu_ms_per_turn']:>11} + "
              f"{folded['redis_cpu_ms_per_turn']:<6}")
    print(f"report: {write_report('bench_worker_folds', figures)}")


if __name__ == "__main__":
    main()
