"""How fast ``voxline evaluate`` goes through logged conversations: sessions evaluated per
minute per core on the CPU profile.

Sessions are logged first, as a live session logs them: each item of the turn-taking
corpus (:mod:`loadtests._turn_corpus`: questions spoken by the packaged voices, with and
without thinking pauses, English) is streamed into a :class:`pipeline.session.LiveSession`
with the real VAD and Whisper tiny.en (its transcript is the logged one) and scripted
replies (no reply competes for the cores). Then :func:`voxline.evaluate_run.run_evaluation`
tries three candidates on them (the same transcriber, Whisper base, and a shorter end of
speech) and the run is timed and its CPU counted: this process and the candidates' own
processes (each candidate runs in one, as ``voxline evaluate`` runs it; ``--in-process``:
all here). Writes ``reports/bench_evaluate.json`` (with the evaluation report itself)::

    .venv/bin/python -m loadtests.bench_evaluate [--sessions 12] [--seed 0] [--in-process]
        [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time
from typing import Any

from loadtests._report import add_smoke_flag, smoke_reports, write_report
from loadtests._spoken_sessions import speak_into_session
from loadtests._turn_corpus import TurnItem, build_corpus
from voxline.redis_server import redis_url_or_server

CANDIDATES = ('tiny={"stt_model": "whisper-tiny.en"}', 'base={"stt_model": "whisper-base"}',
              "quick=end_of_speech_ms=500")
PREFIX = "vxbench-evaluate"


async def log_sessions(url: str, items: list[TurnItem]) -> list[str]:
    """Each item spoken into a live session of its own (real VAD and STT)."""
    from loadtests._scripted import ScriptedLLM, ScriptedTTS
    from pipeline.engines import create_engine
    from pipeline.log import EventLog, create_redis
    from pipeline.session import SessionEngines
    from schemas import EventLogSettings, ResponseDone, SessionSettings

    redis = create_redis(url)
    stt = create_engine("stt", "faster-whisper", {"model": "whisper-tiny.en"})
    vad = create_engine("vad", "silero", {})
    await stt.load()
    await vad.load()
    log = EventLog(redis, EventLogSettings(key_prefix=PREFIX))
    ids = []
    try:
        for item in items:
            session_id = f"bench-eval-{item.id}"
            engines = SessionEngines(llm=ScriptedLLM(["Sure."]), tts=ScriptedTTS(), stt=stt,
                                     vad=vad)  # type: ignore[arg-type]
            create = SessionSettings(turn_detection="silence", end_of_speech_ms=1800,
                                     language=item.language)
            await speak_into_session(log, session_id, item.pcm16, engines, create,
                                     ResponseDone)
            ids.append(session_id)
    finally:
        await stt.close()
        await vad.close()
        await redis.aclose()
    return ids


async def evaluate(url: str, ids: list[str], in_process: bool) -> dict[str, Any]:
    from schemas import EventLogSettings, Settings
    from voxline.candidates import parse_candidate
    from voxline.evaluate_run import run_evaluation

    settings = Settings(redis_url=url, log=EventLogSettings(key_prefix=PREFIX))
    return await run_evaluation(ids, [parse_candidate(c) for c in CANDIDATES], settings,
                                max_sessions=len(ids), in_process=in_process)


def cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have ended (the candidates')."""
    ours = resource.getrusage(resource.RUSAGE_SELF)
    theirs = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ours.ru_utime + ours.ru_stime + theirs.ru_utime + theirs.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=12, help="corpus items to log")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--in-process", action="store_true",
                        help="every candidate in this process (else each in its own)")
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        smoke_reports()
        args.sessions = 1
        args.in_process = True  # tests/voxline/test_evaluate_* run the candidates apart
    items = build_corpus(args.seed, languages=("en",), limit=args.sessions)
    with redis_url_or_server(None) as url:
        ids = asyncio.run(log_sessions(url, items))
        cpu, wall = cpu_seconds(), time.monotonic()
        report = asyncio.run(evaluate(url, ids, args.in_process))
        cpu, wall = cpu_seconds() - cpu, time.monotonic() - wall
    evaluated = len(report["sessions"])
    minutes_per_core = cpu / 60
    figures = {
        "sessions": evaluated, "candidates": len(CANDIDATES),
        "candidates_in": "this process" if args.in_process else "a process each",
        "speech_s": round(sum(item.duration_ms for item in items) / 1000, 1),
        "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "cores": os.cpu_count(),
        "sessions_per_minute_per_core": round(evaluated / minutes_per_core, 2)
        if minutes_per_core else None,
        "evaluation": report,
    }
    print(f"{evaluated} sessions x {len(CANDIDATES)} candidates in {wall:.1f} s "
          f"({cpu:.1f} CPU-s): {figures['sessions_per_minute_per_core']} sessions per minute "
          "per core")
    for name, candidate in report["candidates"].items():
        if candidate.get("error"):
            print(f"  {name:6} failed: {candidate['error']}")
            continue
        words, turns = candidate["transcripts"], candidate["turn_taking"] or {}
        print(f"  {name:6} WER vs logged {words['wer_vs_logged']}, changed "
              f"{words['changed']}/{words['utterances']}, turns {turns.get('turns')}, "
              f"continued {turns.get('continued')}")
    print(f"report: {write_report('bench_evaluate', figures)}")


if __name__ == "__main__":
    main()
