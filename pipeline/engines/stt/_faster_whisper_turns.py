"""How the ``faster-whisper`` engine decodes a voice turn or a quick request: in a window
shorter than Whisper's 30 s where the audio fits, and voice turns that end together in
one batch (the figures and the reasons: :mod:`pipeline.engines.stt._faster_whisper_options`).
A mixin of :class:`pipeline.engines.stt.faster_whisper.FasterWhisperTranscriber`, apart so
that the engine's module holds loading, the stream and languages.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Generator, Sequence
from typing import Any

from pipeline.aio import Batcher
from pipeline.audio import FloatAudio
from pipeline.engines._worker import ModelWorker
from pipeline.engines.stt._faster_whisper_options import FasterWhisperOptions
from pipeline.engines.stt._whisper_windows import (
    WINDOW_S,
    Results,
    Utterance,
    decode_by_window,
    decode_windows,
    looped,
    one_window,
    stt_failure,
    token_bound,
    unlooped,
)
from schemas import (
    EngineError,
    ErrorCode,
    TranscriptionRequest,
    TranscriptSegment,
    VoxlineError,
)

logger = logging.getLogger("pipeline.engines.stt.faster_whisper")

#: a word of two letters or more: what a loop taken out must still hold
_A_WORD = re.compile(r"[^\W\d_]{2,}")


class WindowedTurns:
    """Short windows and batches of voice turns, for the engine that mixes it in."""

    name: str
    options: FasterWhisperOptions
    _model: Any
    _worker: ModelWorker
    _batcher: Batcher[Utterance, list[TranscriptSegment]] | None
    _batcher_loop: asyncio.AbstractEventLoop | None
    _batches_running: int

    @property
    def turn_windows_s(self) -> tuple[float, ...]:
        raise NotImplementedError

    def _require_model(self) -> Any:
        raise NotImplementedError

    @staticmethod
    def _audio(pcm: bytes, sample_rate: int) -> FloatAudio:
        raise NotImplementedError

    def _final_segments(
        self, audio: FloatAudio, language: str | None, request: TranscriptionRequest, *,
        start_s: float = 0.0,
    ) -> tuple[Generator[Any, None, None], str]:
        raise NotImplementedError

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
        quick window, a voice turn's shortest turn window, where its audio fits; else
        Whisper's."""
        windows = (self.options.quick_window_s,) if request.quick else self.turn_windows_s
        return next((window for window in windows
                     if window < WINDOW_S and one_window(request, window)), WINDOW_S)

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
        (:func:`~pipeline.engines.stt._whisper_windows.decode_windows`)."""
        return decode_windows(self._require_model(), self.options, items, self._audio,
                              self._rest, window_s=window_s, max_length=max_length)

    def _turns_sync(
        self, items: Sequence[Utterance]
    ) -> Results:
        """A batch of voice turns on the worker thread, each decoded as it would be alone
        (:func:`~pipeline.engines.stt._whisper_windows.decode_by_window`)."""
        return decode_by_window(items, lambda item: self._window_of(item.request),
                                self._batch_sync, self._looped)

    def _rest(self, audio: FloatAudio, language: str, request: TranscriptionRequest,
              start_s: float) -> Generator[Any, None, None]:
        """The segments a window left undecoded, through ``transcribe`` from ``start_s``."""
        return self._final_segments(audio, language, request, start_s=start_s)[0]
