"""The language-model stage as a Serve deployment (vLLM on GPU, llama.cpp on CPU)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

from ray import serve

from deployments._stage import StageReplica
from pipeline.engines import GenerationItem, LanguageModel, windowed
from schemas import GenerationRequest, GenerationUsage


@serve.deployment(name="LanguageModel", ray_actor_options={"num_cpus": 1})
class LanguageModelReplica(StageReplica):
    """Streams text deltas, several tokens per item (the first few alone, at once), and
    the pieces of the tool calls the model makes, in order."""

    stage = "llm"

    async def generate(
        self, request: GenerationRequest, context: dict[str, str] | None = None
    ) -> AsyncGenerator[GenerationItem, None]:
        async with self.call("generate", context):
            engine = await self.engine()
            assert isinstance(engine, LanguageModel)
            items = windowed(engine.generate(request), **self.stream_window())
            async with contextlib.aclosing(items) as deltas:
                async for item in deltas:
                    assert not isinstance(item, GenerationUsage)
                    yield item

    async def generate_with_usage(
        self, request: GenerationRequest, context: dict[str, str] | None = None
    ) -> AsyncGenerator[GenerationItem | GenerationUsage, None]:
        """:meth:`generate`'s batches, then the engine's token counts (when it has them)."""
        async with self.call("generate", context) as span:
            engine = await self.engine()
            assert isinstance(engine, LanguageModel)
            items = windowed(engine.generate_with_usage(request), **self.stream_window())
            async with contextlib.aclosing(items) as deltas:
                async for item in deltas:
                    if isinstance(item, GenerationUsage) and span is not None:
                        span.set_attribute("voxline.tokens", item.completion_tokens)
                    yield item
