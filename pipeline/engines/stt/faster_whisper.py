"""faster-whisper (CTranslate2, int8 on CPU): the default speech-to-text engine.

Device. The CPU by default; ``device=cuda`` runs the same code on a GPU through
CTranslate2's CUDA build (the library WhisperX drives on a GPU), float16 unless
``compute_type`` says otherwise. A GPU that CTranslate2 does not see is refused at load
with a configuration error, never a failure in a turn. Figures for both:
``loadtests/bench_stt_batch.py`` (``--device cuda`` on a GPU).

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

How requests are batched, and the shorter windows of quick requests and voice turns,
with the figures each default was chosen by (the quick and turn windows, batching, the
quantisation): :mod:`pipeline.engines.stt._faster_whisper_options`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncGenerator, Generator, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.aio import Batcher
from pipeline.audio import (
    FloatAudio,
    check_pcm16,
    check_sample_rate,
    pcm16_to_float,
    resample,
    rms_dbfs,
)
from pipeline.engines._worker import ModelWorker
from pipeline.engines.base import Transcriber
from pipeline.engines.stt._faster_whisper_options import (
    COMPUTE_TYPES,
    ENGLISH_SHORT_TURN_WINDOW_S,
    ENGLISH_TURN_WINDOW_S,
    TINY_MODEL_THREADS,
    FasterWhisperOptions,
    check_gpu,
)
from pipeline.engines.stt._faster_whisper_turns import WindowedTurns
from pipeline.engines.stt._whisper import whisper_model_path
from pipeline.engines.stt._whisper_windows import (
    SAMPLE_RATE,
    WINDOW_S,
    Utterance,
    stt_failure,
    transcript_segment,
)
from schemas import (
    EngineError,
    ErrorCode,
    ModelMissingError,
    TranscriptionRequest,
    TranscriptSegment,
    VoxlineError,
    primary_language,
)

__all__ = ["FasterWhisperOptions", "FasterWhisperTranscriber"]

logger = logging.getLogger(__name__)

_SETTING = "VOXLINE_STT__MODEL"



class FasterWhisperTranscriber(WindowedTurns, Transcriber):
    """The ``faster-whisper`` STT engine; construct with :class:`FasterWhisperOptions` fields."""

    name = "faster-whisper"
    Options = FasterWhisperOptions
    options: FasterWhisperOptions

    def __init__(self, options: FasterWhisperOptions | None = None, **fields: Any) -> None:
        super().__init__(options, **fields)
        self._model: Any = None
        self._worker = ModelWorker(self.name, self.stage, thread_name="voxline-stt")
        # one batcher per event loop (tests run one loop per test; Serve has one)
        self._batcher: Batcher[Utterance, list[TranscriptSegment]] | None = None
        self._batcher_loop: asyncio.AbstractEventLoop | None = None
        self._batches_running = 0

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def compute_type(self) -> str:
        """The quantisation the model runs in: the option, else the device's default
        (:data:`COMPUTE_TYPES`)."""
        return self.options.compute_type or COMPUTE_TYPES[self.options.device]

    @property
    def threads(self) -> int:
        """CTranslate2's CPU threads: the option, else :data:`TINY_MODEL_THREADS` for a
        model whose name says tiny and min(4, CPU count) for the others."""
        if self.options.cpu_threads:
            return self.options.cpu_threads
        if "tiny" in Path(self.options.model).name.lower():
            return TINY_MODEL_THREADS
        return min(4, os.cpu_count() or 1)

    @property
    def ready(self) -> bool:
        return self._model is not None

    @property
    def multilingual(self) -> bool:
        return bool(self._require_model().model.is_multilingual)

    @property
    def turn_windows_s(self) -> tuple[float, ...]:
        """The windows a voice turn is encoded in, shortest first (it takes the first its
        audio fits): the option alone, else by the loaded model (an English-only one
        :data:`ENGLISH_SHORT_TURN_WINDOW_S` then :data:`ENGLISH_TURN_WINDOW_S`, a
        multilingual one Whisper's 30 s)."""
        if self.options.turn_window_s is not None:
            return (self.options.turn_window_s,)
        if self.multilingual:
            return (WINDOW_S,)
        return (ENGLISH_SHORT_TURN_WINDOW_S, ENGLISH_TURN_WINDOW_S)

    @property
    def busy(self) -> bool:
        """A model call is running or queued (a cancelled one until its window ends)."""
        batcher = self._batcher
        waiting = batcher is not None and batcher.pending > 0
        return self._worker.busy or waiting or self._batches_running > 0

    @property
    def batcher(self) -> Batcher[Utterance, list[TranscriptSegment]] | None:
        """The batcher of the running event loop, if one was made (for stats and tests)."""
        return self._batcher

    async def load(self) -> None:
        """Prepare (join/verify) and load the model once, on the model's own thread:
        CTranslate2's compute threads are born there and keep its name (``voxline-stt``),
        so a process that runs other work too says which of its CPU was the model's."""
        if self._model is None:
            self._worker.start()
            await self._worker.call(self.load_sync)

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
        o = self.options
        if o.device == "cuda":
            check_gpu(o.device_index)
        try:
            model = WhisperModel(
                str(path),
                device=o.device,
                device_index=o.device_index,
                compute_type=self.compute_type,
                cpu_threads=self.threads,
                num_workers=1,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            where = "" if o.device == "cpu" else f" on cuda:{o.device_index}"
            raise ModelMissingError(
                f"cannot load the Whisper model at {path}{where} ({_SETTING}): {exc}",
                stage="stt",
                setting=_SETTING,
            ) from exc
        self._model = model
        self._worker.start()
        if self.options.warmup:  # one window through encoder and decoder
            request = TranscriptionRequest(audio=b"", sample_rate=SAMPLE_RATE)
            second = np.zeros(SAMPLE_RATE, dtype=np.float32)
            segments, _ = self._final_segments(second, "en", request)
            for _ in segments:
                pass

    async def close(self) -> None:
        """Stop taking work, end running streams with an error; the worker winds down.

        Batched requests still waiting fail at once; those in the running batch get
        their result or an error when it ends (one batch at most: its call cannot be
        interrupted)."""
        await self._worker.close(wait=False)
        self._model = None
        batcher, self._batcher = self._batcher, None
        if batcher is not None and self._batcher_loop is asyncio.get_running_loop():
            await batcher.aclose()

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
        if language is not None and (window := self._short_window(request)) is not None:
            short = await self._run_window(Utterance(request, language), window)
            if short is not None:
                for segment in short:
                    yield segment
                return
            # it looped in its short window: Whisper's own, the usual way
        elif language is not None and self._batchable(request):
            for segment in await self._submit(Utterance(request, language)):
                yield segment
            return
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
                    if not segment.text.strip():
                        continue
                    yield transcript_segment(segment.text, segment.start, segment.end,
                                             segment.words, detected, audio.size / SAMPLE_RATE)
        except VoxlineError:
            raise
        except Exception as exc:
            raise stt_failure(exc) from exc

    def _final_segments(
        self,
        audio: FloatAudio,
        language: str | None,
        request: TranscriptionRequest,
        *,
        start_s: float = 0.0,
    ) -> tuple[Generator[Any, None, None], str]:
        """faster-whisper's lazy segments (each ``next()`` decodes up to one 30 s window),
        from ``start_s`` on, and the language: the one given, or the one detected from the
        first 30 s."""
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
            clip_timestamps=[start_s] if start_s else "0",
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
        language = primary_language(requested)
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
        return resample(pcm16_to_float(pcm), sample_rate, SAMPLE_RATE, quality="HQ")
