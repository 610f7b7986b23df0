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

Each mode's row also gives its throughput (utterances and seconds of audio per second of
wall time) and what one item waits: the whole call when batched, its own place in the
queue one by one (``mean_latency_s``); the split gives each stage's wall time and
throughput, the log-mel features (numpy, on the CPU whatever the device) among them.

On a GPU (issue 23): ``--device cuda`` runs the same engine code through CTranslate2's
CUDA build (``--compute-types float16,int8_float16`` compares quantisations, each its own
block of the report), with larger N (``--sizes 1,2,4,8,16,32``, and ``--batch-max-items
32`` for the requests' batcher). Where Piper cannot run, ``--clips FILE`` reads the
utterances that ``--save-clips FILE`` wrote where it can (an ``.npz`` of PCM16), so both
machines hear the same audio.

Writes ``reports/bench_stt_batch.json`` (``--report`` names it otherwise). ``--smoke``:
tiny.en, N = 1, 2, one repeat.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import time
from collections.abc import Callable
from pathlib import Path
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


def save_clips(path: Path, clips: list[bytes], texts: tuple[str, ...]) -> None:
    """The utterances as an ``.npz`` (PCM16 at 16 kHz, one array each, and their texts),
    for a machine without Piper (``--clips``)."""
    import numpy as np

    arrays = {f"clip{i}": np.frombuffer(c, dtype="<i2") for i, c in enumerate(clips)}
    np.savez_compressed(path, texts=np.array(texts), **arrays)


def load_clips(path: Path) -> list[bytes]:
    """The utterances :func:`save_clips` wrote, in their order."""
    import numpy as np

    with np.load(path) as saved:
        count = sum(1 for name in saved.files if name.startswith("clip"))
        return [saved[f"clip{i}"].astype("<i2").tobytes() for i in range(count)]


def throughput(n: int, audio_s: float, wall_s: float) -> dict[str, float]:
    """Utterances and seconds of audio per second of wall time."""
    return {"utterances_per_s": round(n / wall_s, 2), "audio_s_per_s": round(audio_s / wall_s, 1)}


def timed(fn: Any) -> tuple[float, float, Any]:
    """(wall s, process CPU s, result) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def bench_engine(engine: Any, clips: list[bytes], sizes: list[int], repeats: int) -> dict[str, Any]:
    """Model calls alone: N streaming calls against one batched call (interleaved, so
    that other load on the machine hits both alike); best and median of ``repeats``."""
    from pipeline.engines.stt._whisper_windows import Utterance
    from schemas import TranscriptionRequest

    rows: dict[str, Any] = {}
    for n in sizes:
        requests = [
            TranscriptionRequest(audio=clips[i % len(clips)], sample_rate=RATE) for i in range(n)
        ]

        audio_s = sum(len(r.audio) / 2 / RATE for r in requests)

        def sequential(
            requests: list[TranscriptionRequest] = requests,
        ) -> tuple[list[str], list[float]]:
            texts, done, start = [], [], time.perf_counter()
            for r in requests:
                texts.append(" ".join(s.text for s in engine._segments(r, "en")))
                done.append(time.perf_counter() - start)
            return texts, done

        def batched(
            requests: list[TranscriptionRequest] = requests,
        ) -> tuple[list[str], list[float]]:
            start = time.perf_counter()
            out = engine._batch_sync([Utterance(r, "en") for r in requests])
            wall = time.perf_counter() - start  # every item waits for the whole call
            return [" ".join(s.text for s in segments) for segments in out], [wall] * len(out)

        seq, bat = [], []
        for _ in range(repeats):
            seq.append(timed(sequential))
            bat.append(timed(batched))
        row: dict[str, Any] = {}
        for label, runs in (("sequential", seq), ("batched", bat)):
            best = min(x[0] for x in runs)
            row[f"{label}_wall_s"] = summary([x[0] for x in runs])
            row[f"{label}_cpu_s"] = summary([x[1] for x in runs])
            row[f"{label}_cpu_per_item_s"] = round(min(x[1] for x in runs) / n, 3)
            row[f"{label}_mean_latency_s"] = round(
                statistics.median(statistics.mean(x[2][1]) for x in runs), 4)
            for key, value in throughput(n, audio_s, best).items():
                row[f"{label}_{key}"] = value
        row["audio_s"] = round(audio_s, 2)
        row["cpu_gain_best"] = round(min(x[1] for x in seq) / min(x[1] for x in bat), 2)
        row["wall_gain_best"] = round(min(x[0] for x in seq) / min(x[0] for x in bat), 2)
        row["same_transcripts"] = all(a[2][0] == b[2][0] for a, b in zip(seq, bat, strict=True))
        if not row["same_transcripts"]:
            row["differences"] = [
                (a, b) for a, b in zip(seq[0][2][0], bat[0][2][0], strict=True) if a != b
            ]
        rows[str(n)] = row
        print(
            f"  N={n}: best CPU {min(x[1] for x in seq):.3f} s sequential, "
            f"{min(x[1] for x in bat):.3f} s batched (x{row['cpu_gain_best']}); best wall "
            f"{min(x[0] for x in seq):.3f} / {min(x[0] for x in bat):.3f} s "
            f"({row['sequential_utterances_per_s']} / {row['batched_utterances_per_s']} "
            f"utterances/s); same text: {row['same_transcripts']}"
        )
    return rows


def bench_split(engine: Any, clips: list[bytes], sizes: list[int], repeats: int) -> dict[str, Any]:
    """Each stage apart: the log-mel features (numpy, on the CPU), the encoder (N windows
    stacked vs one at a time) and the decoder (one ``generate`` of N vs N of one); best
    CPU and wall seconds of ``repeats``, and each stage's items per second of wall time.
    The encoder's output is copied back to the host (``to_cpu``) so that a GPU's wall time
    is the work's, not the launch's."""
    import numpy as np
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import get_ctranslate2_storage, get_suppressed_tokens

    from pipeline.audio import pcm16_to_float

    model = engine._require_model()
    extract = model.feature_extractor
    floats = [pcm16_to_float(c) for c in clips]

    def features(audio: Any) -> Any:
        return pad_or_trim(extract(audio)[:, :-1])

    windows = [features(f) for f in floats]
    tokenizer = Tokenizer(
        model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language="en"
    )
    prompt = model.get_prompt(tokenizer, [], without_timestamps=False)
    suppress = get_suppressed_tokens(tokenizer, [-1])

    def encode_synced(windows: Any) -> Any:
        return model.model.encode(get_ctranslate2_storage(windows), to_cpu=True)

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
    stages = ("features_each", "encode_each", "encode_stacked", "generate_each",
              "generate_batched")
    for n in sizes:
        audio = [floats[i % len(floats)] for i in range(n)]
        picked = [windows[i % len(windows)][None] for i in range(n)]
        stacked = np.concatenate(picked)
        one_by_one = [model.encode(w) for w in picked]
        together = model.encode(stacked)
        cpu: dict[str, list[float]] = {k: [] for k in stages}
        wall: dict[str, list[float]] = {k: [] for k in stages}
        for _ in range(repeats):
            calls: dict[str, Callable[[], Any]] = {
                "features_each": functools.partial(each, features, audio),
                "encode_each": functools.partial(each, encode_synced, picked),
                "encode_stacked": functools.partial(encode_synced, stacked),
                "generate_each": functools.partial(each, lambda x: generate(x, 1), one_by_one),
                "generate_batched": functools.partial(generate, together, n),
            }
            for name, call in calls.items():
                took = timed(call)
                wall[name].append(took[0])
                cpu[name].append(took[1])
        row: dict[str, Any] = {f"{k}_cpu_s": round(min(v), 3) for k, v in cpu.items()}
        row.update({f"{k}_wall_s": round(min(v), 4) for k, v in wall.items()})
        row.update({f"{k}_items_per_s": round(n / min(v), 1) for k, v in wall.items()})
        rows[str(n)] = row
        print(f"  N={n}: CPU s " + ", ".join(f"{k} {min(v):.3f}" for k, v in cpu.items()))
        print(f"  N={n}: wall s " + ", ".join(f"{k} {min(v):.4f}" for k, v in wall.items()))
    return rows


def each(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    return [fn(item) for item in items]


def summary(values: list[float]) -> dict[str, float]:
    return {"best": round(min(values), 3), "median": round(statistics.median(values), 3)}


async def bench_requests(
    engine_options: dict[str, Any], clips: list[bytes], sizes: list[int], repeats: int,
    batch_max_items: int = 8,
) -> dict[str, Any]:
    """N concurrent requests through the async API, batching off and on."""
    from pipeline.engines.stt.faster_whisper import FasterWhisperTranscriber
    from schemas import TranscriptionRequest

    rows: dict[str, Any] = {}
    settings: tuple[tuple[str, dict[str, Any]], ...] = (
        ("off", {"batch_max_items": 1}),
        ("on", {"batch_max_items": batch_max_items, "batch_wait_ms": 0}),
    )
    for label, options in settings:
        engine = FasterWhisperTranscriber(**engine_options, **options)
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
                audio_s = sum(len(r.audio) / 2 / RATE for r in requests)
                rows.setdefault(str(n), {})[label] = {
                    "last_done_s": round(statistics.median(lasts), 3),
                    "mean_latency_s": round(statistics.median(means), 3),
                    "cpu_s_last_round": round(cpu, 3),
                    **throughput(n, audio_s, statistics.median(lasts)),
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


def device_facts(device: str) -> dict[str, Any]:
    """What the figures ran on: CTranslate2's version and GPUs, and the GPU's name as
    ``nvidia-smi`` gives it (no torch: its own CUDA libraries would share the process)."""
    import os
    import subprocess

    import ctranslate2

    facts: dict[str, Any] = {
        "device": device,
        "ctranslate2": ctranslate2.__version__,
        "cuda_devices": ctranslate2.get_cuda_device_count(),
        "cpu_count": os.cpu_count(),
    }
    if device == "cuda":
        try:
            query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                     "--format=csv,noheader"]
            facts["gpu"] = subprocess.run(query, capture_output=True, text=True,
                                          timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:  # only a label
            facts["gpu"] = f"unknown ({type(exc).__name__})"
    return facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        default="whisper-tiny.en",
        help="comma-separated Whisper models (tiny.en: the English route)",
    )
    parser.add_argument("--sizes", default="1,2,4,8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--compute-types", default="",
        help="comma-separated CTranslate2 quantisations, each measured in turn; "
        "empty: the engine's default for the device (int8 on cpu, float16 on cuda)")
    parser.add_argument("--cpu-threads", type=int, default=0, help="0: the engine's default")
    parser.add_argument(
        "--batch-max-items", type=int, default=8, help="the requests' batcher when on")
    parser.add_argument(
        "--parts", default="engine,split,requests",
        help="which measurements: engine, split, requests (comma-separated)")
    parser.add_argument("--clips", type=Path, help="read the utterances from this .npz")
    parser.add_argument(
        "--save-clips", type=Path, help="write Piper's utterances to this .npz (for --clips)")
    parser.add_argument("--report", default="bench_stt_batch", help="the report's name")
    add_smoke_flag(parser)
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    models = args.models.split(",")
    parts = set(args.parts.split(","))
    if args.smoke:
        smoke_reports()
        sizes, models, args.repeats = [1, 2], ["whisper-tiny.en"], 1

    from pipeline.engines.stt._faster_whisper_options import BATCH_MAX_ITEMS, BATCH_WAIT_MS
    from pipeline.engines.stt.faster_whisper import FasterWhisperTranscriber

    clips = load_clips(args.clips) if args.clips else asyncio.run(speak(SENTENCES))
    if args.save_clips:
        save_clips(args.save_clips, clips, SENTENCES)
        print(f"clips: {args.save_clips}")
    audio_s = [round(len(c) / 2 / RATE, 2) for c in clips]
    print(f"{len(clips)} utterances, {min(audio_s)}–{max(audio_s)} s")
    figures: dict[str, Any] = {
        "utterance_s": audio_s,
        "repeats": args.repeats,
        "sizes": sizes,
        "defaults": {"batch_max_items": BATCH_MAX_ITEMS, "batch_wait_ms": BATCH_WAIT_MS},
        "requests_batch_max_items": args.batch_max_items,
        "device": device_facts(args.device),
    }
    compute_types: list[str | None] = [c for c in args.compute_types.split(",") if c] or [None]
    for model in models:
        for compute_type in compute_types:
            options: dict[str, Any] = {"model": model, "device": args.device,
                                       "cpu_threads": args.cpu_threads}
            if compute_type:
                options["compute_type"] = compute_type
            engine = FasterWhisperTranscriber(**options)
            engine.load_sync()
            name = Path(model).name if Path(model).is_dir() else model  # a folder: its name
            key = name if len(compute_types) == 1 else f"{name} {engine.compute_type}"
            block: dict[str, Any] = {"compute_type": engine.compute_type}
            figures[key] = block
            print(f"{key} ({args.device}, {engine.compute_type}, cpu_threads "
                  f"{engine.options.cpu_threads or 'min(4, cores)'}): model calls")
            try:
                if "engine" in parts:
                    block["engine"] = bench_engine(engine, clips, sizes, args.repeats)
                if "split" in parts:
                    print(f"{key}: features, encoder and decoder")
                    block["split"] = bench_split(engine, clips, sizes, args.repeats)
            finally:
                asyncio.run(engine.close())
            if "requests" in parts:
                print(f"{key}: concurrent requests")
                block["requests"] = asyncio.run(bench_requests(
                    options, clips, sizes, args.repeats, args.batch_max_items))
    print(f"report: {write_report(args.report, figures)}")


if __name__ == "__main__":
    main()
