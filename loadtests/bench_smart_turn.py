"""Smart Turn v3.2 on a labelled set: does it tell a finished utterance from a cut-off one?

The model alone on clips; it is now the ``smart-turn`` engine
(``pipeline/engines/turn_detection/smart_turn.py``), and ``bench_turn_taking.py`` measures
whole turns through the app. Smart Turn v3.2 (BSD-2-Clause) takes the last 8 s of 16 kHz
speech as Whisper-style log-mel features (80 x 800) and returns the probability that the
turn is complete. Its ONNX file ships inside the ``pipecat-ai`` wheel; take it out
without installing pipecat::

    pip download --no-deps pipecat-ai==1.14.0 -d /tmp/pc
    unzip -o /tmp/pc/pipecat_ai-*.whl 'pipecat/audio/turn/smart_turn/data/*.onnx' -d /tmp/pc
    python -m loadtests.bench_smart_turn \
        --model /tmp/pc/pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx

The labelled set is made with the packaged TTS (Piper): each question of the answer
sheet spoken whole (complete); cut off two ways: its first half spoken alone ("What is
the capital of": a TTS voice says every text with a final fall, so this is the harder
case) and the whole question's audio cut at 55 % (mid-sentence prosody); each clip
followed by 200 ms of silence (what the endpointer has when a pause is reported).
Features: faster-whisper's feature extractor on the waveform normalised to zero mean and
unit variance (checked equal, to 1e-7, to pipecat's own numpy implementation). Reports
accuracy at 0.5 per kind of clip and the cost of one call (features + inference) on this
machine. Writes ``reports/bench_smart_turn.json``. ``--smoke`` needs no model: two questions,
and a stand-in for the ONNX session (a fixed function of the features), so the speaking,
features, scoring and report run without the file.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from loadtests._report import add_smoke_flag, percentiles, smoke_reports, write_report
from loadtests.bench_answers import load_sheet

RATE = 16000
WINDOW_S = 8


async def speak(texts: list[str]) -> list[np.ndarray]:
    """Each text spoken by Piper, at 16 kHz, float32, with 200 ms of silence after it."""
    from pipeline.audio import pcm16_to_float, resample_pcm16
    from pipeline.engines import Synthesizer, create_engine
    from schemas import SynthesisRequest

    tts = create_engine("tts", "piper", {"warmup": False})
    assert isinstance(tts, Synthesizer)
    await tts.load()
    clips = []
    try:
        for text in texts:
            chunks = [c.audio async for c in tts.synthesize(SynthesisRequest(text=text))]
            pcm = resample_pcm16(b"".join(chunks), tts.sample_rate, RATE)
            clips.append(np.concatenate([pcm16_to_float(pcm), np.zeros(RATE // 5, np.float32)]))
    finally:
        await tts.close()
    return clips


def features(audio: np.ndarray, extractor: Any) -> np.ndarray:
    """The model's input: the last 8 s (zero-padded in front), normalised, log-mel (the
    engine's own :func:`~pipeline.engines.turn_detection.smart_turn.log_mel`), with a batch axis."""
    from pipeline.engines.turn_detection.smart_turn import log_mel

    return log_mel(extractor, audio[-WINDOW_S * RATE :])[None, :, :]


class StandInModel:
    """Smoke mode's stand-in for the ONNX session: p(complete) from the features' mean."""

    def run(self, _outputs: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        mean = float(feeds["input_features"].mean())
        return [np.array([[1 / (1 + np.exp(-mean))]], dtype=np.float32)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="smart-turn-v3.2-cpu.onnx (required)")
    parser.add_argument("--limit", type=int, default=36, help="questions of the sheet")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        smoke_reports()
        args.limit = 2
    elif args.model is None:
        parser.error("--model is required (see the module docstring for where it comes from)")

    import onnxruntime as ort
    from faster_whisper.feature_extractor import FeatureExtractor

    questions = [item["q"] for item in load_sheet()[: args.limit]]
    cut = [" ".join(q.split()[: max(1, len(q.split()) // 2)]) for q in questions]
    spoken = asyncio.run(speak(questions + cut))
    silence = np.zeros(RATE // 5, np.float32)
    halves = [np.concatenate([c[: int((len(c) - len(silence)) * 0.55)], silence])
              for c in spoken[: len(questions)]]
    clips = [*spoken, *halves]
    kinds = ["complete"] * len(questions) + ["cut_text"] * len(cut) + ["cut_audio"] * len(halves)
    labels = [1 if k == "complete" else 0 for k in kinds]

    session: Any = StandInModel()
    if not args.smoke:
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(args.model), options,
                                       providers=["CPUExecutionProvider"])
    extractor = FeatureExtractor(feature_size=80, chunk_length=WINDOW_S)
    session.run(None, {"input_features": features(clips[0], extractor)})  # warm-up

    probabilities, costs = [], []
    for clip in clips:
        started = time.perf_counter()
        out = session.run(None, {"input_features": features(clip, extractor)})
        costs.append((time.perf_counter() - started) * 1000)
        probabilities.append(float(np.asarray(out[0]).reshape(-1)[0]))

    def accuracy(kind: str) -> float:
        picked = [p for p, k in zip(probabilities, kinds, strict=True) if k == kind]
        right = [p > 0.5 if kind == "complete" else p <= 0.5 for p in picked]
        return round(sum(right) / len(right), 3)

    def median_p(kind: str) -> float:
        return round(statistics.median(
            p for p, k in zip(probabilities, kinds, strict=True) if k == kind), 3)

    figures = {
        "clips": len(clips),
        "accuracy": round(sum((p > 0.5) == bool(y) for p, y in
                              zip(probabilities, labels, strict=True)) / len(clips), 3),
        "accuracy_by_kind": {k: accuracy(k) for k in ("complete", "cut_text", "cut_audio")},
        "p_complete_median": {k: median_p(k) for k in ("complete", "cut_text", "cut_audio")},
        "ms_per_call": percentiles(costs),
        "threads": args.threads,
        "model": "stand-in (smoke mode)" if args.smoke else str(args.model),
        "rows": [{"text": t, "kind": k, "p": round(p, 3)} for t, k, p in
                 zip([*questions, *cut, *questions], kinds, probabilities, strict=True)],
    }
    path = write_report("bench_smart_turn", figures)
    print(f"accuracy {figures['accuracy']} {figures['accuracy_by_kind']}; median p(complete) "
          f"{figures['p_complete_median']}; {figures['ms_per_call']['p50']:.1f} ms per call "
          f"p50 -> {path}")


if __name__ == "__main__":
    main()
