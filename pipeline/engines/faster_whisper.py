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

Batching across requests. With ``batch_max_items`` > 1 (8 by default), the voice-turn
requests of different sessions that end together (short: one 30 s window, language known,
greedy, no prompt, no word timestamps) go through a :class:`~pipeline.aio.Batcher` whose
batch runs on the same worker thread, decoded one window each in one ``generate``
(:mod:`pipeline.engines._whisper_windows`: the segments ``transcribe`` would make), each
in the window it would have alone (the turn window below, where it fits): batching changes
no transcript. Everything else (files, long audio, detection) keeps the streaming path; a
batched request's segments come all at once, after its batch. With ``batch_wait_ms`` 0 (the
default) a request alone runs at once; only those that queued behind a running call share
the next. In Whisper's 30 s window the encoder, which batching cannot cheapen, was most of
the cost and batching gained little; in a turn's 15 s window the decoder's share is larger,
and turns that end together are done about twice as soon (``loadtests/bench_stt_batch.py``).

Quick requests (``TranscriptionRequest.quick``: the few words said over a held reply,
which stays silent until they are judged). Whisper pads everything to 30 s and the
encoder's cost follows the window, so a short quick request is decoded as a voice turn is
(one window's tokens) but padded to ``quick_window_s`` only (15 s: about a third of the
time, judged as well), never batched, with its tokens bounded by its length. A short
window makes Whisper loop on a word now and then; such a transcript is decoded again in
the full window.

Voice turns (one window's worth, language known, greedy, no prompt; batched or not) are
decoded the same way in ``turn_window_s``: a spoken question lasts a few seconds, so a 30 s
encoding is mostly padding, and the Transcriber is the largest stage of a voice turn on the
CPU (issue 23). Unset, it is 15 s for an English-only model (the CPU profile's tiny.en:
~2x less CPU a call, no more word errors) and Whisper's own 30 s for a multilingual one
(base lost words in German at 15 s). A batch decodes the turns of each window together.

The figures each default was chosen by (the quick and turn windows, batching, the
quantisation) are with the options, in :mod:`pipeline.engines._faster_whisper_options`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import AsyncGenerator, Callable, Generator, Iterator, Sequence
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
from pipeline.engines._faster_whisper_options import (
    COMPUTE_TYPES,
    ENGLISH_TURN_WINDOW_S,
    FasterWhisperOptions,
)
from pipeline.engines._whisper import whisper_model_path
from pipeline.engines._whisper_windows import (
    SAMPLE_RATE,
    WINDOW_S,
    Results,
    Utterance,
    decode_by_window,
    decode_windows,
    looped,
    one_window,
    stt_failure,
    token_bound,
    transcript_segment,
    unlooped,
)
from pipeline.engines._worker import ModelWorker
from pipeline.engines.base import Transcriber
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
_DEVICE_SETTING = "VOXLINE_STT__DEVICE"

#: a word of two letters or more: what a loop taken out must still hold
_A_WORD = re.compile(r"[^\W\d_]{2,}")


def _check_gpu(index: int) -> None:
    """Refuse ``device=cuda`` at load where CTranslate2 sees no GPU ``index`` (its build
    without CUDA, no driver, or fewer GPUs): a clear configuration error, as the Coqui and
    WhisperX engines give, instead of CTranslate2's own error from deep in the load."""
    import ctranslate2

    try:
        count = int(ctranslate2.get_cuda_device_count())
    except RuntimeError:  # a CUDA runtime that cannot start: no usable GPU either
        count = 0
    if index >= count:
        seen = "no GPU" if count == 0 else f"{count} GPU(s), not cuda:{index}"
        raise EngineError(
            f"device=cuda but CTranslate2 sees {seen}; set {_DEVICE_SETTING}=cpu",
            code=ErrorCode.CONFIGURATION_ERROR,
            stage="stt",
            recoverable=False,
            setting=_DEVICE_SETTING,
        )


class FasterWhisperTranscriber(Transcriber):
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
    def ready(self) -> bool:
        return self._model is not None

    @property
    def multilingual(self) -> bool:
        return bool(self._require_model().model.is_multilingual)

    @property
    def turn_window_s(self) -> float:
        """The window a voice turn is encoded in: the option, else by the loaded model
        (:data:`ENGLISH_TURN_WINDOW_S` for an English-only one, Whisper's 30 s else)."""
        if self.options.turn_window_s is not None:
            return self.options.turn_window_s
        return WINDOW_S if self.multilingual else ENGLISH_TURN_WINDOW_S

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
        o = self.options
        if o.device == "cuda":
            _check_gpu(o.device_index)
        threads = o.cpu_threads or min(4, os.cpu_count() or 1)
        try:
            model = WhisperModel(
                str(path),
                device=o.device,
                device_index=o.device_index,
                compute_type=self.compute_type,
                cpu_threads=threads,
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

    # -- batching -----------------------------------------------------------------------

    def _batchable(self, request: TranscriptionRequest) -> bool:
        """A voice turn: short, greedy, no word timestamps (language known), and no
        prompt (CTranslate2 needs a batch's prompts to be of one length)."""
        return (self.options.batch_max_items > 1 and not request.prompt
                and one_window(request, WINDOW_S))

    def _short_window(self, request: TranscriptionRequest) -> float | None:
        """The window shorter than Whisper's that ``request`` is encoded in alone, if any:
        a quick judgement's, or a voice turn's that is not batched (a batch gives each of
        its turns the same window, :meth:`_turns_sync`), when the audio fits it."""
        if not request.quick and self._batchable(request):
            return None
        window = self._window_of(request)
        return window if window < WINDOW_S else None

    def _window_of(self, request: TranscriptionRequest) -> float:
        """The window ``request`` is encoded in, alone or batched: a quick judgement's
        quick window, a voice turn's turn window, where its audio fits; else Whisper's."""
        window = self.options.quick_window_s if request.quick else self.turn_window_s
        return window if window < WINDOW_S and one_window(request, window) else WINDOW_S

    async def _run_window(
        self, utterance: Utterance, window_s: float
    ) -> list[TranscriptSegment] | None:
        """One request in its short window, alone, on the worker thread. A short window
        makes Whisper loop now and then: on a word it heard ("Yeah. Yeah. Yeah. Yea", most
        often after an initial prompt), which a quick judgement takes with the loop taken
        out (:func:`unlooped`), or on letters ("m m m ...", which may stand for any word):
        that, a loop that cannot be taken out, or a voice turn's, returns None, and the
        request takes the usual path (~4× the time of tiny.en's quick window). The tokens
        are bounded by the audio's length, so a loop costs little."""
        o = self.options
        [result] = await self._run_batch([utterance], window_s,
                                         token_bound(utterance.request))
        if isinstance(result, BaseException):
            raise result
        if not self._looped(result):
            return result
        text = " ".join(segment.text for segment in result)
        if utterance.request.quick:
            said = unlooped(text)
            if not looped(said, o.compression_ratio_threshold) and _A_WORD.search(said):
                return [result[0].model_copy(update={"text": said, "end_s": result[-1].end_s})]
        logger.info("faster-whisper: a short-window decode looped (%r...); the full window",
                    text[:40])
        return None

    def _looped(self, segments: list[TranscriptSegment]) -> bool:
        text = " ".join(segment.text for segment in segments)
        return looped(text, self.options.compression_ratio_threshold)

    async def _submit(self, utterance: Utterance) -> list[TranscriptSegment]:
        loop = asyncio.get_running_loop()
        if self._batcher is None or self._batcher_loop is not loop:
            self._batcher = Batcher(
                self._run_turns,
                max_items=self.options.batch_max_items,
                max_wait_s=self.options.batch_wait_ms / 1000,
                name="stt",
            )
            self._batcher_loop = loop
        try:
            return await self._batcher.submit(utterance)
        except VoxlineError as exc:
            if self._model is None and exc.code is ErrorCode.SERVER_DRAINING:
                raise EngineError(
                    f"the {self.name} engine was closed during the request",
                    code=ErrorCode.STT_FAILED,
                    stage="stt",
                    transient=True,
                ) from exc
            raise

    async def _run_batch(
        self, items: Sequence[Utterance], window_s: float = WINDOW_S,
        max_length: int | None = None,
    ) -> Results:
        """Requests in one window, as :func:`decode_windows` takes them (a quick request
        or a voice turn alone in its short window: :meth:`_run_window`)."""
        return await self._model_call(lambda: self._batch_sync(items, window_s, max_length))

    async def _run_turns(
        self, items: Sequence[Utterance]
    ) -> Results:
        """The batcher's call: a batch of voice turns (:meth:`_turns_sync`)."""
        return await self._model_call(lambda: self._turns_sync(items))

    async def _model_call(
        self, call: Callable[[], Results]
    ) -> Results:
        """``call`` on the worker thread, never cancelled by a caller (a batch's result is
        its items'); a failing call raises, and the batcher then runs its items one by
        one."""
        self._batches_running += 1
        try:
            return await self._worker.call(call)
        except VoxlineError:
            raise
        except Exception as exc:
            raise stt_failure(exc) from exc
        finally:
            self._batches_running -= 1

    def _batch_sync(
        self, items: Sequence[Utterance], window_s: float = WINDOW_S,
        max_length: int | None = None,
    ) -> Results:
        """One batch (or one quick request) on the worker thread
        (:func:`~pipeline.engines._whisper_windows.decode_windows`)."""
        return decode_windows(self._require_model(), self.options, items, self._audio,
                              self._rest, window_s=window_s, max_length=max_length)

    def _turns_sync(
        self, items: Sequence[Utterance]
    ) -> Results:
        """A batch of voice turns on the worker thread, each decoded as it would be alone
        (:func:`~pipeline.engines._whisper_windows.decode_by_window`)."""
        return decode_by_window(items, lambda item: self._window_of(item.request),
                                self._batch_sync, self._looped)

    def _rest(self, audio: FloatAudio, language: str, request: TranscriptionRequest,
              start_s: float) -> Generator[Any, None, None]:
        """The segments a window left undecoded, through ``transcribe`` from ``start_s``."""
        return self._final_segments(audio, language, request, start_s=start_s)[0]

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
