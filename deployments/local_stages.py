"""The three model stages in the Gateway's own process: the one-machine CPU profile.

On a GPU cluster the Transcriber, LanguageModel and Synthesizer are deployments of their
own, placed on their GPUs and scaled apart. On one machine with two cores that placement
buys nothing and costs a Ray worker process per stage (~0.5 % of a core each doing nothing:
its core worker's 10 ms signal check) and two process crossings per streamed item. There
(``deployments.app.IN_PROCESS_STAGES``) the Gateway loads the engines itself, each on its
own threads as in a replica, behind the bounds the stage's deployment options name
(:func:`pipeline.engines.bounded_stage`): the same limits, the same ``overloaded``
refusals, the same per-stage meters and spans. A model's failure is the same
``EngineError`` it was in a replica; a model that stops being ready fails the Gateway's
health check, and Serve starts a fresh Gateway (its sessions resume from the log).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from deployments._stage import StageConfig, stream_window
from pipeline.engines import (
    Engine,
    LanguageModel,
    StageBound,
    Synthesizer,
    Transcriber,
    bounded_stage,
    create_engine,
)
from pipeline.meters import StageCalls
from pipeline.tracing import otlp_tracing
from schemas import EngineError, Settings

logger = logging.getLogger(__name__)

#: the stages a Gateway may run itself, by their deployments' names
STAGE_DEPLOYMENTS = {"stt": "Transcriber", "llm": "LanguageModel", "tts": "Synthesizer"}


class LocalStages:
    """A Gateway's own stage engines, each behind its bound (see the module docstring)."""

    def __init__(self, engines: Mapping[str, Engine], tracing: list[Any]) -> None:
        self.engines = dict(engines)
        self._tracing = tracing

    @classmethod
    async def load(cls, settings: Settings, bounds: Mapping[str, Mapping[str, int]],
                   calls: StageCalls) -> LocalStages:
        """Create and load the engines ``VOXLINE_STT``/``LLM``/``TTS`` name, side by side;
        ``bounds`` maps a stage to its ``ongoing`` and ``queued`` limits. A failure (a bad
        option, a missing model) closes everything made so far, once every load has ended."""
        stages = cls({}, [])
        retry = settings.admission.retry_after_ms
        try:
            for stage in STAGE_DEPLOYMENTS:
                choice = getattr(settings, stage)
                options = choice.engine_options()
                provider = otlp_tracing(f"voxline-{stage}")  # None: tracing is off
                if provider is not None:
                    stages._tracing.append(provider)
                bound = StageBound(stage, bounds[stage]["ongoing"], bounds[stage]["queued"],
                                   retry_after_ms=retry)
                stages.engines[stage] = bounded_stage(
                    create_engine(stage, choice.engine, options), bound, calls,
                    tracer=None if provider is None else provider.get_tracer("voxline"),
                    settings=options,
                    window=stream_window(StageConfig(engine=choice.engine)))
            # every load ends before any engine is closed: none is closed while it loads
            loaded = await asyncio.gather(*(e.load() for e in stages.engines.values()),
                                          return_exceptions=True)
            failed = [result for result in loaded if isinstance(result, BaseException)]
            if failed:
                raise failed[0]
        except BaseException:
            await stages.aclose()
            raise
        logger.info("stage engines in this process: %s",
                    {stage: engine.name for stage, engine in stages.engines.items()})
        return stages

    @property
    def stt(self) -> Transcriber:
        engine = self.engines["stt"]
        assert isinstance(engine, Transcriber)
        return engine

    @property
    def llm(self) -> LanguageModel:
        engine = self.engines["llm"]
        assert isinstance(engine, LanguageModel)
        return engine

    @property
    def tts(self) -> Synthesizer:
        engine = self.engines["tts"]
        assert isinstance(engine, Synthesizer)
        return engine

    def check_health(self) -> None:
        """An engine that is no longer ready fails the health check, as its replica's would."""
        for stage, engine in self.engines.items():
            if not engine.ready:
                raise EngineError(f"the {stage} engine is not ready", stage=stage)

    async def aclose(self) -> None:
        for engine in self.engines.values():
            with contextlib.suppress(Exception):
                await engine.close()
        for provider in self._tracing:  # the batched spans go out (a blocking flush)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(provider.shutdown)
