"""Smart Turn v3 on onnxruntime: has the speaker finished, judged from how the speech ends.

Silence alone cannot tell "What is the capital of France?" from "I would like to know …",
both followed by half a second of quiet. Smart Turn (Pipecat's open end-of-turn model, a
Whisper-tiny encoder with a classifier head, trained on complete and cut-off utterances in
many languages) hears intonation, pace and the last words, and says how likely the turn
is complete. Its CPU export ships inside the ``pipecat-ai`` wheel (BSD-2-Clause, model
and code); Voxline installs that wheel without its dependencies and only reads the ONNX
file from it (catalogue entry ``smart-turn-v3.2``), so no Pipecat code runs here.

The model's input is Whisper's log-mel spectrogram (80 bins, 10 ms hop) of the **last 8
seconds** of the utterance, left-padded with zeros when shorter, that window normalised
to zero mean and unit variance; faster-whisper's numpy feature extractor (already a
dependency) computes the same spectrogram as Pipecat's own code, to float rounding. Its
output is a probability. One call takes ~50 ms of one core (measured on the 2-core
machine; ``loadtests/bench_turn_taking.py`` reports it), on a worker thread so the event
loop keeps serving sockets.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.audio import pcm16_to_float
from pipeline.engines import weights
from pipeline.engines.base import TurnDetector
from schemas import EngineError, ErrorCode, ModelMissingError

__all__ = ["SmartTurnDetector", "SmartTurnOptions"]

_RATE = 16000
_WINDOW_S = 8
_WINDOW = _RATE * _WINDOW_S


class SmartTurnOptions(BaseModel):
    """Options of the ``smart-turn`` end-of-turn engine (``VOXLINE_TURN__*``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(
        default="smart-turn-v3.2",
        description="catalogue name (smart-turn-v3.2: ships in the pipecat-ai wheel) or a "
        "path to a Smart Turn v3 .onnx",
    )
    intra_op_threads: int = Field(default=1, ge=1, le=16, description="threads of one call")


class SmartTurnDetector(TurnDetector):
    """The end-of-turn verdict of Smart Turn v3 (see the module docstring)."""

    name = "smart-turn"
    Options = SmartTurnOptions
    options: SmartTurnOptions

    def __init__(self, options: SmartTurnOptions | None = None, **fields: Any) -> None:
        super().__init__(options, **fields)
        self._session: Any = None
        self._features: Any = None

    @property
    def ready(self) -> bool:
        return self._session is not None

    async def load(self) -> None:
        if self._session is not None:
            return
        path = _model_path(self.options.model)
        self._session, self._features = await asyncio.to_thread(self._open, path)

    def _open(self, path: Path) -> tuple[Any, Any]:
        import onnxruntime as ort
        from faster_whisper.feature_extractor import FeatureExtractor

        so = ort.SessionOptions()
        so.intra_op_num_threads = self.options.intra_op_threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        session = ort.InferenceSession(str(path), sess_options=so,
                                       providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        if names != ["input_features"]:
            raise ModelMissingError(
                f"{path} is not a Smart Turn v3 model (inputs {names}, want input_features)",
                stage="turn", setting="VOXLINE_TURN__MODEL",
            )
        extractor = FeatureExtractor(feature_size=80, sampling_rate=_RATE, hop_length=160,
                                     chunk_length=_WINDOW_S, n_fft=400)
        return session, extractor

    async def close(self) -> None:
        self._session = None
        self._features = None

    async def completion(self, audio: bytes) -> float:
        return await asyncio.to_thread(self.completion_now, audio)

    def completion_now(self, audio: bytes) -> float:
        """:meth:`completion` on the calling thread (benchmarks, replay evaluation)."""
        session, extractor = self._session, self._features
        if session is None:
            raise EngineError("the smart-turn detector is not loaded",
                              code=ErrorCode.TURN_DETECTION_FAILED, stage="turn")
        try:
            features = log_mel(extractor, pcm16_to_float(audio[-_WINDOW * 2:]))
            (out,) = session.run(None, {"input_features": features[None, :, :]})
        except Exception as exc:  # onnxruntime and numpy raise their own types
            raise EngineError(f"smart-turn failed: {exc}",
                              code=ErrorCode.TURN_DETECTION_FAILED, stage="turn") from exc
        return float(np.clip(np.asarray(out).reshape(-1)[0], 0.0, 1.0))


def log_mel(extractor: Any, samples: np.ndarray) -> np.ndarray:
    """The model's input for ``samples`` (float mono, 16 kHz, at most 8 s): left-padded
    with zeros to 8 s, then normalised over that window (as the model was trained), as an
    ``(80, 800)`` float32 spectrogram."""
    window = np.zeros(_WINDOW, dtype=np.float32)
    if samples.size:
        window[-samples.size:] = samples
    window = (window - window.mean()) / np.sqrt(window.var() + 1e-7)
    features = extractor(window, padding=0)
    frames = _WINDOW // 160
    return np.ascontiguousarray(features[:, :frames], dtype=np.float32)


def _model_path(model: str) -> Path:
    """A catalogue name prepared, or a path that must exist."""
    if weights.find(model) is not None:
        return weights.prepare(model)
    path = Path(model).expanduser()
    if not path.is_file():
        raise ModelMissingError(
            f"no Smart Turn model {model!r}: neither a catalogue name nor a file",
            stage="turn", setting="VOXLINE_TURN__MODEL",
        )
    return path
