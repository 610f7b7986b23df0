"""``/v1/audio/speech`` driven by the official ``openai`` SDK (issue #12), on a scripted
synthesizer through the API harness: OpenAI's voice names, every format, OpenAI's speed
range, streamed bytes and SSE events."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import openai
import pytest

from pipeline.audio import decode_audio
from pipeline.engines import OPENAI_VOICES
from schemas import ApiSettings, EventLogSettings
from tests.support.api_harness import Harness, serve_api
from tests.support.engines import ScriptedLLM, ScriptedTTS

pytestmark = pytest.mark.redis

TEXT = "Hello there. How are you today?"
MAGIC = {"mp3": (b"ID3", b"\xff\xfb", b"\xff\xf3"), "opus": (b"OggS",), "flac": (b"fLaC",),
         "aac": (b"\xff\xf1", b"\xff\xf9"), "wav": (b"RIFF",)}


@pytest.fixture
async def harness(redis_url: str, key_prefix: str) -> AsyncIterator[Harness]:
    async with serve_api(redis_url, EventLogSettings(key_prefix=key_prefix),
                         llm=ScriptedLLM(["Hi."]), tts=ScriptedTTS(chunk_bytes=4800),
                         api=ApiSettings(voice_map={"nova": ""})) as harness:
        yield harness


def _client(harness: Harness) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=harness.url + "/v1", api_key="unused", max_retries=0)


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
async def test_alloy_speaks_in_every_format(harness: Harness, fmt: str) -> None:
    async with _client(harness) as client:
        reply = await client.audio.speech.create(
            model="tts-1", voice="alloy", input=TEXT, response_format=fmt)  # type: ignore[arg-type]
        data = reply.read()
    assert data
    if fmt == "pcm":
        assert len(data) % 2 == 0
        return
    assert data.startswith(MAGIC[fmt]), data[:8]
    assert len(decode_audio(data, sample_rate=24000)) > 0


async def test_every_openai_voice_speed_range_and_instructions(harness: Harness) -> None:
    async with _client(harness) as client:
        for voice in sorted(OPENAI_VOICES):
            reply = await client.audio.speech.create(
                model="gpt-4o-mini-tts", voice=voice, input="Hi.", response_format="wav",
                speed=0.25 if voice < "m" else 4.0, instructions="Speak cheerfully.")
            assert reply.read().startswith(b"RIFF")
        with pytest.raises(openai.UnprocessableEntityError):
            await client.audio.speech.create(model="tts-1", voice="alloy", input="Hi.",
                                             speed=4.5)


async def test_streamed_bytes_arrive_in_pieces(harness: Harness) -> None:
    async with _client(harness) as client, client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input=TEXT, response_format="pcm") as reply:
        assert reply.headers["content-type"].startswith("audio/L16")
        pieces = [piece async for piece in reply.iter_bytes() if piece]
    assert sum(map(len, pieces)) > 0


async def test_sse_sends_base64_deltas_then_done(harness: Harness) -> None:
    async with _client(harness) as client, client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input=TEXT, response_format="mp3",
            stream_format="sse") as reply:
        assert reply.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[len("data: "):]) async for line in reply.iter_lines()
                  if line.startswith("data: ")]
    assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1)
    assert events[-1] == {"type": "speech.audio.done"}
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert audio.startswith(MAGIC["mp3"])
    assert len(decode_audio(audio, sample_rate=24000)) > 0


async def test_sse_failure_after_the_first_audio_is_the_last_event(
        redis_url: str, key_prefix: str) -> None:
    tts = ScriptedTTS(chunk_bytes=4800, fail_on={1})  # the second sentence fails
    async with serve_api(redis_url, EventLogSettings(key_prefix=key_prefix),
                         llm=ScriptedLLM(["Hi."]), tts=tts) as h:
        client = _client(h)
        async with client, client.audio.speech.with_streaming_response.create(
                model="tts-1", voice="alloy", input=TEXT, response_format="pcm",
                stream_format="sse") as reply:
            events = [json.loads(line[len("data: "):]) async for line in reply.iter_lines()
                      if line.startswith("data: ")]
    assert events[0]["type"] == "speech.audio.delta"
    assert events[-1]["type"] == "error"
    assert events[-1]["error"]["code"] == "tts_failed"
