"""The STT router: each request goes to the transcriber of its language (no model loads)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

import pytest

from pipeline.engines import Transcriber, create_engine
from pipeline.engines.stt.faster_whisper import FasterWhisperTranscriber
from pipeline.engines.stt.routing import LanguageRoutingTranscriber, TranscriberRoute
from schemas import ConfigurationError, Settings, TranscriptionRequest, TranscriptSegment


class NamedSTT(Transcriber):
    """Answers with its own name; records what it was asked and how its streams ended."""

    name = "named"

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label
        self.languages: list[str | None] = []
        self.closed_streams = 0
        self.loaded = self.closed = False

    async def load(self) -> None:
        self.loaded = True

    async def close(self) -> None:
        self.closed = True

    async def transcribe(
        self, request: TranscriptionRequest
    ) -> AsyncGenerator[TranscriptSegment, None]:
        self.languages.append(request.language)
        try:
            for word in (self.label, "again"):
                yield TranscriptSegment(text=word, start_s=0, end_s=1)
        finally:
            self.closed_streams += 1


def _request(language: str | None) -> TranscriptionRequest:
    return TranscriptionRequest(audio=b"\0\0" * 160, sample_rate=16000, language=language)


async def _first(router: Transcriber, language: str | None) -> str:
    stream = router.transcribe(_request(language))
    async with contextlib.aclosing(stream):
        async for segment in stream:
            return segment.text
    raise AssertionError("no segment")


def test_the_default_profile_routes_english_to_tiny_en_and_the_rest_to_base() -> None:
    assert Settings().stt.engine == "language-router"
    router = create_engine("stt", "language-router")
    assert isinstance(router, LanguageRoutingTranscriber)
    english, default = router.route("en-US"), router.route("de")
    assert isinstance(english, FasterWhisperTranscriber)
    assert isinstance(default, FasterWhisperTranscriber)
    assert english.options.model == "whisper-tiny.en"
    assert default.options.model == "whisper-base"
    assert router.route(None) is default  # detection needs the multilingual model
    assert not router.ready  # building loads nothing


def test_one_model_for_all_with_the_model_shortcut() -> None:
    router = LanguageRoutingTranscriber(model="whisper-tiny.en", engine_options={"beam_size": 2})
    assert router.by_language == {}
    only = router.route("en")
    assert isinstance(only, FasterWhisperTranscriber)
    assert (only.options.model, only.options.beam_size) == ("whisper-tiny.en", 2)
    with pytest.raises(ConfigurationError):
        LanguageRoutingTranscriber(model="whisper-base", by_language={"en": NamedSTT("x")})


def test_the_batching_settings_reach_every_faster_whisper_route(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """VOXLINE_STT__BATCH_MAX_ITEMS / __BATCH_WAIT_MS / __QUICK_WINDOW_S /
    __TURN_WINDOW_S work with the default router."""
    monkeypatch.setenv("VOXLINE_STT__BATCH_MAX_ITEMS", "3")
    monkeypatch.setenv("VOXLINE_STT__BATCH_WAIT_MS", "5")
    monkeypatch.setenv("VOXLINE_STT__QUICK_WINDOW_S", "30")
    monkeypatch.setenv("VOXLINE_STT__TURN_WINDOW_S", "20")
    settings = Settings().stt
    router = create_engine("stt", settings.engine, settings.engine_options())
    assert isinstance(router, LanguageRoutingTranscriber)
    for engine in router.engines:
        assert isinstance(engine, FasterWhisperTranscriber)
        o = engine.options
        assert (o.batch_max_items, o.batch_wait_ms, o.quick_window_s) == (3, 5.0, 30.0)
        assert o.turn_window_s == 20.0  # the English route and the multilingual one
    # unset: each engine's own default; a route's own option wins
    plain = LanguageRoutingTranscriber(
        default=TranscriberRoute(options={"model": "whisper-base", "batch_max_items": 2}),
        batch_wait_ms=7,
    )
    assert isinstance(plain.default, FasterWhisperTranscriber)
    assert plain.default.options.batch_max_items == 2
    assert plain.default.options.batch_wait_ms == 7
    english = plain.route("en")
    assert isinstance(english, FasterWhisperTranscriber)
    assert english.options.batch_max_items == FasterWhisperTranscriber.Options().batch_max_items


def test_equal_routes_share_one_engine_and_the_router_cannot_route_to_itself() -> None:
    route = TranscriberRoute(options={"model": "whisper-base"})
    router = LanguageRoutingTranscriber(default=route, by_language={"de": route, "fr": route})
    assert router.route("de") is router.route("fr") is router.default
    assert len(router.engines) == 1
    with pytest.raises(ConfigurationError):
        LanguageRoutingTranscriber(default=TranscriberRoute(engine="language-router"))


async def test_requests_go_to_the_most_specific_route() -> None:
    en, gb, other = NamedSTT("en"), NamedSTT("gb"), NamedSTT("other")
    router = LanguageRoutingTranscriber(default=other, by_language={"en": en, "EN_gb": gb})
    assert await _first(router, "en-US") == "en"
    assert await _first(router, "en-GB") == "gb"
    assert await _first(router, "de") == "other"
    assert await _first(router, None) == "other"
    assert en.languages == ["en-US"] and other.languages == ["de", None]
    # closing the router's stream early closed the engine's
    assert (en.closed_streams, gb.closed_streams, other.closed_streams) == (1, 1, 2)


async def test_load_close_and_describe_cover_every_engine() -> None:
    en, other = NamedSTT("en"), NamedSTT("other")
    router = LanguageRoutingTranscriber(default=other, by_language={"en": en})
    await router.load()
    assert en.loaded and other.loaded
    described = await router.describe()
    assert described["engine"] == "language-router"
    assert described["default"] == "named" and described["routes"] == {"en": "named"}
    await router.close()
    assert en.closed and other.closed
