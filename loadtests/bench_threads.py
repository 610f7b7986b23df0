"""How many threads each CPU engine should use: wall and CPU time per call at each count.

The CPU profile runs each model stage in a replica of its own, so the stages of one turn
already overlap on the machine's cores; a second thread inside one engine call only pays
where the call's operations are large enough to split. This runs each CPU engine's own
path, the same calls at every thread count of ``--threads``, interleaved call by call so
that the machine's drift falls on all counts alike, and reports per stage and count the
wall time and the CPU time (the process's: every native thread included) of one call:

* ``stt``: faster-whisper tiny.en (``cpu_threads``) on the turn corpus's English turns,
  cut as ``bench_stt_window`` cuts them, as a voice turn is transcribed (its window,
  language known);
* ``llm``: llama.cpp with the packaged Gemma 3 270M (``n_threads``; OpenMP threads wait
  passively, the engine's default) answering the capacity runner's questions with its
  sampling and the sessions' system prompt, as many turns a dialogue as its users take,
  the engine's parallel sequences as served;
* ``tts``: Piper's packaged voice (``intra_op_threads``) speaking such answers.

``--busy N`` keeps N other processes spinning meanwhile (a loaded machine: threads that
wait for each other then also wait for a core). The figures move with whatever else runs
on the machine: run it on an idle one.

    .venv/bin/python -m loadtests.bench_threads                  # 1,2 threads, ~2 minutes
    .venv/bin/python -m loadtests.bench_threads --busy 1

Writes ``reports/bench_threads.json``. ``--smoke``: two calls a stage, one count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from loadtests._report import add_smoke_flag, smoke_reports, write_report

STAGES = ("stt", "llm", "tts")
#: the answers the packaged LLM gives the capacity runner's questions
ANSWERS = ("The capital of France is Paris.", "The capital of Germany is Berlin.",
           "The capital of Italy is Rome.", "The capital of Spain is Madrid.")

Call = Callable[[int], Awaitable[None]]


def _spin(stop: Any) -> None:
    while not stop.is_set():
        pass


@contextlib.contextmanager
def busy(processes: int) -> Iterator[None]:
    """``processes`` other processes spinning on a core each until the block ends."""
    stop = multiprocessing.Event()
    workers = [multiprocessing.Process(target=_spin, args=(stop,), daemon=True)
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    try:
        yield
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=5)


@contextlib.asynccontextmanager
async def loaded(engines: dict[int, Any], call: Callable[[Any], Call],
                 ) -> AsyncIterator[dict[int, Call]]:
    """``engines`` (one per thread count) loaded, as ``call(engine)`` each; closed after."""
    for engine in engines.values():
        await engine.load()
    try:
        yield {t: call(engine) for t, engine in engines.items()}
    finally:
        for engine in engines.values():
            await engine.close()


def stt_calls(threads: list[int], calls: int) -> contextlib.AbstractAsyncContextManager[
        dict[int, Call]]:
    from loadtests._turn_corpus import RATE
    from loadtests.bench_stt_window import corpus
    from pipeline.engines.stt.faster_whisper import FasterWhisperTranscriber
    from schemas import TranscriptionRequest

    requests = [TranscriptionRequest(audio=pcm, sample_rate=RATE, language="en")
                for _, _, _, pcm in corpus([0], "en", calls)]

    def call(engine: FasterWhisperTranscriber) -> Call:
        async def one(i: int) -> None:
            [segment async for segment in engine.transcribe(requests[i % len(requests)])]
        return one

    return loaded({t: FasterWhisperTranscriber(model="whisper-tiny.en", cpu_threads=t)
                   for t in threads}, call)


def llm_calls(threads: list[int], calls: int) -> contextlib.AbstractAsyncContextManager[
        dict[int, Call]]:
    from loadtests.capacity import QUESTIONS, SAMPLING, TURNS_PER_SESSION
    from pipeline.engines.llm.llama_cpp import LlamaCppLanguageModel
    from schemas import ChatMessage, GenerationRequest, SamplingSettings, SessionSettings

    sampling = SamplingSettings.model_validate(SAMPLING)
    system = ChatMessage(role="system", content=SessionSettings().system_prompt)

    def call(engine: LlamaCppLanguageModel) -> Call:
        history: list[ChatMessage] = []

        async def one(i: int) -> None:
            if i % TURNS_PER_SESSION == 0:
                history.clear()  # a new session: its first turn reads the whole prompt
            history.append(ChatMessage(role="user", content=QUESTIONS[i % len(QUESTIONS)]))
            request = GenerationRequest(
                request_id=f"r{i}", sampling=sampling,
                messages=(system, *history))
            reply = "".join([delta async for delta in engine.generate(request)])
            history.append(ChatMessage(role="assistant", content=reply))
        return one

    return loaded({t: LlamaCppLanguageModel(n_threads=t) for t in threads}, call)


def tts_calls(threads: list[int], calls: int) -> contextlib.AbstractAsyncContextManager[
        dict[int, Call]]:
    from pipeline.engines.tts.piper import PiperSynthesizer
    from schemas import SynthesisRequest

    def call(engine: PiperSynthesizer) -> Call:
        async def one(i: int) -> None:
            request = SynthesisRequest(text=ANSWERS[i % len(ANSWERS)])
            [chunk async for chunk in engine.synthesize(request)]
        return one

    return loaded({t: PiperSynthesizer(intra_op_threads=t) for t in threads}, call)


CALLS = {"stt": stt_calls, "llm": llm_calls, "tts": tts_calls}


async def measure(stage: str, threads: list[int], calls: int) -> dict[str, Any]:
    """``calls`` calls at each thread count, interleaved (after one warm-up each)."""
    times: dict[int, list[tuple[float, float]]] = {t: [] for t in threads}
    async with CALLS[stage](threads, calls) as by_threads:
        for call in by_threads.values():
            await call(0)
        for i in range(calls):
            order = threads if i % 2 == 0 else threads[::-1]
            for t in order:
                cpu, wall = time.process_time(), time.perf_counter()
                await by_threads[t](i)
                times[t].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {str(t): {"calls": len(rows),
                     "wall_ms_mean": round(1000 * statistics.fmean(r[0] for r in rows), 1),
                     "wall_ms_p50": round(1000 * statistics.median(r[0] for r in rows), 1),
                     "cpu_ms_mean": round(1000 * statistics.fmean(r[1] for r in rows), 1)}
            for t, rows in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--calls", type=int, default=24, help="per stage and thread count")
    parser.add_argument("--busy", type=int, default=0, metavar="N",
                        help="other processes spinning meanwhile (a loaded machine)")
    parser.add_argument("--report", default="bench_threads")
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        smoke_reports()
        args.threads, args.calls = "1", 2
    threads = [int(t) for t in args.threads.split(",")]
    stages = [s for s in args.stages.split(",") if s]
    unknown = set(stages) - set(STAGES)
    if unknown:
        parser.error(f"unknown stages {sorted(unknown)}; known: {', '.join(STAGES)}")
    figures: dict[str, Any] = {"threads": threads, "calls": args.calls, "busy": args.busy,
                               "stages": {}}
    with busy(args.busy):
        for stage in stages:
            figures["stages"][stage] = rows = asyncio.run(measure(stage, threads, args.calls))
            for t, row in rows.items():
                print(f"{stage:>4} {t} thread(s): {row['wall_ms_mean']:.0f} ms wall, "
                      f"{row['cpu_ms_mean']:.0f} ms CPU a call (p50 wall "
                      f"{row['wall_ms_p50']:.0f} ms)", flush=True)
    print(f"report: {write_report(args.report, figures)}")


if __name__ == "__main__":
    main()
