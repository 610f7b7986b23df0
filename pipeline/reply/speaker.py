"""Speak pieces of text in order: bounded concurrent synthesis, audio strictly in piece order.

:class:`OrderedSpeaker` is the TTS half of a turn. Pieces are submitted in order; up to
``concurrency`` of them are synthesized at once (started strictly in piece order, so the
piece whose audio goes out next always holds a slot or is done); their chunks are forwarded
to a sink queue strictly in piece order, whatever order synthesis finishes in.

Everything is bounded:

* ``max_pending`` pieces at most are admitted and not yet fully forwarded; :meth:`submit`
  waits for room, which is how a slow synthesizer stops the LLM (backpressure);
* each piece buffers ``chunk_buffer`` chunks at most before its synthesis waits;
* the sink is the caller's :class:`~pipeline.reply.outbox.Outbox`; each chunk waits for room.

What goes into the sink, in order: for each piece either its :class:`SpokenChunk` items
or a :class:`PieceFailed` (after any chunks it produced before failing), then one
:data:`AUDIO_END` once :meth:`close` was called and every piece was forwarded (together:
:data:`~pipeline.reply.items.SpeakerItem`).

A piece may be **prepared** before it is submitted (:meth:`prepare`): its synthesis starts
in a slot of its own, its audio is held, and :meth:`submit` adopts it when the same index
comes with the same text, or cancels it and synthesizes what came (a guess is never
spoken: the audio is always the submitted text's).

A synthesis that raises fails only its piece. :meth:`cancel` cancels every synthesis at
once (the engine sees ``CancelledError``, or ``GeneratorExit`` through ``aclose()`` when it
was suspended at a yield); :meth:`wait_stopped` waits until they all ended.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Final, Protocol

from pipeline.aio import aclose_stream
from pipeline.reply.items import AUDIO_END, PieceFailed, SpeakerItem, SpokenChunk
from schemas import AudioChunk

logger = logging.getLogger(__name__)

Synthesize = Callable[[str], AsyncIterator[AudioChunk]]


class Sink(Protocol):
    """Where the speaker forwards audio: an :class:`~pipeline.reply.outbox.Outbox` that
    takes (at least) what a speaker puts."""

    def put(self, item: SpeakerItem, /) -> None: ...

    def full(self) -> bool: ...

    async def wait_room(self) -> None: ...


@dataclass(frozen=True, slots=True)
class _PieceDone:
    """A piece's synthesis ended without failing: its audio is all in its queue."""


_DONE: Final = _PieceDone()


@dataclass(slots=True, eq=False)
class _Job:
    index: int
    text: str
    chunks: asyncio.Queue[SpokenChunk | PieceFailed | _PieceDone]
    holds_slot: bool = False


class OrderedSpeaker:
    """Synthesize submitted pieces with bounded concurrency; forward audio in order."""

    def __init__(
        self,
        synthesize: Synthesize,
        sink: Sink,
        *,
        concurrency: int,
        max_pending: int,
        chunk_buffer: int,
    ) -> None:
        self._synthesize = synthesize
        self._sink = sink
        self._concurrency = concurrency
        self._chunk_buffer = chunk_buffer
        self._window = asyncio.Semaphore(max_pending)
        self._ordered: asyncio.Queue[_Job | None] = asyncio.Queue()  # bounded by the window
        self._waiting: deque[_Job] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._active = 0
        self._pending = 0
        self._cancelled = False
        self._prepared: tuple[_Job, asyncio.Task[None]] | None = None
        #: the most pieces admitted and not yet forwarded, and of syntheses running, at once
        self.max_pending_seen = 0
        self.max_active_seen = 0
        #: prepared pieces submitted as prepared, and prepared ones dropped
        self.prepared_adopted = 0
        self.prepared_dropped = 0

    # -- producer side -------------------------------------------------------------------

    def prepare(self, index: int, text: str) -> None:
        """Start synthesizing what piece ``index`` is likely to be, if a slot is free (a
        piece prepared before, with other text, is dropped); :meth:`submit` decides."""
        if self._prepared_as(index, text) is not None:
            return
        self._drop_prepared()
        if self._cancelled or self._active >= self._concurrency:
            return
        job = _Job(index, text, asyncio.Queue(self._chunk_buffer))
        self._prepared = (job, self._start(job))

    async def submit(self, index: int, text: str) -> None:
        """Admit piece ``index``; waits while ``max_pending`` pieces are not yet forwarded."""
        await self._window.acquire()
        if self._cancelled:
            return
        self._pending += 1
        self.max_pending_seen = max(self.max_pending_seen, self._pending)
        if (prepared := self._prepared_as(index, text)) is not None:
            self._prepared = None
            self.prepared_adopted += 1
            self._ordered.put_nowait(prepared)
            return
        self._drop_prepared()
        job = _Job(index, text, asyncio.Queue(self._chunk_buffer))
        self._ordered.put_nowait(job)
        if self._active < self._concurrency:
            self._start(job)
        else:
            self._waiting.append(job)

    def close(self) -> None:
        """No more pieces: :meth:`forward` ends after the admitted ones."""
        self._drop_prepared()
        self._ordered.put_nowait(None)

    def _prepared_as(self, index: int, text: str) -> _Job | None:
        """The prepared job, if it is piece ``index`` with ``text``."""
        if self._prepared is None:
            return None
        job = self._prepared[0]
        return job if job.index == index and job.text == text else None

    def _drop_prepared(self) -> None:
        """Cancel the prepared synthesis (its slot frees when the engine has stopped)."""
        if self._prepared is not None:
            self._prepared[1].cancel()
            self._prepared = None
            self.prepared_dropped += 1

    # -- consumer side -------------------------------------------------------------------

    async def forward(self) -> None:
        """Move audio into the sink in piece order until :meth:`close`; then AUDIO_END."""
        sink = self._sink
        while (job := await self._ordered.get()) is not None:
            chunks = job.chunks
            while True:
                item = await chunks.get()
                if isinstance(item, _PieceDone):
                    break
                if sink.full():
                    await sink.wait_room()
                sink.put(item)
                if isinstance(item, PieceFailed):
                    break
            self._pending -= 1
            self._window.release()
        sink.put(AUDIO_END)

    # -- synthesis -----------------------------------------------------------------------

    def _start(self, job: _Job) -> asyncio.Task[None]:
        self._active += 1
        job.holds_slot = True
        self.max_active_seen = max(self.max_active_seen, self._active)
        task = asyncio.create_task(self._speak(job), name=f"tts-piece-{job.index}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        # a task cancelled before it ran never enters _speak's finally (a dropped guess)
        task.add_done_callback(lambda _: self._free_slot(job))
        return task

    def _free_slot(self, job: _Job) -> None:
        if job.holds_slot:
            job.holds_slot = False
            self._active -= 1
            if self._waiting and not self._cancelled:
                self._start(self._waiting.popleft())

    async def _speak(self, job: _Job) -> None:
        try:
            await self._produce(job)
            outcome: PieceFailed | _PieceDone = _DONE
        except Exception as exc:  # the engine failed, refused the request or gave no audio
            outcome = PieceFailed(job.index, exc)
        finally:  # the slot frees when synthesis ends, cancelled or not
            self._free_slot(job)
        await job.chunks.put(outcome)

    async def _produce(self, job: _Job) -> None:
        stream = self._synthesize(job.text)
        try:
            async for chunk in stream:
                if chunk.audio:
                    await job.chunks.put(SpokenChunk(job.index, chunk))
        finally:
            await aclose_stream(stream)

    # -- shutdown ------------------------------------------------------------------------

    def cancel(self) -> None:
        """Cancel every synthesis now and start no more (synchronous, so it is prompt)."""
        self._cancelled = True
        self._prepared = None  # its task is one of those cancelled below
        self._waiting.clear()
        for task in self._tasks:
            task.cancel()

    async def wait_stopped(self, grace: float) -> bool:
        """Wait until every synthesis task ended; False if some outlived ``grace`` seconds."""
        if not self._tasks:
            return True
        _, still = await asyncio.wait(set(self._tasks), timeout=grace)
        if still:
            logger.warning("%d synthesis task(s) ignored cancellation", len(still))
        return not still

    @property
    def active(self) -> int:
        """Syntheses running now."""
        return self._active
