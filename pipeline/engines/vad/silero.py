"""Silero VAD on onnxruntime: a speech probability for every 32 ms of 16 kHz audio.

The model, its two exports, one stream's state and the silence gate are
:mod:`pipeline.engines.vad._silero_stream`; this is the engine around them: its options, and
the frames of many streams in one model call.

**Cross-session batching.** With the batched export and ``batch_max_items > 1`` (the
default), :meth:`SileroVoiceActivityDetector.probabilities` sends each frame through a
:class:`~pipeline.aio.Batcher`: the frames that arrive together from different sessions
go through one model call (their rows and states stacked, each row's probability and new
state handed back to its own stream). A stream has at most one frame in flight (the next
frame is read after the last one's probability), and each stream's state and context are
its own, so a session's probabilities are those it would get alone, to float rounding:
batching is invisible. A batch waits at most ``batch_wait_ms`` for company, and not at all
once every stream that is open has a frame in it (one session alone never waits). A
stream advances its state only when its own result reaches it, so a caller cancelled
mid-batch leaves its stream as if the frame had never been sent.

Cost, measured by ``loadtests/bench_vad.py`` (see its report): one step costs ~0.2 ms
alone with either export, a third to a half of that a frame in a batch of 32 or more
(little gain past 64, the default bound, which also bounds one call to a few ms). A batch
of :data:`OFFLOAD_FROM_ITEMS` or more goes to a worker thread (the model releases the GIL,
so the event loop keeps serving sockets meanwhile; measured cheaper per frame than inline
with hundreds of sessions); smaller ones run inline (handing a ~0.2 ms step to a thread
costs about as much as the step). ``offload=True`` sends every step to a thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.aio import Batcher
from pipeline.audio import FloatAudio
from pipeline.engines import weights
from pipeline.engines.base import VoiceActivityDetector
from pipeline.engines.vad._silero_stream import (
    _CONTEXT,
    _FRAME,
    _RATE,
    SileroStream,
    _Model,
    _SilenceGate,
    _to_samples,
)
from schemas import EngineError, ErrorCode, ModelMissingError

__all__ = ["SileroOptions", "SileroStream", "SileroVoiceActivityDetector"]

#: a batch of at least this many frames runs in a worker thread (smaller ones inline)
OFFLOAD_FROM_ITEMS = 4
#: frames that may wait for a batch; a stream has at most one in flight, so this only
#: bounds a replica with more open streams than any Gateway holds
MAX_PENDING = 8192


class SileroOptions(BaseModel):
    """Options of the ``silero`` VAD engine (``VOXLINE_VAD__*``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(
        default="silero-vad",
        description="catalogue name (silero-vad: batches across sessions; silero-vad-v6: "
        "per stream, ships in faster-whisper) or a path to a Silero v5/v6 .onnx",
    )
    intra_op_threads: int = Field(default=1, ge=1, le=16, description="one is plenty per step")
    offload: bool = Field(default=False, description="run every step in a worker thread")
    batch_max_items: int = Field(
        default=64,
        ge=1,
        le=1024,
        description="frames of different sessions in one model call (1: each stream steps "
        "alone); only a batched export (silero-vad) batches",
    )
    batch_wait_ms: float = Field(
        default=4.0,
        ge=0,
        le=16,
        description="how long a frame may wait for other sessions' frames (ms; a frame is 32)",
    )
    silence_gate: bool = Field(
        default=True,
        description="quiet frames after silence_gate_frames quiet ones skip the model "
        "(false: every frame goes through it)",
    )
    silence_gate_dbfs: float = Field(
        default=-60.0,
        ge=-120.0,
        le=0.0,
        description="the silence gate's floor: a frame quieter than this (RMS, dBFS) is quiet",
    )
    silence_gate_frames: int = Field(
        default=8,
        ge=1,
        le=1000,
        description="quiet frames the model still hears before the gate skips it (they "
        "settle its state on the silence)",
    )


@dataclass(slots=True, eq=False)
class _Item:
    stream: SileroStream
    frame: bytes  # PCM16, 512 samples


#: what a stream gets back from a batch: its probability, new state and next context
_Result = tuple[float, FloatAudio, FloatAudio]


class _Shared:
    """The batcher of one event loop, and the streams open on that loop."""

    def __init__(self, batcher: Batcher[_Item, _Result], limit: int) -> None:
        self.batcher = batcher
        self.limit = limit
        self.open = 0
        self.loop = asyncio.get_running_loop()

    def opened(self, change: int) -> None:
        # Every open stream already waiting in the batch: nobody else can come, go now.
        self.open += change
        self.batcher.max_items = max(1, min(self.limit, self.open))


class SileroVoiceActivityDetector(VoiceActivityDetector):
    """The ``silero`` VAD engine: one ONNX session, any number of :class:`SileroStream`."""

    name = "silero"
    Options = SileroOptions
    options: SileroOptions
    frame_samples = _FRAME
    sample_rate = _RATE

    def __init__(self, options: SileroOptions | None = None, **fields: Any) -> None:
        super().__init__(options, **fields)
        self._model: _Model | None = None
        self._default: SileroStream | None = None
        self._lock = threading.Lock()
        self._shared: _Shared | None = None

    @property
    def ready(self) -> bool:
        return self._model is not None

    @property
    def batches(self) -> bool:
        """Whether frames of different streams share model calls (needs the batched
        export and ``batch_max_items > 1``)."""
        return (
            self._model is not None and self._model.batched and (self.options.batch_max_items > 1)
        )

    @property
    def model_path(self) -> Path:
        """The .onnx file: a catalogue entry's or the configured path."""
        configured = Path(self.options.model).expanduser()
        if configured.suffix == ".onnx":
            if not configured.is_file():
                raise ModelMissingError(
                    f"VAD model file {configured} does not exist (VOXLINE_VAD__MODEL)",
                    stage="vad",
                    setting="VOXLINE_VAD__MODEL",
                )
            return configured
        entry = weights.find(self.options.model)
        if entry is None or entry.engine != self.name:
            raise ModelMissingError(
                f"unknown VAD model {self.options.model!r} (VOXLINE_VAD__MODEL): use "
                "silero-vad, silero-vad-v6 or a path to a Silero .onnx file",
                stage="vad",
                setting="VOXLINE_VAD__MODEL",
            )
        return weights.prepare(entry.name)

    async def load(self) -> None:
        """Open the ONNX session (in a thread: it reads and optimises the graph)."""
        if self._model is None:
            self._model = await asyncio.to_thread(self._open)

    def load_sync(self) -> None:
        """The blocking form of :meth:`load`, for scripts and thread-side callers."""
        if self._model is None:
            self._model = self._open()

    def _open(self) -> _Model:
        path = self.model_path
        try:
            import onnxruntime
        except ImportError as exc:
            raise ModelMissingError(
                "the silero VAD needs onnxruntime: pip install onnxruntime",
                stage="vad",
                setting="VOXLINE_VAD__ENGINE",
            ) from exc
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.options.intra_op_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            session = onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise ModelMissingError(
                f"cannot load the VAD model {path}: {exc}",
                stage="vad",
                setting="VOXLINE_VAD__MODEL",
            ) from exc
        return _Model(session)

    async def close(self) -> None:
        shared, self._shared = self._shared, None
        if shared is not None and shared.loop is asyncio.get_running_loop():
            await shared.batcher.aclose()
        self._model = None
        self._default = None

    async def describe(self) -> dict[str, Any]:
        """Name, model and readiness, and what the cross-session batcher did."""
        info = await super().describe()
        info["batched"] = self.batches
        if self._shared is not None:
            stats = self._shared.batcher.stats
            info["batch"] = {
                "calls": stats.batches,
                "frames": stats.items,
                "mean_size": round(stats.mean_size, 2),
                "largest": stats.largest,
            }
        return info

    def stream(self) -> SileroStream:
        """A fresh per-stream state (call after :meth:`load`)."""
        if self._model is None:
            raise EngineError(
                "the silero VAD is not loaded", code=ErrorCode.VAD_FAILED, stage="vad"
            )
        return SileroStream(self._model)

    def probability(self, frame: bytes) -> float:
        """One frame through the detector's own default stream (see :meth:`reset`)."""
        with self._lock:
            if self._default is None:
                self._default = self.stream()
            return self._default.process(frame)

    def reset(self) -> None:
        with self._lock:
            if self._default is not None:
                self._default.reset()

    async def probabilities(self, frames: AsyncIterator[bytes]) -> AsyncGenerator[float, None]:
        """One probability per 512-sample PCM16 frame, with a fresh state for this call.

        Cancellation stops at once: at most the step in flight finishes (a batched one on
        the batcher's task, its result then dropped).
        """
        state = self.stream()
        options = self.options
        gate = _SilenceGate(options.silence_gate_dbfs if options.silence_gate else None,
                            options.silence_gate_frames)
        if not self.batches:
            async for frame in frames:
                if len(frame) == _FRAME * 2 and gate.skips(frame):
                    state.hold(frame)
                    yield 0.0
                elif self.options.offload:
                    yield await asyncio.to_thread(state.process, frame)
                else:
                    yield state.process(frame)
            return
        shared = self._batcher()
        shared.opened(+1)
        counted = True  # a gated stream is not counted open: no batch waits for it
        try:
            async for frame in frames:
                if len(frame) != _FRAME * 2:
                    _to_samples(frame)  # raises invalid_audio
                if gate.skips(frame):
                    if counted:
                        shared.opened(-1)
                        counted = False
                    state.hold(frame)
                    yield 0.0
                    continue
                if not counted:
                    shared.opened(+1)
                    counted = True
                probability, new_state, context = await shared.batcher.submit(_Item(state, frame))
                state.advance(new_state, context)
                yield probability
        finally:
            if counted:
                shared.opened(-1)

    def _batcher(self) -> _Shared:
        """This event loop's batcher (a detector loaded once may serve several loops in
        turn, as in tests; a batcher's tasks belong to one)."""
        loop = asyncio.get_running_loop()
        if self._shared is None or self._shared.loop is not loop or loop.is_closed():
            batcher: Batcher[_Item, _Result] = Batcher(
                self._run_batch,
                max_items=self.options.batch_max_items,
                max_wait_s=self.options.batch_wait_ms / 1000,
                max_pending=MAX_PENDING,
                name="vad",
            )
            self._shared = _Shared(batcher, self.options.batch_max_items)
        return self._shared

    async def _run_batch(self, items: Sequence[_Item]) -> list[_Result]:
        """One model step for the streams of ``items``; nothing of theirs changes here (each
        caller advances its own stream with what it gets back)."""
        model = self._model
        if model is None:
            raise EngineError(
                "the silero VAD is not loaded", code=ErrorCode.VAD_FAILED, stage="vad"
            )
        count = len(items)
        rows = np.empty((count, _CONTEXT + _FRAME), dtype=np.float32)
        pcm = np.frombuffer(b"".join([item.frame for item in items]), dtype="<i2")
        np.multiply(pcm.reshape(count, _FRAME), np.float32(1 / 32768), out=rows[:, _CONTEXT:])
        for i, item in enumerate(items):
            rows[i, :_CONTEXT] = item.stream.context
        states = np.concatenate([item.stream.state for item in items], axis=1)
        if self.options.offload or count >= OFFLOAD_FROM_ITEMS:
            probs, new = await asyncio.to_thread(model.step, rows, states)
        else:
            probs, new = model.step(rows, states)
        contexts = rows[:, -_CONTEXT:].copy()
        return [(float(probs[i]), new[:, i : i + 1, :], contexts[i]) for i in range(count)]
