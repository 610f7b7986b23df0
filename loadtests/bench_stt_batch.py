"""Transcribing utterances of different sessions one by one or in one batched call.

The CPU STT engine (faster-whisper) can decode several short utterances with one
CTranslate2 ``encode`` and one ``generate``. Whisper pads every utterance to its 30 s
window, so the encoder costs the same per item whatever its length; what batching can
save is the per-call overhead and the decoder's per-step cost (one token per item per
step: small matrix products that gain from more rows). This measures it, on Piper's
speech (2–5 s sentences, 16 kHz), for N = 1, 2, 4, 8 utterances:

* **engine**: the model calls alone, on this thread: N calls of today's streaming path
  (``transcribe`` of faster-whisper) against the engine's batched call, wall and CPU time
  (the process's, CTranslate2's threads included), best and median of ``--repeats``,
  interleaved; and whether the transcripts are the same;
* **split**: the encoder (N windows stacked against one at a time) and the decoder (one
  ``generate`` of N against N of one) apart: where a batch gains, if anywhere;
* **requests**: N concurrent ``transcribe`` requests through the engine's async API, with
  batching off (``batch_max_items=1``, the default) and on (8 items, no wait: only what
  queued behind a running call shares the next), until the last one is done; N = 1 is
  the one-session latency that batching must not worsen.

Writes ``reports/bench_stt_batch.json``. ``--smoke``: tiny.en, N = 1, 2, one repeat.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import time
from collections.abc import Callable
from typing import Any

from loadtests._report import add_smoke_flag, smoke_reports, write_report

RATE = 16000
SENTENCES = (
    "Please send me the report before the meeting.",
    "What time does the train leave tomorrow?",
    "I would like a table for two at eight.",
    "Turn off the lights in the kitchen.",
    "How far is the nearest station from here?",
    "Remind me to call my sister tonight.",
    "The weather is nice today, so we are going for a walk.",
    "Can you play some quiet music while I read?",
)


async def speak(texts: tuple[str, ...]) -> list[bytes]:
    """Each text spoken by Piper, PCM16 at 16 kHz."""
    from pipeline.audio import resample_pcm16
    from pipeline.engines import Synthesizer, create_engine
    from schemas import SynthesisRequest

    tts = create_engine("tts", "piper", {"warmup": False})
    assert isinstance(tts, Synthesizer)
    await tts.load()
    try:
        clips = []
        for text in texts:
            chunks = [c.audio async for c in tts.synthesize(SynthesisRequest(text=text))]
            clips.append(resample_pcm16(b"".join(chunks), tts.sample_rate, RATE))
        return clips
    finally:
        await tts.close()


def timed(fn: Any) -> tuple[float, float, Any]:
    """(wall s, process CPU s, result) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def bench_engine(engine: Any, clips: list[bytes], sizes: list[int], repeats: int) -> dict[str, Any]:
    """Model calls alone: N streaming calls against one batched call (interleaved, so
    that other load on the machine hits both alike); best and median of ``repeats``."""
    from pipeline.engines._whisper_windows import Utterance
    from schemas import TranscriptionRequest

    rows: dict[str, Any] = {}
    for n in sizes:
        requests = [
            TranscriptionRequest(audio=clips[i % len(clips)], sample_rate=RATE) for i in range(n)
        ]

        def sequential(requests: list[TranscriptionRequest] = requests) -> list[str]:
            return [" ".join(s.text for s in engine._segments(r, "en")) for r in requests]

        def batched(requests: list[TranscriptionRequest] = requests) -> list[str]:
            out = engine._batch_sync([Utterance(r, "en") for r in requests])
            return [" ".join(s.text for s in segments) for segments in out]

        seq, bat = [], []
        for _ in range(repeats):
            seq.append(timed(sequential))
            bat.append(timed(batched))
        row: dict[str, Any] = {}
        for label, runs in (("sequential", seq), ("batched", bat)):
            row[f"{label}_wall_s"] = summary([x[0] for x in runs])
            row[f"{label}_cpu_s"] = summary([x[1] for x in runs])
            row[f"{label}_cpu_per_item_s"] = round(min(x[1] for x in runs) / n, 3)
        row["cpu_gain_best"] = round(min(x[1] for x in seq) / min(x[1] for x in bat), 2)
        row["wall_gain_best"] = round(min(x[0] for x in seq) / min(x[0] for x in bat), 2)
        row["same_transcripts"] = all(a[2] == b[2] for a, b in zip(seq, bat, strict=True))
        if not row["same_transcripts"]:
            row["differences"] = [
                (a, b) for a, b in zip(seq[0][2], bat[0][2], strict=True) if a != b
            ]
        rows[str(n)] = row
        print(
            f"  N={n}: best CPU {min(x[1] for x in seq):.3f} s sequential, "
            f"{min(x[1] for x in bat):.3f} s batched (x{row['cpu_gain_best']}); best wall "
            f"{min(x[0] for x in seq):.3f} / {min(x[0] for x in bat):.3f} s; "
            f"same text: {row['same_transcripts']}"
        )
    return rows


def bench_split(engine: Any, clips: list[bytes], sizes: list[int], repeats: int) -> dict[str, Any]:
    """Where batching could gain: the encoder (N windows stacked vs one at a time) and
    the decoder (one ``generate`` of N vs N of one), best CPU seconds of ``repeats``."""
    import numpy as np
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import get_suppressed_tokens

    from pipeline.audio import pcm16_to_float

    model = engine._require_model()
    extract = model.feature_extractor
    windows = [pad_or_trim(extract(pcm16_to_float(c))[:, :-1]) for c in clips]
    tokenizer = Tokenizer(
        model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language="en"
    )
    prompt = model.get_prompt(tokenizer, [], without_timestamps=False)
    suppress = get_suppressed_tokens(tokenizer, [-1])

    def generate(encoded: Any, n: int) -> Any:
        return model.model.generate(
            encoded,
            [prompt] * n,
            beam_size=1,
            max_length=model.max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=suppress,
            max_initial_timestamp_index=50,
        )

    rows: dict[str, Any] = {}
    for n in sizes:
        picked = [windows[i % len(windows)][None] for i in range(n)]
        stacked = np.concatenate(picked)
        one_by_one = [model.encode(w) for w in picked]
        together = model.encode(stacked)
        cpu: dict[str, list[float]] = {
            k: [] for k in ("encode_each", "encode_stacked", "generate_each", "generate_batched")
        }
        for _ in range(repeats):
            calls: dict[str, Callable[[], Any]] = {
                "encode_each": functools.partial(each, model.encode, picked),
                "encode_stacked": functools.partial(model.encode, stacked),
                "generate_each": functools.partial(each, lambda x: generate(x, 1), one_by_one),
                "generate_batched": functools.partial(generate, together, n),
            }
            for name, call in calls.items():
                cpu[name].append(timed(call)[1])
        rows[str(n)] = {f"{k}_cpu_s": round(min(v), 3) for k, v in cpu.items()}
        print(f"  N={n}: " + ", ".join(f"{k} {min(v):.3f}" for k, v in cpu.items()))
    return rows


def each(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    return [fn(item) for item in items]


def summary(values: list[float]) -> dict[str, float]:
    return {"best": round(min(values), 3), "median": round(statistics.median(values), 3)}


async def bench_requests(
    model: str, clips: list[bytes], sizes: list[int], repeats: int
) -> dict[str, Any]:
    """N concurrent requests through the async API, batching off and on."""
    from pipeline.engines.faster_whisper import FasterWhisperTranscriber
    from schemas import TranscriptionRequest

    rows: dict[str, Any] = {}
    settings: tuple[tuple[str, dict[str, Any]], ...] = (
        ("off", {"batch_max_items": 1}),
        ("on", {"batch_max_items": 8, "batch_wait_ms": 0}),
    )
    for label, options in settings:
        engine = FasterWhisperTranscriber(model=model, **options)
        await engine.load()
        try:
            for n in sizes:
                requests = [
                    TranscriptionRequest(audio=clips[i % len(clips)], sample_rate=RATE)
                    for i in range(n)
                ]

                async def one(r: TranscriptionRequest, engine: Any = engine) -> float:
                    start = time.perf_counter()
                    [s async for s in engine.transcribe(r)]
                    return time.perf_counter() - start

                lasts, means = [], []
                for _ in range(repeats):
                    cpu = time.process_time()
                    latencies = await asyncio.gather(*(one(r) for r in requests))
                    lasts.append(max(latencies))
                    means.append(statistics.mean(latencies))
                    cpu = time.process_time() - cpu
                rows.setdefault(str(n), {})[label] = {
                    "last_done_s": round(statistics.median(lasts), 3),
                    "mean_latency_s": round(statistics.median(means), 3),
                    "cpu_s_last_round": round(cpu, 3),
                }
                print(
                    f"  N={n} batching {label}: last done {statistics.median(lasts):.3f} s, "
                    f"mean latency {statistics.median(means):.3f} s"
                )
            if engine.batcher is not None:
                rows[f"batch_sizes_{label}"] = dict(sorted(engine.batcher.stats.sizes.items()))
        finally:
            await engine.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        default="whisper-tiny.en",
        help="comma-separated Whisper models (tiny.en: the English route)",
    )
    parser.add_argument("--sizes", default="1,2,4,8")
    parser.add_argument("--repeats", type=int, default=3)
    add_smoke_flag(parser)
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    models = args.models.split(",")
    if args.smoke:
        smoke_reports()
        sizes, models, args.repeats = [1, 2], ["whisper-tiny.en"], 1

    from pipeline.engines.faster_whisper import (
        BATCH_MAX_ITEMS,
        BATCH_WAIT_MS,
        FasterWhisperTranscriber,
    )

    clips = asyncio.run(speak(SENTENCES))
    audio_s = [round(len(c) / 2 / RATE, 2) for c in clips]
    print(f"{len(clips)} utterances, {min(audio_s)}–{max(audio_s)} s")
    figures: dict[str, Any] = {
        "utterance_s": audio_s,
        "repeats": args.repeats,
        "defaults": {"batch_max_items": BATCH_MAX_ITEMS, "batch_wait_ms": BATCH_WAIT_MS},
    }
    for model in models:
        engine = FasterWhisperTranscriber(model=model)
        engine.load_sync()
        print(f"{model} (cpu_threads {engine.options.cpu_threads or 'min(4, cores)'}): model calls")
        try:
            figures[model] = {"engine": bench_engine(engine, clips, sizes, args.repeats)}
            print(f"{model}: encoder and decoder, CPU s")
            figures[model]["split"] = bench_split(engine, clips, sizes, args.repeats)
        finally:
            asyncio.run(engine.close())
        print(f"{model}: concurrent requests")
        figures[model]["requests"] = asyncio.run(bench_requests(model, clips, sizes, args.repeats))
    print(f"report: {write_report('bench_stt_batch', figures)}")


if __name__ == "__main__":
    main()
