"""Several requests in one llama.cpp context, each in a sequence: the CPU LLM's scheduler.

One ``llama_decode`` of k tokens of k sequences costs far less than k steps of one
(``loadtests/bench_llm_parallel.py``). The scheduler runs on the engine's one worker
thread (llama.cpp's context is not thread-safe) and loops while there is work:

* **Admission between steps.** A request waits for a free one of the ``n_seq``
  sequences; its prompt is tokenized and checked against one sequence's window
  (:func:`~pipeline.engines.llm.prompting.reply_budget`: over it fails that request alone,
  ``llm_failed``, ``details.reason == "context_overflow"``). Only what no cache holds is
  evaluated: a session's next turn goes on in its dialogue's sequence, a new dialogue to
  the one used longest ago with the shared beginning copied in (:func:`place`).
* **First pieces first.** Each step is one ``llama_decode`` of the oldest ``together``
  requests still in their :data:`HEAD_TOKENS` (else all; ``together`` None: always all):
  a decoding one's last token, a new one's prompt tokens up to ``n_batch`` (over several
  steps if longer); each sampled with a chain of its own (``Llama``'s). k in a step cost
  less than k steps, but each gets its tokens later (docs/measurements.md, "One reply at a
  time").
* **Text per consumer.** Tokens become text as in the one-at-a-time engine (the
  :class:`~pipeline.engines.llm._detokenizer.Detokenizer`, the
  :class:`~pipeline.engines.llm.prompting.StopScanner`), into the request's own queue on
  the event loop; with ``queue_size`` pieces unread its sequence sits steps out.
* **Cancellation.** A consumer that leaves marks its request; before the next step its
  sequence is freed (``finish_reason="cancelled"``), the others untouched; the consumer
  waits up to ``cancel_wait_s`` for that. A request still waiting is dropped at once.
* **Bounded.** ``n_seq`` decode, ``max_waiting`` wait; one more: ``overloaded`` at once.

A failed ``llama_decode`` fails its step's requests (their caches cleared), no other;
``close()`` ends every request with a transient error.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator
from typing import Any

from pipeline.engines._llama_cpp_open import LlamaSequences
from pipeline.engines._worker import ModelWorker
from pipeline.engines.base import GenerationStats
from pipeline.engines.llm._detokenizer import Detokenizer
from pipeline.engines.llm._llama_cpp_requests import (
    End,
    Request,
    SamplerSettings,
    Slot,
    call_soon,
    clear_slot,
    copy_cache,
    keep_prefix,
    place,
    sampler_chain,
)
from pipeline.engines.llm.prompting import DialoguePrompt, StopScanner, reply_budget
from schemas import EngineError, ErrorCode, OverloadedError, SamplingSettings

__all__ = ["HEAD_TOKENS", "ParallelScheduler", "SamplerSettings"]

#: a reply's first tokens, its first spoken piece (3-4 words; the LLM stage sends as many
#: one by one): what a listener waits for, decoded before any reply already speaking
HEAD_TOKENS = 8

class ParallelScheduler:
    """Streams the replies of up to ``seqs.n_seq`` requests, first pieces first (above)."""

    def __init__(
        self,
        seqs: LlamaSequences,
        worker: ModelWorker,
        *,
        n_ctx: int,
        sampler: SamplerSettings,
        queue_size: int,
        max_waiting: int,
        cancel_wait_s: float,
        together: int | None = 1,
    ) -> None:
        self._seqs = seqs
        self._lib = seqs.lib
        self._worker = worker
        #: the context window of one request: the option, at most what llama.cpp gave
        self.n_ctx = min(n_ctx, seqs.n_ctx_seq)
        self._sampler = sampler
        self._queue_size = queue_size
        self._max_waiting = max_waiting
        self._cancel_wait_s = cancel_wait_s
        self._together = together
        self._slots = [Slot(i) for i in range(seqs.n_seq)]
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._waiting: deque[Request] = deque()
        self._admitted = 0  # requests holding a sequence (under the lock)
        self._running = False
        self._closing: EngineError | None = None
        self._job: asyncio.Future[None] | None = None
        self._active: list[Request] = []  # the worker's own
        self._batch: Any = None

    @property
    def busy(self) -> bool:
        """Requests are decoding or waiting (including ones whose consumer left)."""
        with self._lock:
            return bool(self._waiting) or self._admitted > 0

    async def generate(
        self, prompt: DialoguePrompt, sampling: SamplingSettings, stats: GenerationStats,
        grammar: Any = None,
    ) -> AsyncGenerator[str, None]:
        """The reply's text pieces (kept in ``grammar``, a ``LlamaGrammar``, if given);
        refused at once (``OverloadedError``) when ``max_waiting`` requests already wait
        for a sequence."""
        request = self._submit(prompt, sampling, stats)
        request.grammar = grammar
        try:
            while True:
                item = await request.out.get()
                if isinstance(item, End):
                    if item.error is not None:
                        raise item.error
                    return
                request.taken += 1
                self._wake.set()  # a paused sequence may go on
                yield item
        finally:
            if not request.ended:
                self._cancel(request)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._cancel_wait_s):
                        await request.released.wait()

    def close(self, error: EngineError) -> None:
        """End every request with ``error`` (the running ones before the next step) and
        refuse new ones; then close the worker, which waits for the loop to leave."""
        with self._lock:
            self._closing = error
            waiting, self._waiting = list(self._waiting), deque()
        for request in waiting:
            self._finish_now(request, "cancelled", error)
        self._wake.set()

    # -- the event loop's side --------------------------------------------------------

    def _submit(
        self, prompt: DialoguePrompt, sampling: SamplingSettings, stats: GenerationStats
    ) -> Request:
        request = Request(prompt, sampling, stats, asyncio.get_running_loop())
        with self._lock:
            if self._closing is not None:
                raise self._closing
            if len(self._waiting) + self._admitted >= len(self._slots) + self._max_waiting:
                raise OverloadedError(
                    f"{len(self._slots)} requests are being answered and "
                    f"{len(self._waiting)} wait for the LLM",
                    retry_after_ms=1000,
                    stage="llm",
                    reason="llm_queue_full",
                )
            self._waiting.append(request)
            start = not self._running
            self._running = True
        self._wake.set()
        if start:
            self._job = asyncio.ensure_future(self._worker.call(self._run))
            self._job.add_done_callback(self._job_done)
        return request

    def _job_done(self, job: asyncio.Future[None]) -> None:
        """The loop could not run at all (the worker was closed): fail what waits."""
        if job.cancelled() or job.exception() is None:
            return
        error = job.exception()
        with self._lock:
            self._running = False
            waiting, self._waiting = list(self._waiting), deque()
        for request in waiting:
            self._finish_now(request, "error", error)

    def _cancel(self, request: Request) -> None:
        with self._lock:
            if request in self._waiting:  # never reached a sequence
                self._waiting.remove(request)
                self._finish_now(request, "cancelled", None)
                return
        request.cancelled = True
        self._wake.set()

    @staticmethod
    def _finish_now(request: Request, finish: str, error: BaseException | None) -> None:
        """End a request that never reached the worker (on the event loop)."""
        request.stats.finish_reason, request.stats.worker_done = finish, True
        request.ended = True
        request.out.put_nowait(End(error))
        request.released.set()

    # -- the worker thread's side -----------------------------------------------------

    def _run(self) -> None:
        """The loop: admit, step, until nothing is left to do (on the worker thread)."""
        if self._batch is None:
            self._batch = self._lib.llama_batch_init(self._seqs.n_batch, 0, 1)
        try:
            while self._loop_once():
                pass
        except BaseException as exc:  # a bug or llama.cpp raising: nothing may hang
            error = EngineError(
                f"llama.cpp failed while generating: {exc!r}",
                code=ErrorCode.LLM_FAILED,
                stage="llm",
                transient=False,
            )
            for request in list(self._active):
                clear_slot(self._lib, self._seqs, request.slot)
                self._end(request, "error", error)
            with self._lock:
                waiting, self._waiting = list(self._waiting), deque()
                self._running = False
            for request in waiting:
                request.loop.call_soon_threadsafe(self._finish_now, request, "error", error)
            if not isinstance(exc, Exception):
                raise

    def _loop_once(self) -> bool:
        self._wake.clear()
        admitted: list[Request] = []
        with self._lock:
            closing = self._closing
            if closing is None:
                while self._waiting and (slot := self._free_slot()) is not None:
                    request = self._waiting.popleft()
                    request.slot, slot.busy = slot, True
                    self._admitted += 1
                    admitted.append(request)
            if closing is None and not self._active and not admitted:
                self._running = False
                return False
        if closing is not None:
            for request in list(self._active):
                self._end(request, "cancelled", closing)
            with self._lock:
                self._running = False
            return False
        for request in admitted:
            self._start(request)
        for request in list(self._active):
            if request.cancelled:
                self._end(request, "cancelled")
        runnable = [r for r in self._active if r.pending or r.sent - r.taken < self._queue_size]
        heads = [r for r in runnable if r.stats.completion_tokens < HEAD_TOKENS]
        if runnable:  # _active is in the order they came
            self._step(heads[:self._together] if heads and self._together else runnable)
        elif self._active:
            self._wake.wait()  # every consumer is behind: wait for one to read or leave
        return True

    def _free_slot(self) -> Slot | None:
        return next((slot for slot in self._slots if not slot.busy), None)

    def _start(self, request: Request) -> None:
        """Tokenize, check the window, place the prompt in a sequence (:func:`place`)."""
        request.started = time.perf_counter()
        self._active.append(request)
        try:
            tokens = self._seqs.tokenize(request.prompt.text.encode("utf-8"), True, False)
            request.stats.prompt_tokens = len(tokens)
            request.max_tokens = reply_budget(len(tokens), self.n_ctx, request.sampling.max_tokens)
        except EngineError as exc:
            self._end(request, "error", exc)
            return
        assert request.slot is not None
        slot, keep = self._place(request.slot, tokens)
        request.slot = slot
        if keep > 0 and not keep_prefix(self._lib, self._seqs, slot, keep):
            keep = 0
        if keep == 0:
            clear_slot(self._lib, self._seqs, slot)
        slot.tokens, slot.used = slot.tokens[:keep], request.started
        request.stats.cached_tokens = keep
        request.pending = tokens[keep:]
        request.sampler = sampler_chain(self._seqs, self._lib, self._sampler,
                                        request.sampling, request.grammar)
        request.detokenizer = Detokenizer(self._lib, self._seqs)
        request.scanner = StopScanner(
            request.prompt.stop, strip_leading=not request.prompt.continuation
        )

    def _place(self, given: Slot, tokens: list[int]) -> tuple[Slot, int]:
        """The free sequence the prompt runs in (``given`` is reserved already), its cache
        copied from another first where :func:`place` says so, and the tokens it holds."""
        with self._lock:
            placement = place(tokens, [given, *(s for s in self._slots if not s.busy)],
                              self._slots)
            if placement.slot is not given:
                given.busy, placement.slot.busy = False, True
        if placement.source is not None:
            copy_cache(self._lib, self._seqs, placement.source, placement.slot)
        return placement.slot, placement.keep

    def _step(self, runnable: list[Request]) -> None:
        """One ``llama_decode`` for the given runnable sequences, then one token each."""
        batch = self._batch
        batch.n_tokens = 0
        sampled: list[tuple[Request, int]] = []
        in_batch: list[Request] = []

        def add(token: int, slot: Slot, logits: bool) -> None:
            i = batch.n_tokens
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, len(slot.tokens), 1
            batch.seq_id[i][0], batch.logits[i] = slot.seq_id, logits
            batch.n_tokens = i + 1
            slot.tokens.append(token)

        for request in runnable:
            if not request.pending:
                assert request.slot is not None
                add(request.next_token, request.slot, True)
                sampled.append((request, batch.n_tokens - 1))
                in_batch.append(request)
        room = self._seqs.n_batch - batch.n_tokens
        for request in runnable:
            if request.pending and room > 0:
                assert request.slot is not None
                chunk, request.pending = request.pending[:room], request.pending[room:]
                for n, token in enumerate(chunk, 1):
                    add(token, request.slot, n == len(chunk) and not request.pending)
                room -= len(chunk)
                in_batch.append(request)
                if not request.pending:
                    sampled.append((request, batch.n_tokens - 1))
        code = self._lib.llama_decode(self._seqs.ctx, batch)
        if code != 0:
            error = EngineError(
                f"llama.cpp failed to decode a batch (code {code})",
                code=ErrorCode.LLM_FAILED,
                stage="llm",
                transient=code == 1,
                llama_code=code,
            )
            for request in in_batch:
                clear_slot(self._lib, self._seqs, request.slot)
                self._end(request, "error", error)
            return
        for request, index in sampled:
            self._token(request, request.sampler.sample(self._seqs._ctx, index))

    def _token(self, request: Request, token: int) -> None:
        """One sampled token: text for the consumer, or the end of the reply."""
        stats, detokenizer, scanner = request.stats, request.detokenizer, request.scanner
        assert detokenizer is not None and scanner is not None
        finish = "stop"
        if not detokenizer.is_end(token):
            stats.completion_tokens += 1
            text, stopped = scanner.feed(detokenizer.feed(token))
            if text:
                self._send(request, text)
            if not stopped:
                if stats.completion_tokens < request.max_tokens:
                    request.next_token = token
                    return
                finish = "length"
        # What the scanner held back is reply text now; bytes of a character cut off by
        # max_tokens stay in the decoder and are dropped.
        tail = scanner.flush()
        if tail:
            self._send(request, tail)
        self._end(request, finish)

    def _send(self, request: Request, text: str) -> None:
        if request.stats.first_text_s is None:
            request.stats.first_text_s = time.perf_counter() - request.started
        request.sent += 1
        call_soon(request.loop, request.out.put_nowait, text)

    def _end(self, request: Request, finish: str, error: BaseException | None = None) -> None:
        """The request leaves its sequence (whose cache stays, for the next prompt)."""
        stats = request.stats
        stats.finish_reason = finish
        stats.duration_s = time.perf_counter() - request.started
        stats.worker_done = True
        if request in self._active:
            self._active.remove(request)
        with self._lock:
            if request.slot is not None:
                request.slot.busy = False
                request.slot = None
                self._admitted -= 1
        request.ended = True
        request.sampler = None
        call_soon(request.loop, request.out.put_nowait, End(error))
        call_soon(request.loop, request.released.set)

    def free(self) -> None:
        """Free the batch (after the worker has stopped)."""
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None
