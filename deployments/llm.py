"""The language-model stage as a Serve deployment (vLLM on GPU, llama.cpp on CPU)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

from ray import serve

from deployments._stage import StageReplica
from pipeline.engines import LanguageModel
from pipeline.turn import batched
from schemas import GenerationRequest


@serve.deployment(name="LanguageModel", ray_actor_options={"num_cpus": 1})
class LanguageModelReplica(StageReplica):
    """Streams text deltas, several tokens per item (the first one alone, at once)."""

    stage = "llm"

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[str, None]:
        engine = await self.engine()
        assert isinstance(engine, LanguageModel)
        max_items, max_wait_s = self.stream_window()
        deltas = batched(engine.generate(request), max_items=max_items, max_wait_s=max_wait_s)
        async with contextlib.aclosing(deltas) as batches:
            async for batch in batches:
                yield "".join(batch)
