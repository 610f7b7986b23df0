"""The text-to-speech stage as a Serve deployment (Coqui TTS on GPU, Piper on CPU)."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from ray import serve

from deployments._stage import StageReplica
from pipeline.engines import Synthesizer
from schemas import AudioChunk, SynthesisRequest


@serve.deployment(name="Synthesizer", ray_actor_options={"num_cpus": 1})
class SynthesizerReplica(StageReplica):
    """Streams audio chunks in playback order; one chunk is one item."""

    stage = "tts"

    async def synthesize(
        self, request: SynthesisRequest, context: dict[str, str] | None = None
    ) -> AsyncGenerator[AudioChunk, None]:
        async with self.call("synthesize", context):
            engine = await self.engine()
            assert isinstance(engine, Synthesizer)
            async for chunk in engine.synthesize(request):
                yield chunk
