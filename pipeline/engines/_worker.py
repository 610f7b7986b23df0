"""Where an engine's blocking model runs: its worker thread, and the streams on it.

Every engine around a blocking library needs the same few things besides the bridge
itself (:func:`pipeline.aio.iterate_in_thread`): a thread that owns the model, a way to
refuse work once the engine is closed, the streams still running (so that ``close()``
can end them with an error instead of leaving their consumers waiting), and whether the
model is busy. :class:`ModelWorker` holds exactly that, in one of two shapes:

* **shared** (the default): one thread for the model's whole life. Loading, single calls
  (:meth:`ModelWorker.call`) and streams run on it in submission order: llama.cpp,
  CTranslate2's Whisper, WhisperX and torch models are not safe to call from two threads.
* **a thread per stream** (``shared=False``): for a model that is safe to share
  (onnxruntime's ``InferenceSession.run``), so requests overlap. The threads are a pool
  (up to :data:`STREAM_THREADS` streams at once, more wait for one), kept between streams
  under the engine's name: a process that runs other work too can tell the model's CPU
  by thread, which a thread that ended takes with it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pipeline.aio import ThreadStream, iterate_in_thread, name_os_thread
from schemas import EngineError, ErrorCode

__all__ = ["ModelWorker"]

#: streams of an engine with a thread per stream that run at once (a stage's bound is
#: lower: the CPU profile's Synthesizer runs 8)
STREAM_THREADS = 16

R = TypeVar("R")
T = TypeVar("T")

_CODES = {
    "stt": ErrorCode.STT_FAILED,
    "llm": ErrorCode.LLM_FAILED,
    "tts": ErrorCode.TTS_FAILED,
    "vad": ErrorCode.VAD_FAILED,
    "turn_text": ErrorCode.TURN_DETECTION_FAILED,
}


class ModelWorker:
    """The worker thread(s) of one engine and the streams running on them."""

    def __init__(self, engine: str, stage: str, *, thread_name: str, shared: bool = True) -> None:
        self._engine = engine
        self._stage = stage
        self._thread_name = thread_name
        self._shared = shared
        self._executor: ThreadPoolExecutor | None = None
        self._streams: set[ThreadStream[Any]] = set()
        #: the waiters of single calls on the shared thread, failed by close()
        self._calls: set[asyncio.Future[Any]] = set()

    def start(self) -> None:
        """Open for work (idempotent); a shared worker starts its thread."""
        if self._shared and self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=self._thread_name,
                initializer=name_os_thread, initargs=(self._thread_name,),
            )

    @property
    def busy(self) -> bool:
        """A stream's worker is running or queued (including one whose consumer left)."""
        return self.active > 0

    @property
    def active(self) -> int:
        """Streams whose worker has not left them yet."""
        self._forget_finished()
        return sum(not stream.done() for stream in self._streams)

    @property
    def serving(self) -> int:
        """Streams whose consumer is still reading."""
        self._forget_finished()
        return sum(not stream.closed for stream in self._streams)

    async def call(self, fn: Callable[[], R]) -> R:
        """Run one blocking call on the model's thread and return its result (loading,
        tokenizing, a batch); with a thread per stream, on a thread of its own. ``close()``
        fails a call still waiting on the shared thread with a transient ``EngineError``,
        as it ends the streams."""
        if not self._shared:
            return await asyncio.to_thread(fn)
        loop = asyncio.get_running_loop()
        try:
            work = self._executor_or_refuse().submit(fn)
        except RuntimeError as exc:  # closed between the check and the submit
            raise self._error("is closed") from exc
        waiter: asyncio.Future[R] = loop.create_future()
        work.add_done_callback(lambda done: self._hand_back(loop, waiter, done))
        self._calls.add(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            work.cancel()  # still queued: it never runs
            raise
        finally:
            self._calls.discard(waiter)

    def _hand_back(
        self, loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[R],
        work: concurrent.futures.Future[R],
    ) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
            loop.call_soon_threadsafe(self._settle, waiter, work)

    def _settle(self, waiter: asyncio.Future[R], work: concurrent.futures.Future[R]) -> None:
        """A call's outcome, unless close() has already failed its waiter."""
        if waiter.done():
            return
        if work.cancelled():  # the executor was shut down before it ran
            waiter.set_exception(self._error("was closed during the request"))
        elif (exc := work.exception()) is not None:
            waiter.set_exception(exc)
        else:
            waiter.set_result(work.result())

    def stream(
        self,
        produce: Callable[[], Iterable[T]],
        *,
        buffer: int | None,
        join_timeout_s: float = 0.0,
        stop: threading.Event | None = None,
    ) -> ThreadStream[T]:
        """Start ``produce`` on the worker and stream its items (see the bridge's contract).

        Raises ``EngineError`` (transient) when the engine is closed.
        """
        executor = self._executor_or_refuse() if self._shared else self._pool()
        try:
            stream = iterate_in_thread(
                produce,
                executor=executor,
                buffer=buffer,
                join_timeout_s=join_timeout_s,
                stop=stop,
            )
        except RuntimeError as exc:  # closed between the check and the submit
            raise self._error("is closed") from exc
        self._forget_finished()
        self._streams.add(stream)
        return stream

    async def wait_idle(self) -> None:
        """Wait until every stream's worker has left it (bound it with ``asyncio.timeout``:
        a worker leaves at the latest one model step after its stream was closed)."""
        for stream in list(self._streams):
            await stream.wait()
        self._forget_finished()

    async def close(self, *, wait: bool = True) -> None:
        """End every running stream with a transient ``EngineError`` and stop taking work.

        ``wait``: return once the workers have left the model (off the event loop), so
        the caller may free it; otherwise at once, the running step finishing behind.
        A shared worker refuses new work until :meth:`start` is called again.
        """
        for stream in list(self._streams):
            stream.abort(self._error("was closed during the request"))
        for waiter in list(self._calls):  # a running call's result comes too late to use
            if not waiter.done():
                waiter.set_exception(self._error("was closed during the request"))
        executor, self._executor = self._executor, None
        if executor is not None:
            if wait:
                await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
            else:
                executor.shutdown(wait=False, cancel_futures=True)
        elif wait:
            await self.wait_idle()

    def _pool(self) -> ThreadPoolExecutor:
        """The stream threads of an engine that has one per stream (made on first use,
        and again after :meth:`close`)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=STREAM_THREADS, thread_name_prefix=self._thread_name,
                initializer=name_os_thread, initargs=(self._thread_name,),
            )
        return self._executor

    def _executor_or_refuse(self) -> ThreadPoolExecutor:
        if self._executor is None:
            raise self._error("is closed")
        return self._executor

    def _error(self, what: str) -> EngineError:
        return EngineError(
            f"the {self._engine} engine {what}",
            code=_CODES[self._stage],
            stage=self._stage,
            transient=True,
        )

    def _forget_finished(self) -> None:
        self._streams = {s for s in self._streams if not (s.closed and s.done())}
