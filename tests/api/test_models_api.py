"""``/v1/models`` lists the models actually loaded: one entry per routed model, never the
router (both stages' routers are called ``language-router``), and each synthesizer's
``voice_map`` names voices that model speaks, not engines.

Built like the CPU profile (English on Whisper tiny.en and a Piper voice, every other
language on Whisper base and espeak-ng) from scripted engines, so no model loads.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator

import httpx
import openai
import pytest

from pipeline.engines import OPENAI_VOICES, Transcriber
from pipeline.engines.stt.routing import LanguageRoutingTranscriber
from pipeline.engines.tts.routing import LanguageRoutingSynthesizer
from schemas import ApiSettings, EventLogSettings, TranscriptionRequest, TranscriptSegment
from tests.support.api_harness import Harness, serve_api
from tests.support.engines import ScriptedLLM, ScriptedTTS


class WhisperLike(Transcriber):
    """A transcriber that names its model like faster-whisper does."""

    name = "faster-whisper"

    def __init__(self, model: str) -> None:
        super().__init__()
        self.model = model

    @property
    def model_name(self) -> str:
        return self.model

    async def transcribe(
        self, request: TranscriptionRequest
    ) -> AsyncGenerator[TranscriptSegment, None]:
        yield TranscriptSegment(text=self.model, start_s=0, end_s=1)


class OneVoice(ScriptedTTS):
    """Piper-like: one voice file, named as the model."""

    name = "piper"

    def __init__(self, voice: str) -> None:
        super().__init__(chunks_per_piece=1)
        self.voices = (voice,)

    @property
    def model_name(self) -> str:
        return self.voices[0]


class ManyVoices(ScriptedTTS):
    """espeak-like: a voice per language, chosen by the request's language."""

    name = "espeak"

    def __init__(self) -> None:
        super().__init__(chunks_per_piece=1)
        self.voices = ("de", "fr", "en-us")


@pytest.fixture
async def harness(redis_url: str, key_prefix: str) -> AsyncIterator[Harness]:
    stt = LanguageRoutingTranscriber(default=WhisperLike("whisper-base"),
                                     by_language={"en": WhisperLike("whisper-tiny.en")})
    tts = LanguageRoutingSynthesizer(default=ManyVoices(),
                                     by_language={"en": OneVoice("en_US-joe-medium")})
    async with serve_api(redis_url, EventLogSettings(key_prefix=key_prefix),
                         llm=ScriptedLLM(["Hi."]), tts=tts, stt=stt,
                         api=ApiSettings(voice_map={"nova": "de", "echo": "unknown"})
                         ) as harness:
        yield harness


async def test_every_routed_model_is_an_entry_and_resolves(harness: Harness) -> None:
    async with openai.AsyncOpenAI(base_url=harness.url + "/v1", api_key="unused",
                                  max_retries=0) as client:
        listed = (await client.models.list()).data
        ids = [model.id for model in listed]
        assert sorted(ids) == sorted(["scripted-llm", "whisper-base", "whisper-tiny.en",
                                      "en_US-joe-medium", "espeak", "silero-vad"])
        assert "language-router" not in ids
        for model_id in ids:  # each id the list gives is one the endpoint answers
            assert (await client.models.retrieve(model_id)).id == model_id
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("language-router")
    by_id = {m.id: m.model_extra or {} for m in listed}
    assert by_id["whisper-tiny.en"]["routed"] == ["en"]
    assert by_id["whisper-base"]["routed"] == ["*"]
    assert (by_id["whisper-base"]["stage"], by_id["whisper-base"]["engine"]) == (
        "stt", "faster-whisper")
    assert by_id["en_US-joe-medium"]["routed"] == ["en"]
    assert by_id["espeak"]["routed"] == ["*"]


async def test_voice_map_names_the_voices_each_model_speaks(harness: Harness) -> None:
    async with httpx.AsyncClient(base_url=harness.url) as http:
        piper = (await http.get("/v1/models/en_US-joe-medium")).json()
        espeak = (await http.get("/v1/models/espeak")).json()
    assert piper["voices"] == ["en_US-joe-medium"]
    # one voice: every OpenAI name speaks with it ("nova" maps to a voice of espeak's)
    assert piper["voice_map"] == dict.fromkeys(sorted(OPENAI_VOICES), "en_US-joe-medium")
    # voices by language: the mapped voice it knows, else null (the language decides)
    assert espeak["voice_map"]["nova"] == "de"
    assert espeak["voice_map"]["alloy"] is None and espeak["voice_map"]["echo"] is None
    assert len(espeak["voice_map"]) == 13
    engines = {"language-router", "piper", "espeak"}
    assert not engines & {v for v in piper["voice_map"].values()}
