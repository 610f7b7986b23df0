"""The speech-to-text stage as a Serve deployment (WhisperX on GPU, faster-whisper on CPU)."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from ray import serve

from deployments._stage import StageReplica
from pipeline.engines import Transcriber
from schemas import TranscriptionRequest, TranscriptSegment


@serve.deployment(name="Transcriber", ray_actor_options={"num_cpus": 1})
class TranscriberReplica(StageReplica):
    """Streams a transcript segment by segment (segments are already coarse items)."""

    stage = "stt"

    async def transcribe(
        self, request: TranscriptionRequest, context: dict[str, str] | None = None
    ) -> AsyncGenerator[TranscriptSegment, None]:
        async with self.call("transcribe", context):
            engine = await self.engine()
            assert isinstance(engine, Transcriber)
            async for segment in engine.transcribe(request):
                yield segment
