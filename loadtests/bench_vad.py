"""The Gateway's VAD: what one frame costs per model call size, and what idle sessions cost.

Two measurements, both in this process (no server, no socket):

* **model**: the per-frame cost of one model call, best of three runs, for the per-stream
  export (``silero-vad-v6``, faster-whisper's: one stream per call, as every socket ran it
  before cross-session batching) and for the batched export (``silero-vad``) at batch sizes
  1, 8, 32, 128 and 256 (``--batches``). One intra-op thread, as the engine runs it.
* **idle**: ``N`` sessions' speech inputs (:class:`pipeline.session.SpeechInput`, the
  session's own path from pushed PCM to the detector) fed 20 ms frames of digital silence in
  real time, each session on its own offset within the 20 ms, as clients send them, for
  ``--seconds``; the CPU-seconds this process spends meanwhile (all threads: the model runs
  in worker threads when batched) per session-second, in ms. Measured for each detector
  configuration (``--configs``) and for a stand-in detector that costs nothing (``none``:
  the feeding and framing alone, to subtract). ``kept_up`` is the share of the frames whose
  probability came back within the run (1: real time); where it is below 1 (a busy
  machine), compare ``us_cpu_per_frame`` and ``cpu_ms_per_session_s_at_real_time`` (CPU
  per frame answered, times 31.25 frames a second). ``--noise-dbfs`` sends a noise floor
  of that level instead (a room; the silence gate skips only what is under its floor).

Writes ``reports/bench_vad.json``. The figures depend on the machine and on what else runs
on it (say which when quoting them). ``--smoke`` runs tiny sizes for one second.

    python -m loadtests.bench_vad --sessions 50,100,200 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import numpy as np

from loadtests._report import add_smoke_flag, smoke_reports, write_report

RATE = 16000
FRAME = 512
PUSH_MS = 20
#: detector configurations of the idle phase: (catalogue model, batch_max_items)
CONFIGS: dict[str, dict[str, Any]] = {
    "v6_per_stream": {"model": "silero-vad-v6", "batch_max_items": 1},
    "batched_export_alone": {"model": "silero-vad", "batch_max_items": 1},
    "batched": {"model": "silero-vad"},
    # the same without the silence gate: every quiet frame through the model
    "batched_ungated": {"model": "silero-vad", "silence_gate": False},
    # the same with every batch run inline on the event loop (none in a worker thread)
    "batched_inline": {"model": "silero-vad", "inline": True},
}


def _session(path: str) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _best_per_call(call: Any, calls: int) -> float:
    for _ in range(max(3, calls // 10)):
        call()
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter() - started) / calls)
    return best


def model_costs(batches: list[int], frames_per_size: int) -> dict[str, Any]:
    """µs per frame of one call, per export and batch size (see the module docstring)."""
    from pipeline.engines import weights

    rng = np.random.default_rng(1)
    out: dict[str, Any] = {}
    v6 = _session(str(weights.prepare("silero-vad-v6")))
    row = rng.normal(0, 0.1, (1, FRAME + 64)).astype(np.float32)
    hc = np.zeros((1, 1, 128), np.float32)
    per_call = _best_per_call(
        lambda: v6.run(None, {"input": row, "h": hc, "c": hc}), frames_per_size
    )
    out["silero-vad-v6"] = {"1": round(per_call * 1e6, 1)}
    batched = _session(str(weights.prepare("silero-vad")))
    names = {i.name for i in batched.get_inputs()}
    sizes: dict[str, float] = {}
    for size in batches:
        feed: dict[str, Any] = {
            "input": rng.normal(0, 0.1, (size, FRAME + 64)).astype(np.float32),
            "state": np.zeros((2, size, 128), np.float32),
        }
        if "sr" in names:
            feed["sr"] = np.array(RATE, dtype=np.int64)
        per_call = _best_per_call(
            lambda feed=feed: batched.run(None, feed), max(5, frames_per_size // size)
        )
        sizes[str(size)] = round(per_call / size * 1e6, 1)
    out["silero-vad"] = sizes
    return out


class _Free:
    """A detector that costs nothing: every frame is silence at once."""

    frame_samples = FRAME
    sample_rate = RATE

    async def probabilities(self, frames: AsyncIterator[bytes]) -> AsyncGenerator[float, None]:
        async for _ in frames:
            yield 0.0


class _Counted:
    """``detector`` with a count of the probabilities it gave."""

    def __init__(self, detector: Any) -> None:
        self.detector = detector
        self.frame_samples = detector.frame_samples
        self.sample_rate = detector.sample_rate
        self.answered = 0

    async def probabilities(self, frames: AsyncIterator[bytes]) -> AsyncGenerator[float, None]:
        async with contextlib.aclosing(self.detector.probabilities(frames)) as probabilities:
            async for probability in probabilities:
                self.answered += 1
                yield probability


def _quiet_frames(noise_dbfs: float | None) -> list[bytes]:
    """One second of what an idle client sends, as 20 ms frames: digital silence, or
    Gaussian noise at ``noise_dbfs`` (RMS)."""
    step = 2 * RATE * PUSH_MS // 1000
    if noise_dbfs is None:
        return [bytes(step)]
    noise = np.random.default_rng(0).normal(0.0, 32768 * 10 ** (noise_dbfs / 20), RATE)
    pcm = np.rint(np.clip(noise, -32768, 32767)).astype("<i2").tobytes()
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


async def idle(detector: Any, sessions: int, seconds: float,
               noise_dbfs: float | None = None) -> dict[str, Any]:
    """CPU per session-second of ``sessions`` silent inputs (see the module docstring)."""
    from pipeline.audio import EndpointConfig
    from pipeline.session import SpeechInput

    heard = 0

    async def on_speech(audio_ms: int) -> None:
        nonlocal heard
        heard += 1

    async def on_utterance(end: Any, rate: int) -> None:
        pass

    counted = _Counted(detector)
    inputs = [
        SpeechInput(
            counted,
            EndpointConfig(),
            sample_rate=RATE,
            on_speech=on_speech,
            on_utterance=on_utterance,
        )
        for _ in range(sessions)
    ]
    buckets: list[list[Any]] = [[] for _ in range(PUSH_MS)]
    for i, speech in enumerate(inputs):
        buckets[i * PUSH_MS // sessions].append((i, speech))  # offsets spread over 20 ms
    quiet = _quiet_frames(noise_dbfs)
    warm_up_s = 1.0
    loop = asyncio.get_running_loop()
    start = loop.time()
    ticks = 0
    measured_from: tuple[float, float] | None = None
    answered_at_start = 0
    try:
        while (now := loop.time()) < start + warm_up_s + seconds:
            if measured_from is None and now >= start + warm_up_s:
                measured_from = (time.process_time(), now)
                answered_at_start = counted.answered
            for i, speech in buckets[ticks % PUSH_MS]:  # each session at its own place
                await speech.push(quiet[(ticks // PUSH_MS + i) % len(quiet)])
            ticks += 1
            await asyncio.sleep(max(0.0, start + ticks / 1000 - loop.time()))
        cpu_end, wall_end = time.process_time(), loop.time()
        answered = counted.answered - answered_at_start
    finally:
        for speech in inputs:
            await speech.close()
    assert measured_from is not None
    cpu_s, wall_s = cpu_end - measured_from[0], wall_end - measured_from[1]
    real_time_frames = wall_s * sessions * RATE / FRAME  # what real clients would send
    return {
        "sessions": sessions,
        "wall_s": round(wall_s, 2),
        "cpu_s": round(cpu_s, 3),
        "cpu_ms_per_session_s": round(cpu_s * 1000 / sessions / wall_s, 3),
        "cores_busy": round(cpu_s / wall_s, 3),
        "frames_answered": answered,
        "us_cpu_per_frame": round(cpu_s / max(1, answered) * 1e6, 1),
        # what a session costs once every frame is answered in time (31.25 frames a
        # second): the figure to compare where the machine did not let a run keep up
        "cpu_ms_per_session_s_at_real_time": round(
            cpu_s / max(1, answered) * 1000 * RATE / FRAME, 3
        ),
        # < 1: the detector (or the feeding) did not keep up with real time
        "kept_up": round(answered / real_time_frames, 3),
        "speech_heard": heard,
        "noise_dbfs": noise_dbfs,
    }


async def idle_phase(configs: list[str], sessions: list[int], seconds: float,
                     noise_dbfs: float | None = None) -> dict[str, Any]:
    from pipeline.engines import create_engine
    from pipeline.engines.vad import silero

    out: dict[str, Any] = {}
    for name in ["none", *configs]:
        rows = []
        for count in sessions:
            detector: Any = _Free()
            options = dict(CONFIGS.get(name, {}))
            inline = options.pop("inline", False)
            if name != "none":
                detector = create_engine("vad", "silero", options)
                await detector.load()
            saved = silero.OFFLOAD_FROM_ITEMS
            silero.OFFLOAD_FROM_ITEMS = 1 << 30 if inline else saved
            try:
                row = await idle(detector, count, seconds, noise_dbfs)
            finally:
                silero.OFFLOAD_FROM_ITEMS = saved
            if name != "none":
                info = await detector.describe()
                row["batch"] = info.get("batch")
                await detector.close()
            print(
                f"  {name:22s} {count:4d} sessions: {row['us_cpu_per_frame']} µs CPU a frame, "
                f"{row['cpu_ms_per_session_s_at_real_time']} ms per session-second at real "
                f"time; kept up {row['kept_up']:.3f} ({row['cores_busy']:.2f} cores); "
                f"batches {row.get('batch')}",
                flush=True,
            )
            rows.append(row)
        out[name] = rows
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default="1,8,32,128,256", help="batch sizes of the model")
    parser.add_argument("--frames", type=int, default=600, help="frames timed per size")
    parser.add_argument("--sessions", default="50,100,200", help="idle sessions per run")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per run")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="detector configurations")
    parser.add_argument("--skip-idle", action="store_true", help="the model costs only")
    parser.add_argument("--noise-dbfs", type=float, default=None,
                        help="idle sessions send a noise floor this loud (RMS dBFS), not zeros")
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        smoke_reports()
        args.batches, args.frames, args.sessions, args.seconds = "1,8", 40, "4", 1.0
    batches = [int(b) for b in args.batches.split(",")]
    sessions = [int(s) for s in args.sessions.split(",")]
    configs = [c for c in args.configs.split(",") if c]

    print("model: µs per frame of one call (one intra-op thread)", flush=True)
    costs = model_costs(batches, args.frames)
    for model, sizes in costs.items():
        print(f"  {model:14s} " + "  ".join(f"B={b}: {us} µs" for b, us in sizes.items()))
    figures: dict[str, Any] = {"model_us_per_frame": costs}
    if not args.skip_idle:
        sent = "silence" if args.noise_dbfs is None else f"noise at {args.noise_dbfs:g} dBFS"
        print(f"idle: sessions sending {sent}, {args.seconds:g} s each", flush=True)
        figures["idle"] = asyncio.run(idle_phase(configs, sessions, args.seconds,
                                                 args.noise_dbfs))
    with contextlib.suppress(Exception):
        import os

        figures["machine_cores"] = os.cpu_count()
    path = write_report("bench_vad", figures)
    print(f"report: {path}")


if __name__ == "__main__":
    main()
