"""What the two language routers share: engines by language tag, and a default.

:class:`~pipeline.engines.tts.routing.LanguageRoutingSynthesizer` and
:class:`~pipeline.engines.stt.routing.LanguageRoutingTranscriber` each pick an engine
per request by its language tag, most specific first (``de-AT`` tries ``de-at``, then
``de``, then the default); they differ in how routes are built and what a request
carries, not in how one is chosen, loaded or closed.
"""

from __future__ import annotations

import asyncio
from typing import Any, Generic, TypeVar

from pipeline.engines.base import Engine

E = TypeVar("E", bound=Engine)


def language_tag(language: str) -> str:
    """``en_GB`` / ``EN-gb`` → ``en-gb``: how routes and requests are compared."""
    return language.strip().lower().replace("_", "-")


class LanguageRoutes(Generic[E]):
    """A mixin for a router engine: ``default`` and ``by_language`` (set by the router's
    ``__init__``, tags through :func:`language_tag`) and what follows from them."""

    default: E
    by_language: dict[str, E]

    @property
    def engines(self) -> tuple[E, ...]:
        """Every distinct engine, the default first."""
        unique: dict[int, E] = {id(self.default): self.default}
        for engine in self.by_language.values():
            unique.setdefault(id(engine), engine)
        return tuple(unique.values())

    @property
    def ready(self) -> bool:
        return all(engine.ready for engine in self.engines)

    def route(self, language: str | None) -> E:
        """The engine for a language tag: the most specific match; ``None`` or no match:
        the default."""
        tag = language_tag(language or "")
        while tag:
            if tag in self.by_language:
                return self.by_language[tag]
            tag = tag.rpartition("-")[0]
        return self.default

    async def describe_routes(self) -> list[dict[str, Any]]:
        """Each distinct engine's own description with the tags routed to it under
        ``routed`` (``*``: every other language, and detection): what a client sees as the
        models loaded (``/v1/models`` lists one entry per routed model, never the router)."""
        described = []
        for engine in self.engines:
            tags = [tag for tag, routed in self.by_language.items() if routed is engine]
            if engine is self.default:
                tags.append("*")
            described.append({**await engine.describe(), "routed": tags})
        return described

    async def close(self) -> None:
        """Close every engine, even when one of them fails to close."""
        results = await asyncio.gather(
            *(engine.close() for engine in self.engines), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
