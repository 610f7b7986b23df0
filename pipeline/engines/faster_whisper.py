"""faster-whisper (CTranslate2, int8 on CPU): the default speech-to-text engine.

Two paths, because a realtime turn asks two different questions:

* **Final** (``request.partial=False``): the utterance's transcript, through
  faster-whisper's own ``transcribe`` with the language given (auto-detection misfires on
  short utterances), ``temperature=0`` and no fallback, greedy by default. Segments are
  yielded as each 30 s window is decoded.
* **Interim** (``request.partial=True``): a cheap guess while the user is still talking.
  Whisper pads every input to 30 s, so a 2 s window costs as much as 30 s. This path
  computes the log-mel of the window only (plus 0.5 s of padding, which stops the model
  from running on past the audio), runs CTranslate2's encoder and ``generate`` directly,
  and guards against repetition loops: ``no_repeat_ngram_size``, a token budget
  proportional to the audio's length (a reply that uses it all is dropped), a cut where
  the opening words come round again, and a compression-ratio check. It is dropped
  (yields nothing, at once) whenever a model call is already running or queued: interim
  results are worth nothing if they delay the final one.

Threads. Model calls run on one dedicated worker thread, in order; the event loop only
waits. CTranslate2 releases the GIL and uses ``cpu_threads`` threads of its own.

Cancellation. Closing or cancelling the async generator returns at once and flags the
job: a job still queued never runs, a running one stops at the next 30 s window. What
cannot be interrupted is the CTranslate2 work of the window in progress (encode plus
decode: about 0.8 s for *base* and 0.4 s for *tiny.en* on two idle cores, for a short
utterance). Nothing waits forever: each call is bounded by its window and token budget,
so the worker always comes back; :meth:`FasterWhisperTranscriber.close` wakes every
waiting consumer with ``EngineError``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import zlib
from collections.abc import AsyncGenerator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.audio import (
    FloatAudio,
    check_pcm16,
    check_sample_rate,
    pcm16_to_float,
    resample,
    rms_dbfs,
)
from pipeline.engines import weights
from pipeline.engines.base import Transcriber, engine_config
from schemas import (
    EngineError,
    ErrorCode,
    ModelMissingError,
    TranscriptionRequest,
    TranscriptSegment,
    VoxlineError,
)

__all__ = ["FasterWhisperConfig", "FasterWhisperTranscriber"]

logger = logging.getLogger(__name__)

_RATE = 16000  # Whisper's rate
_SETTING = "VOXLINE_STT__MODEL"


class FasterWhisperConfig(BaseModel):
    """Options of the ``faster-whisper`` engine (``VOXLINE_STT__*``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(
        default="whisper-base",
        description="catalogue name (whisper-base, whisper-tiny.en) or a CTranslate2 folder",
    )
    compute_type: str = Field(default="int8", description="CTranslate2 quantisation")
    cpu_threads: int = Field(default=0, ge=0, le=64, description="0: min(4, CPU count)")
    beam_size: int = Field(default=1, ge=1, le=10, description="1 is greedy: fastest")
    no_speech_threshold: float = Field(default=0.6, ge=0.0, le=1.0)
    log_prob_threshold: float = Field(default=-1.0, le=0.0)
    compression_ratio_threshold: float = Field(default=2.4, gt=1.0)
    silence_dbfs: float = Field(
        default=-60.0, le=0.0, description="quieter audio is silence: no model call"
    )
    partial_min_s: float = Field(default=0.3, ge=0.0, description="shorter: no interim result")
    partial_window_s: float = Field(
        default=20.0, gt=0.0, le=29.0, description="interim results look at this much, at most"
    )
    partial_pad_ms: int = Field(default=500, ge=0, le=2000)
    partial_tokens_per_s: float = Field(default=6.0, gt=0.0, description="token budget")
    no_repeat_ngram_size: int = Field(default=3, ge=0, description="interim path only")
    warmup: bool = Field(default=True, description="one tiny call at load: no slow first turn")


@dataclass(eq=False)
class _Job:
    """One request's hand-off between the worker thread and the awaiting coroutine."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[tuple[str, Any]] = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def put(self, kind: str, item: Any = None, *, force: bool = False) -> None:
        if self.cancelled.is_set() and not force:
            return
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (kind, item))
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.cancelled.set()


class FasterWhisperTranscriber(Transcriber):
    """The ``faster-whisper`` STT engine; construct with :class:`FasterWhisperConfig` fields."""

    name = "faster-whisper"

    def __init__(self, **options: Any) -> None:
        self.config = engine_config(
            FasterWhisperConfig, None, options, engine="faster-whisper", stage="stt"
        )
        self._model: Any = None
        self._executor: ThreadPoolExecutor | None = None
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        self._tokenizers: dict[str, Any] = {}
        self._jobs: set[_Job] = set()

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._model is not None

    @property
    def multilingual(self) -> bool:
        return bool(self._require_model().model.is_multilingual)

    @property
    def busy(self) -> bool:
        """A model call is running or queued (interim requests are dropped meanwhile)."""
        return self._inflight > 0

    async def load(self) -> None:
        """Prepare (join/verify) and load the model once, in a thread."""
        if self._model is None:
            await asyncio.to_thread(self.load_sync)

    def load_sync(self) -> None:
        """Blocking :meth:`load`, for scripts and start-up code outside an event loop."""
        if self._model is not None:
            return
        path = self._model_path()
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise ModelMissingError(
                "the faster-whisper engine needs its package: pip install faster-whisper",
                stage="stt",
                setting="VOXLINE_STT__ENGINE",
            ) from exc
        threads = self.config.cpu_threads or min(4, os.cpu_count() or 1)
        try:
            model = WhisperModel(
                str(path),
                device="cpu",
                compute_type=self.config.compute_type,
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
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="voxline-stt")
        if self.config.warmup:
            self._partial_text(np.zeros(_RATE, dtype=np.float32), "en")

    def _model_path(self) -> Path:
        configured = Path(self.config.model).expanduser()
        if configured.is_dir():
            if not (configured / "model.bin").is_file():
                raise ModelMissingError(
                    f"{configured} is not a CTranslate2 Whisper folder (no model.bin); "
                    f"check {_SETTING}",
                    stage="stt",
                    setting=_SETTING,
                )
            return configured
        entry = weights.find(self.config.model)
        if entry is None or entry.engine != self.name:
            known = [m.name for m in weights.list_models() if m.engine == self.name]
            raise ModelMissingError(
                f"unknown Whisper model {self.config.model!r} ({_SETTING}): use one of "
                f"{', '.join(known)} or a CTranslate2 model folder",
                stage="stt",
                setting=_SETTING,
            )
        return weights.prepare(entry.name)

    async def close(self) -> None:
        """Stop taking work, flag running jobs and let the worker thread wind down."""
        for job in list(self._jobs):  # wake consumers whose job will now never run
            job.put(
                "error",
                EngineError("the STT engine was closed", code=ErrorCode.STT_FAILED, stage="stt"),
                force=True,
            )
            job.cancelled.set()
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        self._model = None

    # -- the stream ---------------------------------------------------------------------

    async def transcribe(
        self, request: TranscriptionRequest
    ) -> AsyncGenerator[TranscriptSegment, None]:
        """Yield the transcript of one utterance (or file), segment by segment.

        See the module docstring for the final and interim paths. Silence, and an interim
        request while the engine is busy, yield nothing.
        """
        self._require_model()
        check_sample_rate(request.sample_rate)  # cheap checks here, conversion in the worker
        check_pcm16(request.audio)
        language = self._language(request.language)
        if request.partial:
            if self.busy:
                return
            segment = await self._call_partial(request, language)
            if segment is not None:
                yield segment
            return
        async for segment in self._stream_final(request, language):
            yield segment

    def _submit(self, job: _Job | None, fn: Any, *args: Any) -> Future[Any]:
        executor = self._executor
        if executor is None:
            raise EngineError("the STT engine is closed", code=ErrorCode.STT_FAILED, stage="stt")
        with self._inflight_lock:
            self._inflight += 1

        def run() -> Any:
            try:
                if job is not None and job.cancelled.is_set():
                    return None
                return fn(*args)
            finally:
                self._release()
                if job is not None:  # after the release: a consumer that sees the end
                    job.put("done")  # may at once ask for an interim result

        try:
            future = executor.submit(run)
        except RuntimeError as exc:  # shut down between the check and the submit
            self._release()
            raise EngineError(
                "the STT engine is closed", code=ErrorCode.STT_FAILED, stage="stt"
            ) from exc
        # A job cancelled before it started never runs ``run``: release its slot here.
        future.add_done_callback(lambda f: self._release() if f.cancelled() else None)
        return future

    def _release(self) -> None:
        with self._inflight_lock:
            self._inflight -= 1

    async def _call_partial(
        self, request: TranscriptionRequest, language: str
    ) -> TranscriptSegment | None:
        future = self._submit(None, self._run_partial, request, language)
        try:
            segment: TranscriptSegment | None = await asyncio.wrap_future(future)
        except VoxlineError:
            raise
        except Exception as exc:
            raise EngineError(
                f"interim transcription failed: {exc}", code=ErrorCode.STT_FAILED, stage="stt"
            ) from exc
        return segment

    async def _stream_final(
        self, request: TranscriptionRequest, language: str
    ) -> AsyncGenerator[TranscriptSegment, None]:
        job = _Job(loop=asyncio.get_running_loop())
        self._jobs.add(job)
        try:
            self._submit(job, self._run_final, job, request, language)
            while True:
                kind, item = await job.queue.get()
                if kind == "segment":
                    yield item
                elif kind == "error":
                    if isinstance(item, VoxlineError):
                        raise item
                    raise EngineError(
                        f"transcription failed: {item}", code=ErrorCode.STT_FAILED, stage="stt"
                    ) from item
                else:
                    return
        finally:
            job.cancelled.set()  # the worker stops at the next window
            self._jobs.discard(job)

    # -- worker-thread side -------------------------------------------------------------

    def _run_final(self, job: _Job, request: TranscriptionRequest, language: str) -> None:
        segments: Iterator[Any] | None = None
        try:
            audio = self._audio(request.audio, request.sample_rate, "HQ")
            if rms_dbfs(audio) < self.config.silence_dbfs:
                return  # Whisper would invent "Thank you." for silence
            segments = self._final_segments(audio, language, request.word_timestamps)
            for segment in segments:
                if job.cancelled.is_set():
                    break
                text = segment.text.strip()
                if not text:
                    continue
                job.put(
                    "segment",
                    TranscriptSegment(
                        text=text,
                        start_s=max(float(segment.start), 0.0),
                        end_s=max(float(segment.end), 0.0),
                        words=tuple(
                            (w.word.strip(), float(w.start), float(w.end))
                            for w in (segment.words or ())
                        ),
                    ),
                )
        except Exception as exc:
            logger.exception("faster-whisper failed")
            job.put("error", exc)
        finally:
            close = getattr(segments, "close", None)
            if close is not None:
                close()

    def _final_segments(self, audio: FloatAudio, language: str, words: bool) -> Iterator[Any]:
        c = self.config
        segments, _info = self._require_model().transcribe(
            audio,
            language=language,
            task="transcribe",
            beam_size=c.beam_size,
            temperature=0.0,
            condition_on_previous_text=False,
            compression_ratio_threshold=c.compression_ratio_threshold,
            log_prob_threshold=c.log_prob_threshold,
            no_speech_threshold=c.no_speech_threshold,
            word_timestamps=words,
            vad_filter=False,
        )
        result: Iterator[Any] = segments
        return result

    def _run_partial(
        self, request: TranscriptionRequest, language: str
    ) -> TranscriptSegment | None:
        """Thread side of an interim request: only the window's tail is converted."""
        c = self.config
        tail = request.audio[-round(c.partial_window_s * request.sample_rate) * 2 :]
        audio = self._audio(tail, request.sample_rate, "QQ")
        if audio.size < c.partial_min_s * _RATE or rms_dbfs(audio) < c.silence_dbfs:
            return None
        text = self._partial_text(audio, language)
        if not text:
            return None
        duration = len(request.audio) / 2 / request.sample_rate
        return TranscriptSegment(
            text=text, start_s=max(duration - audio.size / _RATE, 0.0), end_s=duration
        )

    def _partial_text(self, audio: FloatAudio, language: str) -> str:
        """Encode and decode the window itself, not a 30 s pad of it (thread side)."""
        c = self.config
        model = self._require_model()
        window = audio[-int(c.partial_window_s * _RATE) :]
        features = model.feature_extractor(window)
        pad = c.partial_pad_ms // 10  # 10 ms per mel frame
        if pad:
            features = np.pad(features, ((0, 0), (0, pad)))
        encoded = model.encode(features)
        tokenizer, suppress = self._tokenizer(language)
        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        budget = math.ceil(window.size / _RATE * c.partial_tokens_per_s) + 8
        max_length = min(len(prompt) + budget, model.max_length)
        result = model.model.generate(
            encoded,
            [prompt],
            beam_size=1,
            max_length=max_length,
            no_repeat_ngram_size=c.no_repeat_ngram_size,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=suppress,
        )[0]
        tokens = _cut_restart([t for t in result.sequences_ids[0] if t < tokenizer.eot])
        text = str(tokenizer.decode(tokens)).strip()
        avg_logprob = (
            float(result.scores[0]) * len(tokens) / (len(tokens) + 1) if tokens else -math.inf
        )
        if not text:
            return ""
        if result.no_speech_prob > c.no_speech_threshold and avg_logprob < c.log_prob_threshold:
            return ""
        if (
            len(tokens) >= max_length - len(prompt)
            or _compression_ratio(text) > c.compression_ratio_threshold
        ):
            return ""  # ran out of budget or repeats itself: a loop, not speech
        return text

    # -- helpers ------------------------------------------------------------------------

    def _require_model(self) -> Any:
        if self._model is None:
            raise EngineError(
                "the faster-whisper engine is not loaded", code=ErrorCode.STT_FAILED, stage="stt"
            )
        return self._model

    def _tokenizer(self, language: str) -> tuple[Any, list[int]]:
        cached = self._tokenizers.get(language)
        if cached is None:
            from faster_whisper.tokenizer import Tokenizer
            from faster_whisper.transcribe import get_suppressed_tokens

            model = self._require_model()
            multilingual = bool(model.model.is_multilingual)
            tokenizer = Tokenizer(
                model.hf_tokenizer,
                multilingual,
                task="transcribe",
                language=language if multilingual else None,
            )
            cached = (tokenizer, list(get_suppressed_tokens(tokenizer, [-1])))
            self._tokenizers[language] = cached
        return cached

    def _language(self, requested: str) -> str:
        language = requested.split("-")[0].lower()
        supported = self._require_model().supported_languages
        if language not in supported:
            hint = (
                f"the English-only model {self.config.model!r} cannot transcribe {requested!r}; "
                f"set {_SETTING}=whisper-base for other languages"
                if supported == ["en"]
                else f"Whisper does not know the language {requested!r}"
            )
            raise EngineError(
                hint, code=ErrorCode.INVALID_SETTINGS, stage="stt", language=requested
            )
        return language

    @staticmethod
    def _audio(pcm: bytes, sample_rate: int, quality: str) -> FloatAudio:
        """PCM16 to float32 at 16 kHz; ``QQ`` (quick) resampling is enough for interim text."""
        return resample(pcm16_to_float(pcm), sample_rate, _RATE, quality=quality)


def _compression_ratio(text: str) -> float:
    """Whisper's loop detector: repeated text compresses far better than speech."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data))


def _cut_restart(tokens: list[int], n: int = 3) -> list[int]:
    """Cut where the first ``n`` tokens come round again.

    On a short window Whisper sometimes finishes the sentence and starts it over ("Please
    send me the report. Please send the"); the repeat is never speech worth showing.
    """
    if len(tokens) < 2 * n:
        return tokens
    head = tokens[:n]
    for start in range(n, len(tokens) - n + 1):
        if tokens[start : start + n] == head:
            return tokens[:start]
    return tokens
