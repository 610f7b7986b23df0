"""Every engine takes its options the same way and declares what its callers read.

A bad option fails the same way everywhere (ConfigurationError naming the setting); every
engine's options are an ``<Name>Options`` model, validated once by the base class.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import pytest

from pipeline.engines import ENGINES as REGISTRY
from pipeline.engines import (
    Engine,
    LanguageModel,
    Synthesizer,
    create_engine,
    engine_class,
)
from pipeline.engines.base import NoOptions
from schemas import (
    AudioChunk,
    ConfigurationError,
    ErrorCode,
    GenerationRequest,
    SynthesisRequest,
)

ENGINES = [
    ("stt", "faster-whisper"),
    ("stt", "whisperx"),
    ("stt", "language-router"),
    ("vad", "silero"),
    ("llm", "llama-cpp"),
    ("llm", "openai"),
    ("llm", "vllm"),
    ("tts", "piper"),
    ("tts", "espeak"),
    ("tts", "coqui"),
    ("tts", "language-router"),
]


@pytest.mark.parametrize(("stage", "name"), ENGINES)
def test_unknown_option_is_a_configuration_error(stage: str, name: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        create_engine(stage, name, {"no_such_option": 1})
    assert info.value.code is ErrorCode.CONFIGURATION_ERROR
    assert info.value.details["setting"] == f"VOXLINE_{stage.upper()}__OPTIONS"
    assert "no_such_option" in info.value.message


def test_unknown_engine_names_the_known_ones() -> None:
    with pytest.raises(ConfigurationError) as info:
        create_engine("tts", "nope")
    assert "piper" in info.value.message


# -- one naming style: ``<Name>Options`` validated once by the base class, as ``options`` ---


def _engine_classes() -> list[tuple[str, str, type[Engine]]]:
    return [
        (stage, name, engine_class(stage, name))
        for stage, engines in REGISTRY.items()
        for name in engines
    ]


@pytest.mark.parametrize(("stage", "name", "cls"), _engine_classes(), ids=str)
def test_every_engine_declares_its_options_model(stage: str, name: str, cls: type[Engine]) -> None:
    assert cls.name == name and cls.stage == stage
    assert cls.Options is not NoOptions and cls.Options.__name__.endswith("Options")
    assert cls.Options.model_config.get("extra") == "forbid"
    assert cls.Options.model_config.get("frozen") is True


def test_options_come_as_fields_or_as_one_object() -> None:
    from pipeline.engines.tts.espeak import EspeakOptions, EspeakSynthesizer

    by_fields = EspeakSynthesizer(words_per_minute=200)
    by_object = EspeakSynthesizer(EspeakOptions(words_per_minute=200))
    assert by_fields.options == by_object.options == EspeakOptions(words_per_minute=200)
    with pytest.raises(TypeError):  # both at once: which one wins would be a guess
        EspeakSynthesizer(EspeakOptions(), words_per_minute=200)
    with pytest.raises(TypeError):  # another engine's options are a mistake, not a coercion
        EspeakSynthesizer(NoOptions())  # type: ignore[arg-type]


def test_an_engine_without_options_refuses_any() -> None:
    class Quiet(Synthesizer):
        name = "quiet"

        async def synthesize(self, request: SynthesisRequest) -> AsyncGenerator[AudioChunk, None]:
            return
            yield

    assert Quiet().options == NoOptions()
    with pytest.raises(ConfigurationError) as info:
        Quiet(volume=3)
    assert info.value.details["setting"] == "VOXLINE_TTS__OPTIONS"


def test_the_router_takes_its_options_like_any_engine() -> None:
    from pipeline.engines.tts.espeak import EspeakSynthesizer
    from pipeline.engines.tts.routing import LanguageRoutingOptions, LanguageRoutingSynthesizer

    built = LanguageRoutingSynthesizer(LanguageRoutingOptions(default="espeak", by_language={}))
    assert isinstance(built.default, EspeakSynthesizer) and built.by_language == {}
    with pytest.raises(ConfigurationError) as info:
        create_engine("tts", "language-router", {"by_langauge": {"en": "piper"}})
    assert "by_langauge" in info.value.message


# -- what callers read is declared on the base classes -------------------------------------


async def test_describe_names_the_engine_and_a_synthesizers_rate() -> None:
    class Rate(Synthesizer):
        name = "rate"
        sample_rate = 24000

        async def synthesize(self, request: SynthesisRequest) -> AsyncGenerator[AudioChunk, None]:
            return
            yield

    class Words(LanguageModel):
        name = "words"

        async def generate(self, request: GenerationRequest) -> AsyncGenerator[str, None]:
            return
            yield

    assert await Rate().describe() == {"engine": "rate", "ready": True, "sample_rate": 24000,
                                       "voices": [], "default_voice": None,
                                       "languages": []}
    assert await Words().describe() == {"engine": "words", "ready": True}
    assert Rate().voices == ()  # the engine's default voice only


def test_engines_name_their_model_for_the_model_list() -> None:
    assert create_engine("stt", "faster-whisper", {"model": "whisper-tiny.en"}).model_name == (
        "whisper-tiny.en")
    assert create_engine("llm", "llama-cpp", {}).model_name == "gemma-3-270m-q4_k_m"
    assert create_engine("llm", "llama-cpp", {"model_path": "/m/qwen-0.5b.gguf"}).model_name == (
        "qwen-0.5b")
    assert create_engine("tts", "piper", {}).model_name == "en_US-joe-medium"
    assert create_engine("tts", "espeak", {}).model_name is None  # nothing to name: its name


async def test_the_router_learns_rate_and_voices_from_its_engines() -> None:
    from pipeline.engines.tts.routing import LanguageRoutingSynthesizer

    class Voiced(Synthesizer):
        def __init__(self, name: str, rate: int, voices: tuple[str, ...]) -> None:
            super().__init__()
            self.name, self.sample_rate, self._later = name, rate, voices

        async def load(self) -> None:
            self.voices = self._later  # known once loaded, like piper's and espeak's

        async def synthesize(self, request: SynthesisRequest) -> AsyncGenerator[AudioChunk, None]:
            return
            yield

    router = LanguageRoutingSynthesizer(
        Voiced("a", 16000, ("de",)), {"en": Voiced("b", 22050, ("joe",))}
    )
    assert router.sample_rate == 16000 and router.voices == ()
    await router.load()
    assert router.voices == ("de", "joe")
    assert (await router.describe())["sample_rate"] == 16000


async def test_the_router_declares_the_languages_its_routes_speak() -> None:
    from pipeline.engines.tts.routing import LanguageRoutingSynthesizer

    class Speaks(Synthesizer):
        def __init__(self, name: str, tags: tuple[str, ...]) -> None:
            super().__init__()
            self.name, self._tags = name, tags

        def language_tags(self) -> tuple[str, ...]:
            return self._tags

        async def synthesize(self, request: SynthesisRequest) -> AsyncGenerator[AudioChunk, None]:
            return
            yield

    a, b, takes_all = Speaks("a", ("de", "fr")), Speaks("b", ("en",)), Speaks("any", ())
    router = LanguageRoutingSynthesizer(default=a, by_language={"en-us": b})
    assert set(router.language_tags()) == {"de", "fr", "en", "en-us"}
    assert (await router.describe())["languages"] == list(router.language_tags())
    anything = LanguageRoutingSynthesizer(default=takes_all, by_language={"en": b})
    assert anything.language_tags() == ()  # the default takes every language: not checked
