"""Silero VAD v6 on onnxruntime: a speech probability for every 32 ms of 16 kHz audio.

The ONNX file ships inside faster-whisper (``faster_whisper/assets``), so the VAD costs no
extra package. The model is recurrent and wants two things carried from frame to frame
(this is what a streaming wrapper must get right; a fresh state per frame "works" but
detects speech late and badly):

* the LSTM state ``h``/``c`` (each ``1 x 1 x 128``), fed back from the previous call;
* **context**: the last 64 samples of the previous frame, prepended to the 512 new ones,
  so the model sees 576 samples per step (zeros before the first frame).

The model's first input dimension is time: a ``(n, 576)`` batch is ``n`` consecutive
steps with the state threaded through, which :meth:`SileroStream.process_many` uses for
whole files (about half the cost per frame).

One frame costs ~0.1 ms on one core, less than handing it to a thread and back, so
:meth:`SileroVoiceActivityDetector.probabilities` runs the model inline on the event loop by
default; ``offload=True`` moves each step to a worker thread for callers that prefer the
loop never to compute.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.audio import FloatAudio, pcm16_to_float
from pipeline.engines import weights
from pipeline.engines.base import VoiceActivityDetector
from schemas import EngineError, ErrorCode, InvalidAudioError, ModelMissingError

__all__ = ["SileroOptions", "SileroStream", "SileroVoiceActivityDetector"]

_FRAME = 512
_CONTEXT = 64
_STATE_SHAPE = (1, 1, 128)


class SileroOptions(BaseModel):
    """Options of the ``silero`` VAD engine (``VOXLINE_VAD__*``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(
        default="silero-vad-v6", description="catalogue name or a path to a Silero v5/v6 .onnx"
    )
    intra_op_threads: int = Field(default=1, ge=1, le=16, description="one is plenty per step")
    offload: bool = Field(default=False, description="run each step in a worker thread")


class SileroStream:
    """The recurrent state of one audio stream; one per socket, not shared across threads.

    Many streams share one :class:`SileroVoiceActivityDetector` (its ONNX session is
    thread-safe); each keeps its own ``h``, ``c`` and context.
    """

    def __init__(self, session: Any) -> None:
        self._session = session
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._c = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._context = np.zeros(_CONTEXT, dtype=np.float32)

    def process(self, frame: bytes) -> float:
        """Speech probability of one PCM16 frame of exactly 512 samples."""
        if len(frame) != _FRAME * 2:
            raise InvalidAudioError(
                f"a VAD frame must be {_FRAME} samples ({_FRAME * 2} bytes), got {len(frame)}",
                code=ErrorCode.INVALID_AUDIO,
            )
        return float(self.process_many(pcm16_to_float(frame))[0])

    def process_many(self, samples: FloatAudio) -> FloatAudio:
        """Probabilities of consecutive 512-sample frames in one model call.

        ``samples`` is float32 mono at 16 kHz whose length is a multiple of 512.
        """
        if samples.ndim != 1 or samples.size == 0 or samples.size % _FRAME:
            raise InvalidAudioError(
                f"VAD input must be a non-empty multiple of {_FRAME} samples, got {samples.size}",
                code=ErrorCode.INVALID_AUDIO,
            )
        frames = samples.reshape(-1, _FRAME)
        contexts = np.concatenate([self._context[None, :], frames[:-1, -_CONTEXT:]])
        batch = np.ascontiguousarray(np.concatenate([contexts, frames], axis=1), dtype=np.float32)
        try:
            probs, h, c = self._session.run(None, {"input": batch, "h": self._h, "c": self._c})
        except Exception as exc:  # onnxruntime raises its own exception types
            raise EngineError(
                f"silero VAD failed: {exc}", code=ErrorCode.VAD_FAILED, stage="vad"
            ) from exc
        self._h, self._c = h, c
        self._context = frames[-1, -_CONTEXT:].copy()
        return np.asarray(probs, dtype=np.float32).reshape(-1)


class SileroVoiceActivityDetector(VoiceActivityDetector):
    """The ``silero`` VAD engine: one ONNX session, any number of :class:`SileroStream`."""

    name = "silero"
    Options = SileroOptions
    options: SileroOptions
    frame_samples = _FRAME
    sample_rate = 16000

    def __init__(self, options: SileroOptions | None = None, **fields: Any) -> None:
        super().__init__(options, **fields)
        self._session: Any = None
        self._default: SileroStream | None = None
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return self._session is not None

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
                "silero-vad-v6 or a path to a Silero .onnx file",
                stage="vad",
                setting="VOXLINE_VAD__MODEL",
            )
        return weights.prepare(entry.name)

    async def load(self) -> None:
        """Open the ONNX session (in a thread: it reads and optimises the graph)."""
        if self._session is None:
            self._session = await asyncio.to_thread(self._open)

    def load_sync(self) -> None:
        """The blocking form of :meth:`load`, for scripts and thread-side callers."""
        if self._session is None:
            self._session = self._open()

    def _open(self) -> Any:
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
            return onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise ModelMissingError(
                f"cannot load the VAD model {path}: {exc}",
                stage="vad",
                setting="VOXLINE_VAD__MODEL",
            ) from exc

    async def close(self) -> None:
        self._session = None
        self._default = None

    def stream(self) -> SileroStream:
        """A fresh per-stream state (call after :meth:`load`)."""
        if self._session is None:
            raise EngineError(
                "the silero VAD is not loaded", code=ErrorCode.VAD_FAILED, stage="vad"
            )
        return SileroStream(self._session)

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

        Cancellation stops at once: at most the step in flight (~0.1 ms) finishes.
        """
        state = self.stream()
        async for frame in frames:
            if self.options.offload:
                yield await asyncio.to_thread(state.process, frame)
            else:
                yield state.process(frame)
