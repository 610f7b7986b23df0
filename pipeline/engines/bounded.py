"""A model stage called in the caller's own process, with the bounds its deployment had.

On a GPU cluster each model stage is a Serve deployment, and Serve gives it two bounds
besides the hop: the calls a replica runs at once (``max_ongoing_requests``) and the calls
that may wait for one (``max_queued_requests``; past that a call is refused at once and the
client hears ``overloaded``). On one machine the CPU profile runs the three stages in the
Gateway's process instead (``deployments.app.IN_PROCESS_STAGES``): every Ray worker process
costs ~0.5 % of a core doing nothing, and every streamed item crossed two processes (issue
51). These adapters keep what the deployment gave a caller, so nothing upstream can tell:

* :class:`StageBound`: at most ``ongoing`` calls at once, at most ``queued`` waiting in
  arrival order, the next refused at once with :class:`schemas.OverloadedError` (the same
  retry hint the Gateway's own admission gives);
* the Gateway's per-stage meters (:class:`pipeline.meters.StageCalls`: in flight, made,
  refused), as the remote adapters count them;
* with tracing on, each call a span ``<stage>.<method>`` in its turn's trace, under the
  stage's own service name (``voxline-<stage>``), as a stage replica makes it (a reply's
  with its token count, where the engine counts them).

A call holds its place until its stream ends or its consumer leaves (``aclose``, a
cancelled task), as a streaming request holds a replica's.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any, ClassVar

from pipeline.aio import Places
from pipeline.engines.base import (
    Engine,
    GenerationItem,
    LanguageModel,
    Synthesizer,
    Transcriber,
    windowed,
)
from pipeline.meters import StageCalls
from pipeline.tracing import call_span, carrier
from schemas import (
    AudioChunk,
    GenerationRequest,
    GenerationUsage,
    OverloadedError,
    SynthesisRequest,
    TranscriptionRequest,
    TranscriptSegment,
)

__all__ = [
    "BoundedLanguageModel",
    "BoundedSynthesizer",
    "BoundedTranscriber",
    "StageBound",
    "bounded_stage",
    "describe_stage",
]


async def describe_stage(engine: Engine, options: Mapping[str, Any]) -> dict[str, Any]:
    """What a stage runs, for ``/readyz`` and the adapters: its stage, the engine's own
    :meth:`~pipeline.engines.Engine.describe`, and the model, model path and voice its
    options name (never the options at large: they may hold keys)."""
    info: dict[str, Any] = {"stage": engine.stage, **await engine.describe()}
    for name in ("model", "model_path", "voice"):
        if isinstance(options.get(name), str):
            info[name] = options[name]
    return info


class StageBound(Places):
    """At most ``ongoing`` calls of one stage at once and ``queued`` waiting (FIFO); a call
    beyond both is refused at once (see the module docstring)."""

    def __init__(self, stage: str, ongoing: int, queued: int, *,
                 retry_after_ms: int = 1000) -> None:
        super().__init__(ongoing, queued)
        self.stage = stage
        self.retry_after_ms = retry_after_ms

    async def take(self) -> None:
        """Take one of the stage's places, waiting in line for one if all are taken and
        the line is not full; refused at once otherwise. :meth:`give_back` returns it."""
        if self.full:
            raise OverloadedError(
                f"the {self.stage} stage is at capacity, try again shortly",
                retry_after_ms=self.retry_after_ms, stage=self.stage)
        await super().take()


class _BoundedStage:
    """An engine of one stage behind its :class:`StageBound`, meters and spans."""

    stage: ClassVar[str]

    def __init__(self, engine: Engine, bound: StageBound, calls: StageCalls | None = None,
                 tracer: Any = None, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__()  # no options: the engine has them
        self.engine = engine
        self.name = engine.name
        self._bound = bound
        self._calls = calls or StageCalls()
        self._tracer = tracer
        #: the engine's options as configured (what :func:`describe_stage` may name)
        self._settings = dict(settings or {})

    @property
    def ready(self) -> bool:
        return self.engine.ready

    @property
    def model_name(self) -> str | None:
        return self.engine.model_name

    async def load(self) -> None:
        await self.engine.load()

    async def close(self) -> None:
        await self.engine.close()

    async def describe(self) -> dict[str, Any]:
        """What a stage replica would say of its engine (:func:`describe_stage`)."""
        return await describe_stage(self.engine, self._settings)

    async def _stream(self, method: str, items: Callable[[], AsyncGenerator[Any, None]]
                      ) -> AsyncGenerator[Any, None]:
        # in flight from the start, in line or running, as a remote call is counted
        with self._calls.call(self.stage):
            try:
                await self._bound.take()
            except OverloadedError:
                self._calls.refused(self.stage)
                raise
            span = call_span(self._tracer, f"{self.stage}.{method}", carrier())
            try:
                async with contextlib.aclosing(items()) as stream:
                    async for item in stream:
                        if isinstance(item, GenerationUsage) and span is not None:
                            span.set_attribute("voxline.tokens", item.completion_tokens)
                        yield item
            finally:
                if span is not None:
                    span.end()
                self._bound.give_back()


class BoundedTranscriber(_BoundedStage, Transcriber):
    stage = "stt"

    def transcribe(self, request: TranscriptionRequest) -> AsyncGenerator[TranscriptSegment, None]:
        engine = self.engine
        assert isinstance(engine, Transcriber)
        return self._stream("transcribe", lambda: engine.transcribe(request))


class BoundedLanguageModel(_BoundedStage, LanguageModel):
    """Its text deltas come joined over the stream window a replica sends them in
    (:func:`~pipeline.engines.windowed`; ``window`` None: token by token)."""

    stage = "llm"
    #: :func:`~pipeline.engines.windowed`'s keywords
    window: Mapping[str, Any] | None = None

    def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationItem, None]:
        engine = self.engine
        assert isinstance(engine, LanguageModel)
        return self._stream("generate", lambda: self._windowed(engine.generate(request)))

    def generate_with_usage(
        self, request: GenerationRequest
    ) -> AsyncGenerator[GenerationItem | GenerationUsage, None]:
        engine = self.engine
        assert isinstance(engine, LanguageModel)
        return self._stream("generate",
                            lambda: self._windowed(engine.generate_with_usage(request)))

    def _windowed(self, items: AsyncGenerator[Any, None]) -> AsyncGenerator[Any, None]:
        return items if self.window is None else windowed(items, **self.window)

    @property
    def context_tokens(self) -> int | None:
        engine = self.engine
        assert isinstance(engine, LanguageModel)
        return engine.context_tokens


class BoundedSynthesizer(_BoundedStage, Synthesizer):
    stage = "tts"

    async def load(self) -> None:
        """The engine's model, and what it learned from it (rate, voices)."""
        await self.engine.load()
        engine = self.engine
        assert isinstance(engine, Synthesizer)
        self.sample_rate = engine.sample_rate
        self.voices = engine.voices

    @property
    def default_voice(self) -> str | None:
        engine = self.engine
        assert isinstance(engine, Synthesizer)
        return engine.default_voice

    def language_tags(self) -> tuple[str, ...]:
        engine = self.engine
        assert isinstance(engine, Synthesizer)
        return engine.language_tags()

    def synthesize(self, request: SynthesisRequest) -> AsyncGenerator[AudioChunk, None]:
        engine = self.engine
        assert isinstance(engine, Synthesizer)
        return self._stream("synthesize", lambda: engine.synthesize(request))


_ADAPTERS: dict[str, type[_BoundedStage]] = {
    "stt": BoundedTranscriber, "llm": BoundedLanguageModel, "tts": BoundedSynthesizer}


def bounded_stage(engine: Engine, bound: StageBound, calls: StageCalls | None = None,
                  tracer: Any = None, settings: Mapping[str, Any] | None = None,
                  window: Mapping[str, Any] | None = None) -> Engine:
    """``engine`` (of the stage ``stt``, ``llm`` or ``tts``) behind ``bound``; ``settings``
    are the engine options it was made with, ``window`` a language model's stream window."""
    adapter = _ADAPTERS[engine.stage](engine, bound, calls, tracer, settings)
    if isinstance(adapter, BoundedLanguageModel):
        adapter.window = window
    assert isinstance(adapter, Engine)
    return adapter
