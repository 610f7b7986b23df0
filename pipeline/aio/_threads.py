"""One bridge from a blocking iterator on a worker thread to an async iterator.

Model libraries (CTranslate2, llama.cpp, onnxruntime, torch) block, and some of them are
thread-affine: a model must be created and called on the same thread. Every engine that
runs one streams its results through :func:`iterate_in_thread`, in the spirit of
Starlette's ``iterate_in_threadpool`` with two differences that engines need: the whole
iterator is driven by *one* worker thread (not a thread hop per item), and leaving the
stream early stops the work behind it.

The contract (what the engines rely on):

* **What is yielded**: the iterator's items, in order, each as soon as the worker has
  made it. At most ``buffer`` items wait for the consumer; then the worker blocks until
  the consumer takes one (``buffer=None``: no bound, for iterators whose input bounds
  their output, such as the segments of one recording).
* **What ends the stream**: the end of the iterator; or an exception raised by it (or by
  ``produce``), which the consumer gets after the items made before it; or
  :meth:`ThreadStream.abort`, whose error the consumer gets after the items already
  waiting.
* **Cancellation**: when the consumer leaves early (``aclose()``, which
  ``contextlib.aclosing`` and the engines' ``finally`` blocks call when a task is
  cancelled or a loop breaks), the worker stops before it asks for the next item, and
  the iterator's ``close()`` runs *on the worker thread*, so a generator's ``finally`` or
  ``except GeneratorExit`` can release what it holds and record "cancelled". What cannot
  be interrupted is the item being computed; ``aclose()`` waits for the worker at most
  ``join_timeout_s`` (0: not at all). Blocking calls that can poll (a progress callback)
  watch the ``stop`` event. A stream left before its worker started never calls
  ``produce``.
* **A closed event loop** (the consumer's process is shutting down) stops the worker
  quietly; it never raises into the worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future
from typing import Any, Generic, TypeVar

from pipeline.aio._thread_names import name_os_thread

__all__ = ["ThreadStream", "iterate_in_thread"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# What travels from the worker to the consumer: (kind, value).
_ITEM, _END, _ERROR = "item", "end", "error"


class _Channel(Generic[T]):
    """What the consumer and the worker share; the worker holds only this, never the
    :class:`ThreadStream`, so a stream dropped without ``aclose()`` still stops it."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, buffer: int | None, stop: threading.Event
    ) -> None:
        self.loop = loop
        # Unbounded as an asyncio queue, bounded by ``slots``: the worker takes a slot
        # before each item and the consumer gives it back, so at most ``buffer`` items
        # and one final message wait here.
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.slots = threading.Semaphore(buffer) if buffer is not None else None
        self.stop = stop
        self.lock = threading.Lock()
        self.started = False

    def leave(self) -> None:
        """Stop the worker (any thread): it ends before its next item."""
        with self.lock:
            self.stop.set()
        if self.slots is not None:
            self.slots.release()  # wakes a worker waiting for room; it then sees ``stop``

    def send(self, kind: str, value: Any = None) -> bool:
        """Hand a message to the loop (worker thread); False when nobody will read it."""
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (kind, value))
        except RuntimeError:  # the loop is closed
            self.stop.set()
            return False
        return True

    def work(self, produce: Callable[[], Iterable[T]]) -> None:
        """The worker: make the iterator and drive it until it ends or the stream stops."""
        with self.lock:
            if self.stop.is_set():
                return  # left before the work started: it never starts
            self.started = True
        iterator = None
        try:
            iterator = iter(produce())
            while not self.stop.is_set():
                try:
                    item = next(iterator)
                except StopIteration:
                    self.send(_END)
                    return
                if self.slots is not None:
                    self.slots.acquire()
                if self.stop.is_set() or not self.send(_ITEM, item):
                    return
        except BaseException as exc:  # every failure reaches the consumer, whatever it is
            self.send(_ERROR, exc)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                try:
                    close()  # on this thread: the generator's own cleanup runs here
                except Exception:
                    logger.exception("closing a worker-thread iterator failed")


class ThreadStream(Generic[T]):
    """An async iterator over a blocking iterator driven by one worker thread.

    Made by :func:`iterate_in_thread`, which starts the work (see the module docstring
    for the contract). Consume it inside ``async with contextlib.aclosing(stream)`` so
    that leaving early stops the worker at once rather than when the stream is
    garbage-collected.
    """

    def __init__(
        self,
        channel: _Channel[T],
        done: Future[None],
        thread: threading.Thread | None,
        join_timeout_s: float,
    ) -> None:
        self._channel = channel
        #: Settled when the worker has left the stream (or will never start it).
        self._done = done
        self._thread = thread
        self._join_timeout_s = join_timeout_s
        self._closed = False
        self._aborted = False
        # Dropped without aclose() (a consumer that forgot): the worker stops anyway.
        weakref.finalize(self, channel.leave)

    # -- the consumer (event-loop thread) ------------------------------------------------

    def __aiter__(self) -> ThreadStream[T]:
        return self

    async def __anext__(self) -> T:
        if self._closed:
            raise StopAsyncIteration
        kind, value = await self._channel.queue.get()
        if kind == _ITEM:
            if self._channel.slots is not None:
                self._channel.slots.release()
            item: T = value
            return item
        self._closed = True
        self._channel.leave()
        if kind == _ERROR:
            raise value
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Leave the stream: the worker stops before its next item (see the contract).

        Waits for the worker at most ``join_timeout_s``; idempotent.
        """
        self._closed = True
        self._channel.leave()
        if self._join_timeout_s > 0 and not self._done.done():
            await asyncio.wait({asyncio.wrap_future(self._done)}, timeout=self._join_timeout_s)

    def abort(self, error: BaseException) -> None:
        """End the stream with ``error`` (event-loop thread), e.g. when the engine closes.

        The consumer gets the items already waiting, then ``error``; the worker stops
        before its next item. Nothing happens once the consumer has finished.
        """
        if self._closed or self._aborted:
            return
        self._aborted = True
        self._channel.leave()
        # Through the loop's callbacks, as the worker's items come: after those it sent.
        self._channel.loop.call_soon(self._channel.queue.put_nowait, (_ERROR, error))

    # -- the worker, seen from outside ---------------------------------------------------

    @property
    def closed(self) -> bool:
        """The consumer has finished: it got the end or an error, or it left."""
        return self._closed

    @property
    def started(self) -> bool:
        """The worker called ``produce``; final once the stream is closed."""
        return self._channel.started

    def done(self) -> bool:
        """The worker has left the stream (or never will start it)."""
        return self._done.done()

    async def wait(self) -> None:
        """Wait until the worker has left the stream (bound it with ``asyncio.timeout``:
        the worker leaves at the latest one item after the stream stopped)."""
        await asyncio.wait({asyncio.wrap_future(self._done)})
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)  # its last instructions: no wait


def _report_never_started(channel: _Channel[Any]) -> Callable[[Future[None]], None]:
    def check(future: Future[None]) -> None:
        if future.cancelled():  # the executor was shut down before the work started
            channel.send(_ERROR, RuntimeError("the worker thread was shut down"))

    return check


def iterate_in_thread(
    produce: Callable[[], Iterable[T]],
    *,
    executor: Executor | None = None,
    buffer: int | None = 1,
    join_timeout_s: float = 0.0,
    stop: threading.Event | None = None,
    thread_name: str = "voxline-worker",
) -> ThreadStream[T]:
    """Start ``produce()`` on a worker thread and stream its items (see the module docstring).

    ``produce`` is called on the worker thread, which then drives the iterator it
    returns: thread-affine libraries stay on one thread. ``executor`` runs the worker
    (its single thread for engines whose model lives on one; calls queue in order);
    without one the stream gets a fresh daemon thread named ``thread_name``. ``stop``,
    when given, is set when the stream stops, for blocking calls that can poll it.
    Call it on the event loop that consumes the stream; the work starts at once.
    Raises ``RuntimeError`` when ``executor`` is shut down.
    """
    if buffer is not None and buffer < 1:
        raise ValueError("buffer must be at least 1 (or None: unbounded)")
    channel: _Channel[T] = _Channel(asyncio.get_running_loop(), buffer, stop or threading.Event())
    if executor is not None:
        submitted = executor.submit(channel.work, produce)  # RuntimeError: shut down
        submitted.add_done_callback(_report_never_started(channel))
        return ThreadStream(channel, submitted, None, join_timeout_s)
    done: Future[None] = Future()

    def run() -> None:
        if thread_name:
            name_os_thread(thread_name)
        try:
            channel.work(produce)
        finally:
            done.set_result(None)

    # A daemon: a model step in flight must never keep the interpreter alive.
    thread = threading.Thread(target=run, name=thread_name, daemon=True)
    thread.start()
    return ThreadStream(channel, done, thread, join_timeout_s)
