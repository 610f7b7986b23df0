"""A transcriber that picks another transcriber by the language of each request.

An English-only Whisper is both faster and better at English than a multilingual one of
the same size, and the packaged *tiny.en* is about half the cost of the multilingual
*base* (0.4 s against 0.8 s for a short utterance on two idle cores). A session says its
language, so the choice can be made per request, the way
:class:`~pipeline.engines.tts.routing.LanguageRoutingSynthesizer` picks a voice. The CPU
profile's default is::

    LanguageRoutingTranscriber()  # en -> faster-whisper whisper-tiny.en,
                                  # everything else -> faster-whisper whisper-base

Routing is by the request's language tag, most specific first (``en-GB`` tries ``en-gb``,
then ``en``); a request without a language (detect it: an uploaded file) goes to the
default, which must therefore be multilingual. Engines are given as instances, or as
:class:`TranscriberRoute` (a registry name and its options, built here once per distinct
route), so the router is itself built from settings (``VOXLINE_STT__OPTIONS``).
``model`` (``VOXLINE_STT__MODEL=whisper-tiny.en``) is a shortcut: one faster-whisper
model for every language, no routing, as before the router existed.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.engines._routes import LanguageRoutes, language_tag
from pipeline.engines.base import Transcriber
from schemas import ConfigurationError, TranscriptionRequest, TranscriptSegment

__all__ = ["LanguageRoutingTranscriber", "LanguageRoutingTranscriberOptions", "TranscriberRoute"]

_SETTING = "VOXLINE_STT__OPTIONS"


class TranscriberRoute(BaseModel):
    """An engine of the registry and its options."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    engine: str = "faster-whisper"
    options: dict[str, Any] = Field(default_factory=dict)

    def key(self) -> str:
        return json.dumps([self.engine, self.options], sort_keys=True, default=str)


_MULTILINGUAL = TranscriberRoute(options={"model": "whisper-base"})
_ENGLISH = TranscriberRoute(options={"model": "whisper-tiny.en"})


class LanguageRoutingTranscriberOptions(BaseModel):
    """Options of the ``language-router`` STT engine (``VOXLINE_STT__OPTIONS``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    default: Transcriber | TranscriberRoute = Field(
        default=_MULTILINGUAL,
        description="the engine for every language not listed, and for detection "
        "(multilingual)",
    )
    by_language: dict[str, Transcriber | TranscriberRoute] | None = Field(
        default=None,
        description="language tag -> engine; unset: {'en': whisper-tiny.en} unless "
        "`model` is set",
    )
    model: str | None = Field(
        default=None,
        description="one faster-whisper model for every language (no routing): the "
        "VOXLINE_STT__MODEL shortcut",
    )
    engine_options: dict[str, Any] = Field(
        default_factory=dict,
        description="options for every route built here from a name (cpu_threads, "
        "beam_size ...); a route's own options win",
    )
    batch_max_items: int | None = Field(
        default=None, ge=1, le=64,
        description="every faster-whisper route's batch_max_items (utterances of "
        "different requests in one call; 1: none); unset: the engine's default",
    )
    batch_wait_ms: float | None = Field(
        default=None, ge=0.0, le=200.0,
        description="every faster-whisper route's batch_wait_ms (how long an utterance "
        "waits for company); unset: the engine's default",
    )
    quick_window_s: float | None = Field(
        default=None, ge=5.0, le=30.0,
        description="every faster-whisper route's quick_window_s (the window a quick "
        "judgement is encoded in; 30: Whisper's own); unset: the engine's default",
    )
    turn_window_s: float | None = Field(
        default=None, ge=5.0, le=30.0,
        description="every faster-whisper route's turn_window_s (the window a voice turn "
        "is encoded in; 30: Whisper's own); unset: the engine's default (15 for an "
        "English-only model, 30 for a multilingual one)",
    )


def _label(engine: Transcriber) -> str:
    """``faster-whisper:whisper-tiny.en``: the engine and, where it has one, its model."""
    model = getattr(engine.options, "model", None)
    return f"{engine.name}:{model}" if model else engine.name


class LanguageRoutingTranscriber(LanguageRoutes[Transcriber], Transcriber):
    """Sends each request to the transcriber registered for its language, else ``default``."""

    name = "language-router"
    Options = LanguageRoutingTranscriberOptions
    options: LanguageRoutingTranscriberOptions

    def __init__(
        self, options: LanguageRoutingTranscriberOptions | None = None, **fields: Any
    ) -> None:
        super().__init__(options, **fields)
        o = self.options
        default: Transcriber | TranscriberRoute = o.default
        by_language = o.by_language
        if o.model is not None:
            if by_language or "default" in o.model_fields_set:
                raise ConfigurationError(
                    "the STT router takes `model` (one model for all) or routes, not both",
                    setting=_SETTING,
                )
            default, by_language = TranscriberRoute(options={"model": o.model}), {}
        elif by_language is None:
            by_language = {"en": _ENGLISH}
        built: dict[str, Transcriber] = {}  # one instance per distinct route
        shortcuts = {
            name: value
            for name, value in (("batch_max_items", o.batch_max_items),
                                ("batch_wait_ms", o.batch_wait_ms),
                                ("quick_window_s", o.quick_window_s),
                                ("turn_window_s", o.turn_window_s))
            if value is not None
        }

        def resolve(engine: Transcriber | TranscriberRoute) -> Transcriber:
            if isinstance(engine, Transcriber):
                return engine
            if engine.engine == self.name:
                raise ConfigurationError("the STT router cannot route to itself",
                                         setting=_SETTING)
            key = engine.key()  # equal routes share one engine (one model in memory)
            if key not in built:
                from pipeline.engines.registry import create_engine

                options = {**o.engine_options, **engine.options}
                if engine.engine == "faster-whisper":  # the shortcuts
                    options = {**shortcuts, **options}
                created = create_engine("stt", engine.engine, options)
                assert isinstance(created, Transcriber)  # create_engine checked the stage
                built[key] = created
            return built[key]

        self.default = resolve(default)
        self.by_language = {
            language_tag(lang): resolve(engine) for lang, engine in by_language.items()
        }

    async def load(self) -> None:
        """Load every engine, one after the other: two Whisper loads at once only compete
        for the same cores."""
        for engine in self.engines:
            await engine.load()

    async def describe(self) -> dict[str, Any]:
        described = await super().describe()
        routes = {tag: _label(engine) for tag, engine in self.by_language.items()}
        return {**described, "default": _label(self.default), "routes": routes,
                "models": await self.describe_routes()}

    async def transcribe(
        self, request: TranscriptionRequest
    ) -> AsyncGenerator[TranscriptSegment, None]:
        """Yield what the routed engine yields; closing this stream closes the engine's."""
        stream = self.route(request.language).transcribe(request)
        async with contextlib.aclosing(stream):
            async for segment in stream:
                yield segment
