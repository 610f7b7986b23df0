"""faster-whisper (CTranslate2, int8 on CPU): the default speech-to-text engine.

An utterance (or a file) is transcribed through faster-whisper's own ``transcribe`` with
the language given (auto-detection misfires on short utterances; ``language=None``, for
whole files, detects it and reports it on every segment), the request's ``temperature``
(0 by default) and ``prompt`` (Whisper's initial prompt), no fallback, greedy by
default. Segments are yielded as each 30 s window is decoded.

Threads. Model calls run on one dedicated worker thread, in order (a
:class:`~pipeline.engines._worker.ModelWorker`); the event loop only waits. CTranslate2
releases the GIL and uses ``cpu_threads`` threads of its own.

Cancellation. Closing or cancelling the async generator returns at once and stops the
work: a request still queued never runs, a running one stops at the next 30 s window.
What cannot be interrupted is the CTranslate2 work of the window in progress (encode
plus decode: about 0.8 s for *base* and 0.4 s for *tiny.en* on two idle cores, for a
short utterance). Nothing waits forever: each call is bounded by its window, so the
worker always comes back; :meth:`FasterWhisperTranscriber.close` wakes every waiting
consumer with a transient ``EngineError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncGenerator, Generator, Iterator
from typing import Any

import numpy as np
from pydantic import Field

from pipeline.audio import (
    FloatAudio,
    check_pcm16,
    check_sample_rate,
    pcm16_to_float,
    resample,
    rms_dbfs,
)
from pipeline.engines._whisper import WhisperModelOptions, whisper_model_path
from pipeline.engines._worker import ModelWorker
from pipeline.engines.base import Transcriber
from schemas import (
    EngineError,
    ErrorCode,
    ModelMissingError,
    TranscriptionRequest,
    TranscriptSegment,
    VoxlineError,
)

__all__ = ["FasterWhisperOptions", "FasterWhisperTranscriber"]

logger = logging.getLogger(__name__)

_RATE = 16000  # Whisper's rate
_SETTING = "VOXLINE_STT__MODEL"


class FasterWhisperOptions(WhisperModelOptions):
    """Options of the ``faster-whisper`` engine (``VOXLINE_STT__*``)."""

    compute_type: str = Field(default="int8", description="CTranslate2 quantisation")
    cpu_threads: int = Field(default=0, ge=0, le=64, description="0: min(4, CPU count)")
    beam_size: int = Field(default=1, ge=1, le=10, description="1 is greedy: fastest")
    no_speech_threshold: float = Field(default=0.6, ge=0.0, le=1.0)
    log_prob_threshold: float = Field(default=-1.0, le=0.0)
    compression_ratio_threshold: float = Field(default=2.4, gt=1.0)
    silence_dbfs: float = Field(
        default=-60.0, le=0.0, description="quieter audio is silence: no model call"
    )
    warmup: bool = Field(default=True, description="one tiny call at load: no slow first turn")


class FasterWhisperTranscriber(Transcriber):
    """The ``faster-whisper`` STT engine; construct with :class:`FasterWhisperOptions` fields."""

    name = "faster-whisper"
    Options = FasterWhisperOptions
    options: FasterWhisperOptions

    def __init__(self, options: FasterWhisperOptions | None = None, **fields: Any) -> None:
        super().__init__(options, **fields)
        self._model: Any = None
        self._worker = ModelWorker(self.name, self.stage, thread_name="voxline-stt")

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._model is not None

    @property
    def multilingual(self) -> bool:
        return bool(self._require_model().model.is_multilingual)

    @property
    def busy(self) -> bool:
        """A model call is running or queued (a cancelled one until its window ends)."""
        return self._worker.busy

    async def load(self) -> None:
        """Prepare (join/verify) and load the model once, in a thread."""
        if self._model is None:
            await asyncio.to_thread(self.load_sync)

    def load_sync(self) -> None:
        """Blocking :meth:`load`, for scripts and start-up code outside an event loop."""
        if self._model is not None:
            return
        path = whisper_model_path(self.options.model, setting=_SETTING)
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise ModelMissingError(
                "the faster-whisper engine needs its package: pip install faster-whisper",
                stage="stt",
                setting="VOXLINE_STT__ENGINE",
            ) from exc
        threads = self.options.cpu_threads or min(4, os.cpu_count() or 1)
        try:
            model = WhisperModel(
                str(path),
                device="cpu",
                compute_type=self.options.compute_type,
                cpu_threads=threads,
                num_workers=1,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelMissingError(
                f"cannot load the Whisper model at {path} ({_SETTING}): {exc}",
                stage="stt",
                setting=_SETTING,
            ) from exc
        self._model = model
        self._worker.start()
        if self.options.warmup:  # one window through encoder and decoder
            request = TranscriptionRequest(audio=b"", sample_rate=_RATE)
            segments, _ = self._final_segments(np.zeros(_RATE, dtype=np.float32), "en", request)
            for _ in segments:
                pass

    async def close(self) -> None:
        """Stop taking work, end running streams with an error; the worker winds down."""
        await self._worker.close(wait=False)
        self._model = None

    # -- the stream ---------------------------------------------------------------------

    async def transcribe(
        self, request: TranscriptionRequest
    ) -> AsyncGenerator[TranscriptSegment, None]:
        """Yield the transcript of one utterance (or file), segment by segment.

        See the module docstring for threads and cancellation. Silence yields nothing.
        """
        self._require_model()
        check_sample_rate(request.sample_rate)  # cheap checks here, conversion in the worker
        check_pcm16(request.audio)
        language = self._language(request.language)
        # Unbounded on purpose: the recording bounds the segments, and a slow reader
        # must not hold the one model thread that every other request waits for.
        stream = self._worker.stream(lambda: self._segments(request, language), buffer=None)
        async with contextlib.aclosing(stream):
            async for segment in stream:
                yield segment

    # -- worker-thread side -------------------------------------------------------------

    def _segments(
        self, request: TranscriptionRequest, language: str | None
    ) -> Iterator[TranscriptSegment]:
        """The worker: convert, skip silence, decode window by window (worker thread)."""
        try:
            audio = self._audio(request.audio, request.sample_rate)
            if rms_dbfs(audio) < self.options.silence_dbfs:
                return  # Whisper would invent "Thank you." for silence
            found, detected = self._final_segments(audio, language, request)
            with contextlib.closing(found) as segments:
                for segment in segments:
                    text = segment.text.strip()
                    if not text:
                        continue
                    yield TranscriptSegment(
                        text=text,
                        start_s=max(float(segment.start), 0.0),
                        end_s=max(float(segment.end), 0.0),
                        words=tuple(
                            (w.word.strip(), float(w.start), float(w.end))
                            for w in (segment.words or ())
                        ),
                        language=detected,
                    )
        except VoxlineError:
            raise
        except Exception as exc:
            logger.exception("faster-whisper failed")
            raise EngineError(
                "transcription failed", code=ErrorCode.STT_FAILED, stage="stt"
            ) from exc

    def _final_segments(
        self, audio: FloatAudio, language: str | None, request: TranscriptionRequest
    ) -> tuple[Generator[Any, None, None], str]:
        """faster-whisper's lazy segments (each ``next()`` decodes up to one 30 s window) and
        the language: the one given, or the one detected from the first 30 s."""
        o = self.options
        segments, info = self._require_model().transcribe(
            audio,
            language=language,
            task="transcribe",
            beam_size=o.beam_size,
            temperature=request.temperature,
            initial_prompt=request.prompt or None,
            condition_on_previous_text=False,
            compression_ratio_threshold=o.compression_ratio_threshold,
            log_prob_threshold=o.log_prob_threshold,
            no_speech_threshold=o.no_speech_threshold,
            word_timestamps=request.word_timestamps,
            vad_filter=False,
        )
        result: Generator[Any, None, None] = segments
        return result, str(info.language)

    # -- helpers ------------------------------------------------------------------------

    def _require_model(self) -> Any:
        if self._model is None:
            raise EngineError(
                "the faster-whisper engine is not loaded", code=ErrorCode.STT_FAILED, stage="stt"
            )
        return self._model

    def _language(self, requested: str | None) -> str | None:
        """Whisper's code for a BCP-47 tag (``en-US`` → ``en``); ``None``: detect it (an
        English-only model has nothing to detect)."""
        supported = self._require_model().supported_languages
        if requested is None:
            return "en" if supported == ["en"] else None
        language = requested.split("-")[0].lower()
        if language not in supported:
            hint = (
                f"the English-only model {self.options.model!r} cannot transcribe "
                f"{requested!r}; set {_SETTING}=whisper-base for other languages"
                if supported == ["en"]
                else f"Whisper does not know the language {requested!r}"
            )
            raise EngineError(
                hint, code=ErrorCode.INVALID_SETTINGS, stage="stt", language=requested
            )
        return language

    @staticmethod
    def _audio(pcm: bytes, sample_rate: int) -> FloatAudio:
        """PCM16 to float32 at 16 kHz."""
        return resample(pcm16_to_float(pcm), sample_rate, _RATE, quality="HQ")
