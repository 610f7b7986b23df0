"""``/v1/audio/transcriptions`` driven by the official ``openai`` SDK (issue #12): every
response format, SSE streaming, word timestamps, BCP-47 tags, prompt and temperature on a
scripted transcriber; language detection on the real faster-whisper (*base*) with German
from espeak-ng."""

from __future__ import annotations

import io
import json
import wave
from collections.abc import AsyncIterator

import numpy as np
import openai
import pytest

from pipeline.engines import Transcriber, create_engine
from schemas import (
    EngineError,
    ErrorCode,
    EventLogSettings,
    TranscriptionRequest,
    TranscriptSegment,
)
from tests.support.api_harness import Harness, serve_api
from tests.support.audio_fixtures import GERMAN_SENTENCES, espeak_available, espeak_float
from tests.support.engines import ScriptedLLM, ScriptedSTT, ScriptedTTS

pytestmark = pytest.mark.redis


class EchoSTT(ScriptedSTT):
    """Two segments with words (French, one past an hour); keeps every request it was given.
    Local: only the transcription endpoint's formats need word timings and languages."""

    name = "echo-stt"

    def segments(self, request: TranscriptionRequest, call: int) -> list[TranscriptSegment]:
        words = request.word_timestamps
        return [
            TranscriptSegment(text="Hello there.", start_s=0.0, end_s=1.25, language="fr",
                              words=(("Hello", 0.0, 0.5), ("there.", 0.6, 1.25)) if words
                              else ()),
            TranscriptSegment(text="How are you?", start_s=1.5, end_s=3723.5, language="fr",
                              words=(("How", 1.5, 1.7),) if words else ()),
        ]


def _wav(seconds: float = 1.0) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.zeros(int(16000 * seconds), "<i2").tobytes())
    return out.getvalue()


@pytest.fixture
async def stt() -> EchoSTT:
    return EchoSTT()


@pytest.fixture
async def harness(redis_url: str, key_prefix: str, stt: EchoSTT) -> AsyncIterator[Harness]:
    async with serve_api(redis_url, EventLogSettings(key_prefix=key_prefix),
                         llm=ScriptedLLM(["Hi."]), tts=ScriptedTTS(), stt=stt) as harness:
        yield harness


def _client(harness: Harness) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=harness.url + "/v1", api_key="unused", max_retries=0)


async def test_every_response_format(harness: Harness, stt: EchoSTT) -> None:
    async with _client(harness) as client:
        plain = await client.audio.transcriptions.create(
            model="whisper-1", file=("a.wav", _wav()))
        assert plain.text == "Hello there. How are you?"
        text = await client.audio.transcriptions.create(
            model="whisper-1", file=("a.wav", _wav()), response_format="text")
        assert text == "Hello there. How are you?"
        srt = await client.audio.transcriptions.create(
            model="whisper-1", file=("a.wav", _wav()), response_format="srt")
        assert srt == ("1\n00:00:00,000 --> 00:00:01,250\nHello there.\n\n"
                       "2\n00:00:01,500 --> 01:02:03,500\nHow are you?\n")
        vtt = await client.audio.transcriptions.create(
            model="whisper-1", file=("a.wav", _wav()), response_format="vtt")
        assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.250\nHello there.\n")
        verbose = await client.audio.transcriptions.create(
            model="whisper-1", file=("a.wav", _wav(2.0)), response_format="verbose_json")
    assert verbose.language == "fr"  # detected: no language was sent
    assert verbose.duration == 2.0
    assert [s.text for s in verbose.segments or ()] == ["Hello there.", "How are you?"]
    assert verbose.words is None
    assert {r.language for r in stt.requests} == {None}


async def test_word_timestamps_bcp47_prompt_and_temperature(
        harness: Harness, stt: EchoSTT) -> None:
    async with _client(harness) as client:
        verbose = await client.audio.transcriptions.create(
            model="whisper-1", file=("a.wav", _wav()), response_format="verbose_json",
            timestamp_granularities=["word", "segment"], language="en-US",
            prompt="Voxline, Ray Serve.", temperature=0.4)
    assert [(w.word, w.start, w.end) for w in verbose.words or ()] == [
        ("Hello", 0.0, 0.5), ("there.", 0.6, 1.25), ("How", 1.5, 1.7)]
    request = stt.requests[-1]
    assert (request.language, request.prompt, request.temperature) == (
        "en", "Voxline, Ray Serve.", 0.4)
    assert request.word_timestamps


async def test_bad_fields_are_422(harness: Harness) -> None:
    async with _client(harness) as client:
        for field in ({"temperature": 1.5}, {"language": "english!"}):
            with pytest.raises(openai.UnprocessableEntityError):
                await client.audio.transcriptions.create(
                    model="whisper-1", file=("a.wav", _wav()), **field)  # type: ignore[call-overload]


async def test_stream_sends_deltas_then_done(harness: Harness) -> None:
    async with _client(harness) as client:
        stream = await client.audio.transcriptions.create(
            model="whisper-1", file=("a.wav", _wav()), stream=True)
        events = [event async for event in stream]
    assert [e.type for e in events] == [
        "transcript.text.delta", "transcript.text.delta", "transcript.text.done"]
    assert "".join(e.delta for e in events[:2]) == "Hello there. How are you?"  # type: ignore[union-attr]
    assert events[-1].text == "Hello there. How are you?"  # type: ignore[union-attr]


async def test_stream_raw_event_shapes(harness: Harness) -> None:
    client = _client(harness)
    async with client, client.audio.transcriptions.with_streaming_response.create(
            model="whisper-1", file=("a.wav", _wav()), stream=True) as reply:
        assert reply.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) async for line in reply.iter_lines()
                  if line.startswith("data: ")]
    assert events[0] == {"type": "transcript.text.delta", "delta": "Hello there."}
    assert events[-1] == {"type": "transcript.text.done", "text": "Hello there. How are you?"}


@pytest.mark.models
@pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")
async def test_base_detects_german_when_no_language_is_sent(
        redis_url: str, key_prefix: str) -> None:
    engine = create_engine("stt", "faster-whisper", {"model": "whisper-base", "cpu_threads": 2})
    assert isinstance(engine, Transcriber)
    await engine.load()
    pcm = np.rint(espeak_float(" ".join(GERMAN_SENTENCES[:2])) * 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm.tobytes())
    try:
        async with serve_api(redis_url, EventLogSettings(key_prefix=key_prefix),
                             llm=ScriptedLLM(["Hi."]), tts=ScriptedTTS(), stt=engine) as h:
            client = _client(h)
            async with client:  # closed here, not by the collector during a later test
                verbose = await client.audio.transcriptions.create(
                    model="whisper-1", file=("de.wav", out.getvalue()),
                    response_format="verbose_json", timestamp_granularities=["word"])
    finally:
        await engine.close()
    assert verbose.language == "de"
    assert verbose.text
    assert verbose.words


async def test_a_failure_mid_stream_is_the_last_event(redis_url: str, key_prefix: str) -> None:
    failing = ScriptedSTT("Hello.", error_after=1,  # one segment, then an engine failure
                          error=EngineError("boom", code=ErrorCode.STT_FAILED, stage="stt"))
    async with serve_api(redis_url, EventLogSettings(key_prefix=key_prefix),
                         llm=ScriptedLLM(["Hi."]), tts=ScriptedTTS(), stt=failing) as h:
        client = _client(h)
        async with client, client.audio.transcriptions.with_streaming_response.create(
                model="whisper-1", file=("a.wav", _wav()), stream=True) as reply:
            events = [json.loads(line[6:]) async for line in reply.iter_lines()
                      if line.startswith("data: ")]
    assert [e["type"] for e in events] == ["transcript.text.delta", "error"]
    assert events[-1]["error"]["code"] == "stt_failed"
