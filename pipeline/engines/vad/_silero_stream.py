"""Silero VAD's model on onnxruntime, one audio stream's state in it, and the silence gate.

Two exports of the same kind of model are understood (told apart by their inputs when the
session opens):

* **per-stream** (``silero-vad-v6``: the ONNX file inside faster-whisper, no extra package):
  inputs ``input`` ``(n, 576)``, ``h``, ``c`` (each ``1 x 1 x 128``). Its first dimension
  is *time*: ``n`` consecutive steps of one stream with the state threaded through, which
  :meth:`SileroStream.process_many` uses for whole files. It cannot run two streams in one
  call.
* **batched** (``silero-vad``: the official export in the ``silero-vad`` wheel): inputs
  ``input`` ``(B, 576)``, ``state`` ``(2, B, 128)`` and ``sr``. Its first dimension is
  *streams*: one step of ``B`` independent streams per call, which is what lets the
  frames of every session on a replica share one model call.

Either way the model is recurrent and wants two things carried from frame to frame (this
is what a streaming wrapper must get right; a fresh state per frame "works" but detects
speech late and badly): the LSTM state, fed back from the previous call, and **context**,
the last 64 samples of the previous frame prepended to the 512 new ones (576 samples a
step, zeros before the first frame).

**The silence gate** (:class:`_SilenceGate`; the engine's ``silence_gate`` options). Most
of a hands-free session's audio is silence, and a silent session costs a model step per
frame all the same. After ``silence_gate_frames`` frames quieter than
``silence_gate_dbfs`` in a row (their steps settle the state on the silence), further
quiet frames skip the model: the stream keeps its state, takes the frame's tail as its
context, and the frame's probability is 0 (a frame under the floor after a quarter of a
second of them is no speech, whatever the model's state still says); a batch no longer
waits for a gated stream. The first frame above the floor goes through the model again.
The floor (-60 dBFS) sits below any voice a microphone picks up: digital silence, a muted
or noise-suppressed microphone and a quiet line fall under it, a noisy room does not (its
frames cost what they did). ``silence_gate=False`` turns it off.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.audio import FloatAudio, is_digital_silence, pcm16_to_float
from schemas import EngineError, ErrorCode, InvalidAudioError, ModelMissingError

__all__ = ["SileroStream"]

_FRAME = 512
_CONTEXT = 64
#: the context after a frame of digital silence (read-only: shared by every stream)
_ZERO_CONTEXT = np.zeros(_CONTEXT, dtype=np.float32)
_ZERO_CONTEXT.flags.writeable = False
_RATE = 16000
_HC_SHAPE = (1, 1, 128)  # per-stream export: h and c
_STATE_SHAPE = (2, 1, 128)  # batched export: h and c stacked, one stream


def _model_error(exc: Exception) -> EngineError:
    return EngineError(f"silero VAD failed: {exc}", code=ErrorCode.VAD_FAILED, stage="vad")


def _to_samples(frame: bytes) -> FloatAudio:
    if len(frame) != _FRAME * 2:
        raise InvalidAudioError(
            f"a VAD frame must be {_FRAME} samples ({_FRAME * 2} bytes), got {len(frame)}",
            code=ErrorCode.INVALID_AUDIO,
        )
    return pcm16_to_float(frame)


class _Model:
    """The ONNX session and which export it holds."""

    def __init__(self, session: Any) -> None:
        self.session = session
        names = {i.name for i in session.get_inputs()}
        self.batched = "state" in names
        if not self.batched and not {"h", "c"} <= names:
            raise ModelMissingError(
                f"not a Silero VAD model (inputs {sorted(names)}); want input+h+c or "
                "input+state(+sr)",
                stage="vad",
                setting="VOXLINE_VAD__MODEL",
            )
        self.sr = np.array(_RATE, dtype=np.int64) if "sr" in names else None

    def step(self, rows: FloatAudio, states: FloatAudio) -> tuple[FloatAudio, FloatAudio]:
        """One step of ``B`` streams (batched export): rows ``(B, 576)``, states
        ``(2, B, 128)`` → probabilities ``(B,)`` and new states ``(2, B, 128)``."""
        feed: dict[str, Any] = {"input": rows, "state": states}
        if self.sr is not None:
            feed["sr"] = self.sr
        try:
            probs, new = self.session.run(None, feed)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise _model_error(exc) from exc
        return np.asarray(probs, dtype=np.float32).reshape(-1), np.asarray(new, np.float32)


class SileroStream:
    """The recurrent state of one audio stream; one per socket, not shared across threads.

    Many streams share one :class:`SileroVoiceActivityDetector` (its ONNX session is
    thread-safe); each keeps its own state and context.
    """

    def __init__(self, model: _Model) -> None:
        self._model = model
        self.reset()

    def reset(self) -> None:
        if self._model.batched:
            self._state = np.zeros(_STATE_SHAPE, dtype=np.float32)
        else:
            self._h = np.zeros(_HC_SHAPE, dtype=np.float32)
            self._c = np.zeros(_HC_SHAPE, dtype=np.float32)
        self._context = np.zeros(_CONTEXT, dtype=np.float32)

    def process(self, frame: bytes) -> float:
        """Speech probability of one PCM16 frame of exactly 512 samples."""
        return float(self.process_many(_to_samples(frame))[0])

    def process_many(self, samples: FloatAudio) -> FloatAudio:
        """Probabilities of consecutive 512-sample frames (one model call per-stream
        export, one call per frame batched export).

        ``samples`` is float32 mono at 16 kHz whose length is a multiple of 512.
        """
        if samples.ndim != 1 or samples.size == 0 or samples.size % _FRAME:
            raise InvalidAudioError(
                f"VAD input must be a non-empty multiple of {_FRAME} samples, got {samples.size}",
                code=ErrorCode.INVALID_AUDIO,
            )
        frames = samples.reshape(-1, _FRAME)
        if self._model.batched:
            out = np.empty(len(frames), dtype=np.float32)
            for i, frame in enumerate(frames):
                probs, state = self._model.step(self.row(frame)[None, :], self._state)
                self.advance(state, frame[-_CONTEXT:].copy())
                out[i] = probs[0]
            return out
        contexts = np.concatenate([self._context[None, :], frames[:-1, -_CONTEXT:]])
        batch = np.ascontiguousarray(np.concatenate([contexts, frames], axis=1), dtype=np.float32)
        try:
            probs, h, c = self._model.session.run(
                None, {"input": batch, "h": self._h, "c": self._c}
            )
        except Exception as exc:
            raise _model_error(exc) from exc
        self._h, self._c = h, c
        self._context = frames[-1, -_CONTEXT:].copy()
        return np.asarray(probs, dtype=np.float32).reshape(-1)

    # The batched export's step, in parts, for a batch of many streams.

    @property
    def state(self) -> FloatAudio:
        """The batched export's ``(2, 1, 128)`` state."""
        return self._state

    @property
    def context(self) -> FloatAudio:
        """The last 64 samples of the previous frame (zeros before the first)."""
        return self._context

    def row(self, frame: FloatAudio) -> FloatAudio:
        """The model's input for ``frame``: this stream's context, then the frame."""
        return np.concatenate([self._context, frame])

    def advance(self, state: FloatAudio, context: FloatAudio) -> None:
        """Take the state the model returned for a frame, and that frame's last 64 samples."""
        self._state = state
        self._context = context

    def hold(self, frame: bytes) -> None:
        """A frame the model did not hear (the silence gate's): the state stays where the
        quiet frames before it settled it, the context becomes this frame's tail."""
        tail = frame[-2 * _CONTEXT :]
        self._context = _ZERO_CONTEXT if is_digital_silence(tail) else pcm16_to_float(tail)


class _SilenceGate:
    """Which frames of one stream skip the model: those quieter than ``floor_dbfs`` (RMS)
    once ``settle`` quiet frames in a row have gone through it.

    A hands-free client sends audio all the time, mostly silence, and every frame of it
    costs a model step (~0.1–0.4 ms). Once the model has heard a few quiet frames its
    state sits on the silence and its probability near zero, and further frames as quiet
    would leave both where they are; so they are skipped (probability 0) until a frame is
    louder than the floor. ``floor_dbfs`` None: no gate.
    """

    __slots__ = ("_floor", "_quiet", "_settle")

    def __init__(self, floor_dbfs: float | None, settle: int) -> None:
        #: the floor as the mean square of PCM16 samples
        self._floor = None if floor_dbfs is None else (32768.0 * 10 ** (floor_dbfs / 20)) ** 2
        self._settle = settle
        self._quiet = 0

    def skips(self, frame: bytes) -> bool:
        if self._floor is None:
            return False
        if not is_digital_silence(frame):  # digital silence is under any floor
            pcm = np.frombuffer(frame, dtype="<i2").astype(np.float32)
            if float(np.dot(pcm, pcm)) >= self._floor * pcm.size:
                self._quiet = 0
                return False
        self._quiet += 1
        return self._quiet > self._settle
