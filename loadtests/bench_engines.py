"""Per-engine figures for the CPU profile: load time, first output, speed, peak memory.

Each engine runs in a process of its own, so its peak RSS is its own. Prints a table and
writes ``reports/bench_engines.json``.

    python -m loadtests.bench_engines [--only stt-base,llm,...] [--repeats 3] [--smoke]

Engines: stt-base and stt-tiny (faster-whisper; real-time factor on Piper speech), vad
(Silero; µs per 32 ms frame), llm (llama.cpp + Gemma 3 270M; time to first token and
tokens/s), tts-piper and tts-espeak (first chunk of a sentence; real-time factor).
``--smoke`` runs the two quickest (vad, with its Piper speech, and tts-espeak) once each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from loadtests._report import add_smoke_flag, smoke_reports, write_report

ROOT = Path(__file__).resolve().parent.parent

SENTENCE = "The quick brown fox jumps over the lazy dog, and then it runs far away."
QUESTION = "What is the capital of France?"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _speech(text: str, rate: int = 16000) -> bytes:
    """Speech made by the Piper voice, resampled to ``rate``."""
    from pipeline.audio import resample_pcm16
    from pipeline.engines import Synthesizer, create_engine
    from schemas import SynthesisRequest

    tts = create_engine("tts", "piper", {"warmup": False})
    assert isinstance(tts, Synthesizer)
    await tts.load()
    pcm = b"".join([c.audio async for c in tts.synthesize(SynthesisRequest(text=text))])
    await tts.close()
    return resample_pcm16(pcm, tts.sample_rate, rate)


async def bench_stt(model: str, repeats: int) -> dict[str, Any]:
    from pipeline.engines import Transcriber, create_engine
    from schemas import TranscriptionRequest

    audio = await _speech(SENTENCE)
    seconds = len(audio) / 2 / 16000
    start = time.perf_counter()
    stt = create_engine("stt", "faster-whisper", {"model": model, "warmup": False})
    assert isinstance(stt, Transcriber)
    await stt.load()
    load_s = time.perf_counter() - start
    finals, text = [], ""
    for _ in range(repeats):
        start = time.perf_counter()
        segments = [
            s async for s in stt.transcribe(TranscriptionRequest(audio=audio, sample_rate=16000))
        ]
        finals.append(time.perf_counter() - start)
        text = " ".join(s.text.strip() for s in segments)
    await stt.close()
    final = statistics.median(finals)
    return {
        "load_s": round(load_s, 3),
        "first_output_s": round(final, 3),
        "rtf": round(final / seconds, 3),
        "audio_s": round(seconds, 2),
        "heard": text,
    }


async def bench_vad(repeats: int) -> dict[str, Any]:
    from pipeline.engines import create_engine

    audio = await _speech(SENTENCE)
    frames = [audio[i : i + 1024] for i in range(0, len(audio) - 1023, 1024)]
    start = time.perf_counter()
    vad: Any = create_engine("vad", "silero")
    await vad.load()
    load_s = time.perf_counter() - start
    per_frame = []
    for _ in range(repeats):
        stream = vad.stream()
        start = time.perf_counter()
        for frame in frames:
            stream.process(frame)
        per_frame.append((time.perf_counter() - start) / len(frames))
    await vad.close()
    cost = statistics.median(per_frame)
    return {
        "load_s": round(load_s, 3),
        "us_per_frame": round(cost * 1e6, 1),
        "rtf": round(cost / 0.032, 4),
    }


async def bench_llm(repeats: int) -> dict[str, Any]:
    from pipeline.engines import create_engine
    from schemas import ChatMessage, GenerationRequest, SamplingSettings

    start = time.perf_counter()
    llm: Any = create_engine("llm", "llama-cpp", {"n_threads": 2})
    await llm.load()
    load_s = time.perf_counter() - start
    firsts, rates, reply = [], [], ""
    for i in range(repeats):
        request = GenerationRequest(
            request_id=f"bench-{i}",
            messages=(
                ChatMessage(role="system", content="You are a helpful assistant."),
                ChatMessage(role="user", content=f"{QUESTION} Tell me about it."),
            ),
            sampling=SamplingSettings(temperature=0.0, max_tokens=64, seed=1),
        )
        start = time.perf_counter()
        first: float | None = None
        deltas: list[str] = []
        async for delta in llm.generate(request):
            if first is None:
                first = time.perf_counter() - start
            deltas.append(delta)
        total = time.perf_counter() - start
        tokens = llm.last_stats.completion_tokens if llm.last_stats else len(deltas)
        firsts.append(first or total)
        rates.append(tokens / max(total - (first or 0), 1e-9))
        reply = "".join(deltas)
    await llm.close()
    return {
        "load_s": round(load_s, 3),
        "first_output_s": round(statistics.median(firsts), 3),
        "first_output_cold_s": round(firsts[0], 3),
        "tokens_per_s": round(statistics.median(rates), 1),
        "reply": reply[:120],
    }


async def bench_tts(name: str, repeats: int) -> dict[str, Any]:
    from pipeline.engines import Synthesizer, create_engine
    from schemas import SynthesisRequest

    start = time.perf_counter()
    tts = create_engine("tts", name)
    assert isinstance(tts, Synthesizer)
    await tts.load()
    load_s = time.perf_counter() - start
    firsts, rtfs = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        first: float | None = None
        seconds = 0.0
        async for chunk in tts.synthesize(SynthesisRequest(text=SENTENCE, language="en")):
            if first is None:
                first = time.perf_counter() - start
            seconds += chunk.duration_s
        total = time.perf_counter() - start
        firsts.append(first or total)
        rtfs.append(total / max(seconds, 1e-9))
    await tts.close()
    return {
        "load_s": round(load_s, 3),
        "first_output_s": round(statistics.median(firsts), 3),
        "rtf": round(statistics.median(rtfs), 3),
    }


BENCHES: dict[str, Callable[[int], Awaitable[dict[str, Any]]]] = {
    "stt-base": lambda r: bench_stt("whisper-base", r),
    "stt-tiny": lambda r: bench_stt("whisper-tiny.en", r),
    "vad": bench_vad,
    "llm": bench_llm,
    "tts-piper": lambda r: bench_tts("piper", r),
    "tts-espeak": lambda r: bench_tts("espeak", r),
}


def run_one(name: str, repeats: int) -> None:
    figures = asyncio.run(BENCHES[name](repeats))
    figures["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print(json.dumps(figures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(BENCHES), help="comma-separated engines")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        smoke_reports()
        args.only, args.repeats = "vad,tts-espeak", 1
    if args.one:
        run_one(args.one, args.repeats)
        return
    results: dict[str, Any] = {}
    failed: list[str] = []
    for name in args.only.split(","):
        proc = subprocess.run(
            [sys.executable, "-m", "loadtests.bench_engines", "--one", name,
             "--repeats", str(args.repeats)],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(
                p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)},
        )
        if proc.returncode != 0:
            results[name] = {"error": proc.stderr.strip().splitlines()[-1:]}
            failed.append(name)
        else:
            results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{name:11} {results[name]}", flush=True)
    print(f"report: {write_report('bench_engines', results)}")
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
