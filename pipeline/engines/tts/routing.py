"""A synthesizer that picks another synthesizer by the language of each piece.

The CPU profile has one neural voice (Piper, US English) and a fallback that speaks
everything else (espeak-ng). A session may switch language between turns, and the turn
orchestration should not have to know which engine speaks what, so the choice is itself a
:class:`~pipeline.engines.base.Synthesizer`: the rest of the pipeline sees one engine.

Routing is by the request's language tag, most specific first: ``de-AT`` tries ``de-at``,
then ``de``, then the default engine. The CPU profile is::

    LanguageRoutingSynthesizer(default="espeak", by_language={"en": "piper"})

Engines are given as instances, or as registry names (built with ``create_engine`` and
``engine_options[name]``), so the router can itself be built from settings
(:class:`LanguageRoutingOptions`, ``VOXLINE_TTS__OPTIONS``).

Voices: a voice belongs to one engine. When a request names a voice that some engine
here knows but the routed engine does not (the session's English Piper voice on a German
piece), the voice is dropped and that language's default voice speaks: a voice is a
preference, and it must not make every piece in another language fail. A voice no engine
knows goes through unchanged, so the routed engine rejects it with its own clear error.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.engines._routes import LanguageRoutes, language_tag
from pipeline.engines.base import Synthesizer
from schemas import AudioChunk, ConfigurationError, SynthesisRequest

__all__ = ["LanguageRoutingOptions", "LanguageRoutingSynthesizer"]


class LanguageRoutingOptions(BaseModel):
    """Options of the ``language-router`` TTS engine (``VOXLINE_TTS__OPTIONS``).

    From settings the engines are registry names; in code they may be instances.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    default: Synthesizer | str = Field(
        default="espeak", description="the engine for every language not listed"
    )
    by_language: dict[str, Synthesizer | str] | None = Field(
        default=None,
        description="language tag -> engine; unset: {'en': 'piper'} when default is a name",
    )
    engine_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="engine name -> its options, for engines built here"
    )


def _voices(engine: Synthesizer) -> frozenset[str]:
    """The voices an engine declares, lower case."""
    return frozenset(voice.lower() for voice in engine.voices)


class LanguageRoutingSynthesizer(LanguageRoutes[Synthesizer], Synthesizer):
    """Sends each piece to the synthesizer registered for its language, else to ``default``."""

    name = "language-router"
    Options = LanguageRoutingOptions
    options: LanguageRoutingOptions

    def __init__(
        self,
        default: LanguageRoutingOptions | Synthesizer | str = "espeak",
        by_language: Mapping[str, Synthesizer | str] | None = None,
        engine_options: Mapping[str, Mapping[str, Any]] | None = None,
        **unknown: Any,  # refused by the options model, like any engine's unknown option
    ) -> None:
        options = default if isinstance(default, LanguageRoutingOptions) else None
        fields: dict[str, Any] = {"default": default} if options is None else {}
        if by_language is not None:
            fields["by_language"] = by_language
        if engine_options is not None:
            fields["engine_options"] = engine_options
        super().__init__(options, **fields, **unknown)
        default = self.options.default
        by_language = self.options.by_language
        engine_options = self.options.engine_options
        if by_language is None:
            by_language = {"en": "piper"} if isinstance(default, str) else {}
        built: dict[str, Synthesizer] = {}  # one instance per registry name

        def resolve(engine: Synthesizer | str) -> Synthesizer:
            if isinstance(engine, Synthesizer):
                return engine
            if engine not in built:
                from pipeline.engines.registry import create_engine

                options = dict(engine_options.get(engine, {}))
                created = create_engine("tts", engine, options)
                assert isinstance(created, Synthesizer)  # create_engine checked the stage
                built[engine] = created
            return built[engine]

        unused = set(engine_options) - {
            name for name in [default, *by_language.values()] if isinstance(name, str)
        }
        if unused:
            raise ConfigurationError(
                f"engine_options for engines the router does not use: {sorted(unused)}",
                setting="VOXLINE_TTS__OPTIONS",
            )
        self.default = resolve(default)
        self.by_language = {
            language_tag(lang): resolve(engine) for lang, engine in by_language.items()
        }
        self._learn_from_engines()

    def _learn_from_engines(self) -> None:
        """Take the default engine's sample rate and every engine's voices (they may
        know them only once loaded)."""
        self.sample_rate = self.default.sample_rate
        self.voices = tuple(dict.fromkeys(v for e in self.engines for v in e.voices))

    def language_tags(self) -> tuple[str, ...]:
        """What the routes speak; empty (not checked) when the default declares nothing,
        since it takes every language no route names."""
        if not self.default.language_tags():
            return ()
        tags = [*self.by_language, *(t for e in self.engines for t in e.language_tags())]
        return tuple(dict.fromkeys(tags))

    async def load(self) -> None:
        """Load every engine concurrently (each loads off the event loop itself)."""
        await asyncio.gather(*(engine.load() for engine in self.engines))
        self._learn_from_engines()

    async def describe(self) -> dict[str, Any]:
        """The router's own description and, under ``models``, each routed engine's."""
        return {**await super().describe(), "models": await self.describe_routes()}

    def _request_for(self, engine: Synthesizer, request: SynthesisRequest) -> SynthesisRequest:
        """Drop a voice that belongs to another engine here (see the module docstring)."""
        if request.voice is None:
            return request
        wanted = request.voice.strip().lower()
        if wanted in _voices(engine):
            return request
        if any(wanted in _voices(other) for other in self.engines if other is not engine):
            return request.model_copy(update={"voice": None})
        return request

    async def synthesize(self, request: SynthesisRequest) -> AsyncGenerator[AudioChunk, None]:
        """Yield what the routed engine yields; closing this stream closes the engine's."""
        engine = self.route(request.language)
        stream = engine.synthesize(self._request_for(engine, request))
        # aclosing: the engine's own cleanup runs now rather than at garbage collection.
        async with contextlib.aclosing(stream):
            async for chunk in stream:
                yield chunk
