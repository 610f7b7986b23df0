"""How fast ``voxline evaluate`` goes through logged conversations: sessions evaluated per
minute per core on the CPU profile; and the example report in the docs.

Sessions are logged first, as a live session logs them, each spoken in real time (a 20 ms
frame every 20 ms, so the log measures voice-to-voice) into a
:class:`pipeline.session.LiveSession` with the real VAD, Whisper tiny.en (its transcript is
the logged one), the packaged language model and voice: the turn-taking corpus
(:mod:`loadtests._turn_corpus`: questions spoken by the packaged voices, with and without
thinking pauses, English) and the capacity runner's questions (``loadtests.capacity``,
spoken by the packaged Piper voice, answered with its sampling), and sounds over a reply
(:mod:`loadtests._overlap_corpus`: backchannels and interruptions, each said while the
reply to one of those questions plays). Then
:func:`voxline.evaluate_run.run_evaluation` tries six candidates on them (the same
transcriber, Whisper base, a shorter end of speech, a terser prompt, a brisker voice,
interruptions immediate) and
the run is timed and its CPU counted: this process and the candidates' own processes (each
candidate runs in one, as ``voxline evaluate`` runs it; ``--in-process``: all here).
Writes ``reports/bench_evaluate.json`` (with the evaluation report itself)::

    .venv/bin/python -m loadtests.bench_evaluate [--sessions 12] [--questions 4]
        [--overlaps 4] [--seed 0] [--in-process] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time
from collections.abc import Sequence
from typing import Any

from loadtests._overlap_corpus import OverlapItem, build_overlaps
from loadtests._report import add_smoke_flag, smoke_reports, write_report
from loadtests._spoken_sessions import speak_into_session
from loadtests._turn_corpus import TurnItem, build_corpus
from loadtests.capacity import QUESTIONS, SAMPLING
from voxline.redis_server import redis_url_or_server

CANDIDATES = ('tiny={"stt_model": "whisper-tiny.en"}', 'base={"stt_model": "whisper-base"}',
              "quick=end_of_speech_ms=500",
              'terse={"system_prompt": "Answer in five words or fewer.", "max_tokens": 16}',
              "brisk=speech_speed=1.25", "immediate=interruptions=immediate")
PREFIX = "vxbench-evaluate"
#: after a spoken question: room for the end of speech and the reply to start
TRAILING_SILENCE_S = 1.0
#: an overlap session: after its question's trailing silence, this much more before the
#: listener's sound (the reply is then playing), and this much after it
INTO_REPLY_S, AFTER_OVERLAP_S = 0.6, 1.5


async def log_sessions(url: str, items: list[TurnItem], questions: list[str],
                       overlaps: Sequence[OverlapItem] = ()) -> list[str]:
    """Each corpus item and each question spoken into a live session of its own (real VAD,
    STT, language model and voice), in real time; and each overlap over the reply to a
    question (the capacity runner's, in turn), as a listener says it while the reply plays."""
    from pipeline.engines import LanguageModel, Synthesizer, create_engine
    from pipeline.log import EventLog, create_redis
    from pipeline.session import SessionEngines
    from schemas import EventLogSettings, ResponseDone, SessionSettings, Settings
    from voxline.evaluate import loaded_engine

    redis = create_redis(url)
    server = Settings()
    stt = create_engine("stt", "faster-whisper", {"model": "whisper-tiny.en"})
    vad = create_engine("vad", "silero", {})
    await stt.load()
    await vad.load()
    llm = await loaded_engine("llm", server.llm, LanguageModel)
    tts = await loaded_engine("tts", server.tts, Synthesizer)
    engines = SessionEngines(llm=llm, tts=tts, stt=stt, vad=vad)  # type: ignore[arg-type]
    log = EventLog(redis, EventLogSettings(key_prefix=PREFIX))
    spoken = [(f"bench-eval-{item.id}", item.pcm16,
               SessionSettings(turn_detection="silence", end_of_speech_ms=1800,
                               language=item.language)) for item in items]
    spoken += [(f"bench-eval-q{index}", _spoken(question),
                SessionSettings(turn_detection="silence", sampling=SAMPLING))
               for index, question in enumerate(questions)]
    spoken += [(f"bench-eval-over-{item.id}", _spoken_over(QUESTIONS[index % len(QUESTIONS)],
                                                           item.pcm16),
                SessionSettings(turn_detection="silence", sampling=SAMPLING))
               for index, item in enumerate(overlaps)]
    try:
        for session_id, pcm16, create in spoken:
            await speak_into_session(log, session_id, pcm16, engines, create, ResponseDone,
                                     paced=True)
    finally:
        for engine in (stt, vad, llm, tts):
            await engine.close()
        await redis.aclose()
    return [session_id for session_id, _, _ in spoken]


def _spoken(text: str) -> bytes:
    """``text`` said by the packaged Piper voice, then silence: PCM16 at 16 kHz."""
    import numpy as np

    from loadtests._turn_corpus import RATE, synthesize
    from pipeline.audio import float_to_pcm16

    return float_to_pcm16(np.concatenate([synthesize("piper", "joe", text, 1.0),
                                          np.zeros(int(TRAILING_SILENCE_S * RATE))]))


def _spoken_over(question: str, sound: bytes) -> bytes:
    """``question`` spoken (:func:`_spoken`), then ``sound`` while its reply plays."""
    from loadtests._turn_corpus import RATE

    return (_spoken(question) + bytes(int(INTO_REPLY_S * RATE) * 2) + sound
            + bytes(int(AFTER_OVERLAP_S * RATE) * 2))


async def evaluate(url: str, ids: list[str], candidates: tuple[str, ...],
                   in_process: bool) -> dict[str, Any]:
    from schemas import EventLogSettings, Settings
    from voxline.candidates import parse_candidate
    from voxline.evaluate_run import run_evaluation

    settings = Settings(redis_url=url, log=EventLogSettings(key_prefix=PREFIX))
    return await run_evaluation(ids, [parse_candidate(c) for c in candidates], settings,
                                max_sessions=len(ids), in_process=in_process)


def cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have ended (the candidates')."""
    ours = resource.getrusage(resource.RUSAGE_SELF)
    theirs = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ours.ru_utime + ours.ru_stime + theirs.ru_utime + theirs.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=12, help="corpus items to log")
    parser.add_argument("--questions", type=int, default=4,
                        help="the capacity runner's questions to log (at most 4)")
    parser.add_argument("--overlaps", type=int, default=4,
                        help="the turn-taking corpus's sounds over a reply to log (English)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--in-process", action="store_true",
                        help="every candidate in this process (else each in its own)")
    add_smoke_flag(parser)
    args = parser.parse_args()
    candidates = CANDIDATES
    if args.smoke:
        smoke_reports()
        # one session, a transcript and a turn-taking candidate: the suite tries answer
        # and speech candidates, and the estimate, in tests/voxline
        args.sessions, args.questions, args.overlaps = 1, 0, 0
        candidates = (CANDIDATES[0], CANDIDATES[2])
        args.in_process = True  # tests/voxline/test_evaluate_* run the candidates apart
    items = build_corpus(args.seed, languages=("en",), limit=args.sessions)
    with redis_url_or_server(None) as url:
        overlaps = build_overlaps(args.seed, languages=("en",), limit=args.overlaps) \
            if args.overlaps else []
        ids = asyncio.run(log_sessions(url, items, list(QUESTIONS[:args.questions]), overlaps))
        cpu, wall = cpu_seconds(), time.monotonic()
        report = asyncio.run(evaluate(url, ids, candidates, args.in_process))
        cpu, wall = cpu_seconds() - cpu, time.monotonic() - wall
    evaluated = len(report["sessions"])
    minutes_per_core = cpu / 60
    figures = {
        "sessions": evaluated, "candidates": len(candidates),
        "candidates_in": "this process" if args.in_process else "a process each",
        "questions": args.questions, "overlaps": len(overlaps),
        "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "cores": os.cpu_count(),
        "sessions_per_minute_per_core": round(evaluated / minutes_per_core, 2)
        if minutes_per_core else None,
        "evaluation": report,
    }
    print(f"{evaluated} sessions x {len(candidates)} candidates in {wall:.1f} s "
          f"({cpu:.1f} CPU-s): {figures['sessions_per_minute_per_core']} sessions per minute "
          "per core")
    for name, candidate in report["candidates"].items():
        if candidate.get("error"):
            print(f"  {name:6} failed: {candidate['error']}")
            continue
        words, turns = candidate["transcripts"], candidate["turn_taking"] or {}
        print(f"  {name:6} WER vs logged {words['wer_vs_logged']}, changed "
              f"{words['changed']}/{words['utterances']}, turns {turns.get('turns')}, "
              f"continued {turns.get('continued')}, missed {turns.get('missed')}, "
              f"backchannels / barge-ins {turns.get('backchannels')} / "
              f"{turns.get('barge_ins')}")
    print(f"report: {write_report('bench_evaluate', figures)}")


if __name__ == "__main__":
    main()
