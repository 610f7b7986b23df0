"""One llama.cpp request at a time (``parallel_sequences=1``): the worker thread's decoding
loop, as ``llama_cpp.Llama.generate`` drives it (the parallel path is
:mod:`pipeline.engines.llm._llama_cpp_parallel`'s). Kept apart from the engine so that each
module holds one idea.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from pipeline.engines.base import GenerationStats
from pipeline.engines.llm._detokenizer import Detokenizer
from pipeline.engines.llm._llama_cpp_parallel import SamplerSettings
from pipeline.engines.llm.prompting import DialoguePrompt, StopScanner, reply_budget
from schemas import EngineError, ErrorCode, SamplingSettings

__all__ = ["decode"]


def decode(
    llm: Any, stats: GenerationStats, prompt: DialoguePrompt, sampling: SamplingSettings,
    sampler: SamplerSettings, grammar: Any = None,
) -> Iterator[str]:
    """The worker: evaluate the prompt and decode token by token until a stop.

    Closing this generator (the consumer left, or the engine closed) records
    ``finish_reason="cancelled"``; it happens between tokens, on the worker thread.
    """
    import llama_cpp

    started = time.perf_counter()
    try:
        tokens = llm.tokenize(prompt.text.encode("utf-8"), add_bos=True, special=False)
        stats.prompt_tokens = len(tokens)
        max_tokens = reply_budget(len(tokens), llm.n_ctx(), sampling.max_tokens)
        # None means "random": llama.cpp draws a fresh seed for its default seed.
        seed = sampling.seed if sampling.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED
        llm.set_seed(seed & 0xFFFFFFFF)
        detokenizer = Detokenizer(llama_cpp, llm)
        scanner = StopScanner(prompt.stop, strip_leading=not prompt.continuation)
        finish = "length"
        tokens_out = llm.generate(
            tokens,
            top_k=sampler.top_k,
            top_p=sampling.top_p,
            min_p=sampler.min_p,
            temp=min(sampling.temperature, sampler.max_temperature),
            repeat_penalty=sampler.repeat_penalty,
            grammar=grammar,
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
