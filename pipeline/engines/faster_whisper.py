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
time, judged as well; see :data:`QUICKWINDOW_S`), never batched, with its tokens bounded
by its length. A short window makes Whisper loop on a word now and then; such a transcript
is decoded again in the full window.

Voice turns (one window's worth, language known, greedy, no prompt; batched or not) are
decoded the same way in ``turn_window_s``: a spoken question lasts a few seconds, so a 30 s
encoding is mostly padding, and the Transcriber is the largest stage of a voice turn on the
CPU (issue 23). Unset, it is :data:`ENGLISH_TURN_WINDOW_S` (15 s) for an English-only model
(the CPU profile's tiny.en: ~2x less CPU a call, no more word errors) and Whisper's own 30 s
for a multilingual one (base lost words in German at 15 s); the figures are on the option.
A batch decodes the turns of each window together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import AsyncGenerator, Callable, Generator, Iterator, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import Field

from pipeline.aio import Batcher
from pipeline.audio import (
    FloatAudio,
    check_pcm16,
    check_sample_rate,
    pcm16_to_float,
    resample,
    rms_dbfs,
)
from pipeline.engines._whisper import WhisperModelOptions, whisper_model_path
from pipeline.engines._whisper_windows import (
    SAMPLE_RATE,
    WINDOW_S,
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

#: defaults of the batching options: turns that queued behind a running call share the
#: next one, nothing waits for company. loadtests/bench_stt_batch.py, tiny.en, turns in
#: their 15 s window, two cores (2026-11-26): 8 concurrent requests all done after 0.51 s
#: batched against 0.99 s one by one; 4: 0.32 / 0.43 s; one alone 0.116 / 0.118 s (no cost)
BATCH_MAX_ITEMS = 8
BATCH_WAIT_MS = 0.0
#: Whisper base on two cores, the turn-taking benchmark's overlap corpus (27 sounds of
#: ~1 s, two seeds), judged backchannel or not: a 15 s window took ~460 ms a call against
#: ~1,285 ms for 30 s, and judged as well (2 wrong of 27 each seed; 30 s: 3 and 2). At
#: 10 s, ~345 ms but 4 and 6 wrong (a cough heard as "I'm sorry."); at 5 s words repeat
#: ("Stop. Stop. Stop. ..."); tiny.en, weaker, mishears more at 10 s than at 15 s
QUICKWINDOW_S = 15.0
#: a word of two letters or more: what a loop taken out must still hold
_A_WORD = re.compile(r"[^\W\d_]{2,}")
#: the quantisation where ``compute_type`` is unset: int8 on the CPU (the fastest there,
#: and what every CPU figure was measured with); on a GPU float16, the packaged models' own
#: weights and WhisperX's GPU setting (``bench_stt_batch.py --device cuda --compute-types
#: float16,int8_float16`` compares the two)
COMPUTE_TYPES: dict[str, str] = {"cpu": "int8", "cuda": "float16"}
_DEVICE_SETTING = "VOXLINE_STT__DEVICE"


class FasterWhisperOptions(WhisperModelOptions):
    """Options of the ``faster-whisper`` engine (``VOXLINE_STT__*``)."""

    device: Literal["cpu", "cuda"] = Field(
        default="cpu",
        description="where CTranslate2 runs the model: cpu, or cuda (a GPU CTranslate2 "
        "itself sees: refused at load otherwise)",
    )
    device_index: int = Field(default=0, ge=0, description="which GPU, with device=cuda")
    compute_type: str | None = Field(
        default=None,
        description="CTranslate2 quantisation (int8, int8_float16, float16, float32, ...); "
        "unset: int8 on the CPU, float16 on a GPU",
    )
    cpu_threads: int = Field(default=0, ge=0, le=64, description="0: min(4, CPU count)")
    beam_size: int = Field(default=1, ge=1, le=10, description="1 is greedy: fastest")
    no_speech_threshold: float = Field(default=0.6, ge=0.0, le=1.0)
    log_prob_threshold: float = Field(default=-1.0, le=0.0)
    compression_ratio_threshold: float = Field(default=2.4, gt=1.0)
    silence_dbfs: float = Field(
        default=-60.0, le=0.0, description="quieter audio is silence: no model call"
    )
    warmup: bool = Field(default=True, description="one tiny call at load: no slow first turn")
    batch_max_items: int = Field(
        default=BATCH_MAX_ITEMS,
        ge=1,
        le=64,
        description="short utterances of different requests decoded in one call; 1: none",
    )
    batch_wait_ms: float = Field(
        default=BATCH_WAIT_MS,
        ge=0.0,
        le=200.0,
        description="how long an utterance waits for others to share its call; 0: only "
        "those that queued behind a running call share it",
    )
    quick_window_s: float = Field(
        default=QUICKWINDOW_S,
        ge=5.0,
        le=WINDOW_S,
        description="the window a quick request (TranscriptionRequest.quick) is encoded in, "
        "when its audio fits: the encoder's cost is about proportional to it; 30: "
        "Whisper's own window (quick requests as any other)",
    )
    turn_window_s: float | None = Field(
        default=None,
        ge=5.0,
        le=WINDOW_S,
        description="the window a voice turn (language known, greedy, no prompt) is "
        "encoded in when its audio fits, batched or not; a transcript that loops is decoded "
        "again in 30 s; 30: Whisper's own window; unset: 15 for an English-only model "
        "(~2x less CPU a call for tiny.en, no more word errors), 30 for a multilingual one",
    )


#: the turn window of an English-only model (``turn_window_s`` unset). tiny.en on two cores
#: (``loadtests/bench_stt_window.py``, 2026-11-26: the engine's own path over the turn
#: corpus's 160 English turns of seeds 0 and 1, Piper and three espeak voices, and 30
#: renditions of "What is the capital of France?" by Piper, its sampling noise on): word
#: error rate 19.8 % at 30 s, 17.4 % at 20 s, 17.1 % at 15 s, 16.7 % at 10 s, at 257 / 145 /
#: 109 / 82 ms and 0.43 / 0.25 / 0.21 / 0.16 CPU-s a call; France heard in all 30 at every
#: window (other renditions: "... of friends?" once in 30 at 20, 15 and 10 s, never at 30 s,
#: the same morning; 3 times at 15 s and once at 20 s on 2026-11-25).
#: 10 s saves ~25 ms more but sends questions over 9.5 s to 30 s, so 15. A multilingual
#: model keeps 30 s: base in German (16 espeak turns) 45.9 % at 30 s, 49.0 % at 15 s.
ENGLISH_TURN_WINDOW_S = 15.0


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
    ) -> list[list[TranscriptSegment] | BaseException]:
        """Requests in one window, as :func:`decode_windows` takes them (a quick request
        or a voice turn alone in its short window: :meth:`_run_window`)."""
        return await self._model_call(lambda: self._batch_sync(items, window_s, max_length))

    async def _run_turns(
        self, items: Sequence[Utterance]
    ) -> list[list[TranscriptSegment] | BaseException]:
        """The batcher's call: a batch of voice turns (:meth:`_turns_sync`)."""
        return await self._model_call(lambda: self._turns_sync(items))

    async def _model_call(
        self, call: Callable[[], list[list[TranscriptSegment] | BaseException]]
    ) -> list[list[TranscriptSegment] | BaseException]:
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
    ) -> list[list[TranscriptSegment] | BaseException]:
        """One batch (or one quick request) on the worker thread
        (:func:`~pipeline.engines._whisper_windows.decode_windows`)."""
        return decode_windows(self._require_model(), self.options, items, self._audio,
                              self._rest, window_s=window_s, max_length=max_length)

    def _turns_sync(
        self, items: Sequence[Utterance]
    ) -> list[list[TranscriptSegment] | BaseException]:
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
