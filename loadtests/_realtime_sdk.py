"""A voice turn through ``WS /v1/realtime`` with the official OpenAI SDK, timed like the
native socket's voice turns in ``bench_latency.py``: from the end of the speech (the
client's clock: when the paced audio reached the end of the speech) to the first
``response.output_audio.delta`` received.

The SDK is a dev dependency (``openai``), as in the tests; the server never uses it.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from dataclasses import dataclass
from typing import Any

import openai

RATE = 24000
FRAME_MS = 20


@dataclass
class SdkTurn:
    """What the SDK client saw of one voice turn."""

    heard_ms: float | None  # end of speech → first audio delta, client clock
    transcript: str
    reply: str
    status: str | None
    audio_bytes: int


async def sdk_voice_turn(
    url: str, audio: bytes, speech_end_s: float, *, max_output_tokens: int = 60,
    temperature: float = 0.0,
) -> SdkTurn:
    """One spoken turn on a new session: ``audio`` (24 kHz PCM16) streamed as 20 ms frames
    at a speaker's pace; ``speech_end_s`` is where the speech ends in it."""
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", max_retries=0,
                                api_key=os.environ.get("OPENAI_API_KEY", "unused"))
    try:
        async with client.realtime.connect(model="voxline") as conn:
            await conn.recv()  # session.created
            await conn.session.update(session={
                "type": "realtime", "max_output_tokens": max_output_tokens,
                "temperature": temperature,
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": RATE}},
                          "output": {"format": {"type": "audio/pcm", "rate": RATE}}},
            })
            while (await conn.recv()).type != "session.updated":
                pass
            start = time.perf_counter()
            sender = asyncio.create_task(_stream(conn, audio, start))
            try:
                return await _receive(conn, start + speech_end_s)
            finally:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
    finally:
        await client.close()


async def _stream(conn: Any, audio: bytes, start: float) -> None:
    frame = 2 * RATE * FRAME_MS // 1000
    for n, offset in enumerate(range(0, len(audio), frame)):
        await conn.input_audio_buffer.append(
            audio=base64.b64encode(audio[offset:offset + frame]).decode())
        delay = start + (n + 1) * FRAME_MS / 1000 - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)


async def _receive(conn: Any, speech_end: float) -> SdkTurn:
    first: float | None = None
    transcript, reply, size = "", "", 0
    while True:
        event = await conn.recv()
        match event.type:
            case "response.output_audio.delta":
                if first is None:
                    first = time.perf_counter()
                size += len(base64.b64decode(event.delta))
            case "conversation.item.input_audio_transcription.completed":
                transcript = event.transcript
            case "response.output_audio_transcript.delta":
                reply += event.delta
            case "error":  # a failed turn, as the native client's would be
                return SdkTurn(None, transcript, f"{event.error.code}: {event.error.message}",
                               "error", size)
            case "response.done":
                heard = None if first is None else (first - speech_end) * 1000
                return SdkTurn(heard, transcript, reply, event.response.status, size)
