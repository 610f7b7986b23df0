"""``voxline demo``: one spoken question through the whole pipeline, measured.

The question is spoken by the TTS voice itself (no microphone needed), streamed in as
32 ms PCM16 frames, endpointed by VAD, transcribed, answered by the LLM and spoken back
while it is written. Every event goes to the session's Redis stream first; the printout
and the stage latencies come from those events, as any client would see them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.audio import resample_pcm16
from pipeline.engines import create_engine
from pipeline.engines.base import LanguageModel, Synthesizer, Transcriber, VoiceActivityDetector
from pipeline.eventlog import EventLog
from pipeline.redis_client import create_redis
from pipeline.session import LiveSession, SessionEngines
from schemas import Event, SessionSettings, Settings, SynthesisRequest

QUESTION = "What is the capital of France?"


async def load_engines(settings: Settings, say: Callable[..., None]) -> SessionEngines:
    """Build and load the engines named in settings, saying how long each took."""
    built: dict[str, Any] = {}
    for stage in ("vad", "stt", "llm", "tts"):
        choice = getattr(settings, stage)
        start = time.perf_counter()
        engine = create_engine(stage, choice.engine, choice.engine_options())
        await engine.load()
        say(f"loaded {stage}: {choice.engine} in {time.perf_counter() - start:.1f} s")
        built[stage] = engine
    assert isinstance(built["llm"], LanguageModel)
    assert isinstance(built["tts"], Synthesizer)
    assert isinstance(built["stt"], Transcriber)
    assert isinstance(built["vad"], VoiceActivityDetector)
    return SessionEngines(llm=built["llm"], tts=built["tts"], stt=built["stt"], vad=built["vad"])


async def spoken_question(tts: Synthesizer, text: str, rate: int) -> bytes:
    """The question as PCM16 at ``rate``, with silence around it as a speaker would leave."""
    chunks = [c async for c in tts.synthesize(SynthesisRequest(text=text, language="en"))]
    speech = resample_pcm16(b"".join(c.audio for c in chunks), chunks[0].sample_rate, rate)
    silence = bytes(2 * rate * 8 // 10)
    return silence + speech + silence


def stage_latencies(events: list[Event]) -> dict[str, float]:
    """Per-stage latency in ms from event timestamps (end of speech is the origin)."""
    first: dict[str, int] = {}
    for event in events:
        first.setdefault(event.type, event.ts)
    origin = first.get("input.speech_stopped") or first.get("input.text")
    if origin is None:
        return {}
    marks = {
        "stt (speech end → transcript)": first.get("transcript.final"),
        "llm first token": first.get("response.text.delta"),
        "first piece cut": first.get("response.sentence"),
        "tts first chunk = time to first audio": first.get("response.audio.chunk"),
        "response done": first.get("response.done"),
    }
    return {name: float(ts - origin) for name, ts in marks.items() if ts is not None}


def write_wav(path: Path, pcm: bytes, rate: int) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)


async def run_demo(
    redis_url: str, settings: Settings, out: Path, say: Callable[..., None], question: str
) -> dict[str, float]:
    engines = await load_engines(settings, say)
    redis = create_redis(redis_url, settings.redis)
    log = EventLog(redis, settings.log)
    session_id = f"demo-{uuid.uuid4().hex[:8]}"
    session_settings = SessionSettings(sampling={"temperature": 0.0, "max_tokens": 60, "seed": 1})
    session = await LiveSession.open(session_id, log, engines, create=session_settings)
    say(f"session {session_id} (events in Redis stream {log.key(session_id)})")
    assert engines.tts is not None
    audio = await spoken_question(engines.tts, question, session_settings.input_sample_rate)
    say(f'speaking the question: "{question}" ({len(audio) / 32000:.1f} s of audio)')

    seen: list[Event] = []
    reply_audio = bytearray()
    done = asyncio.Event()

    async def listen() -> None:
        async for event in session.events():
            seen.append(event)
            match event.type:
                case "transcript.final":
                    say(f"heard: {event.data.text!r}")  # type: ignore[union-attr]
                    say("reply: ", end="")
                case "response.text.delta":
                    say(event.data.delta, end="")  # type: ignore[union-attr]
                case "response.audio.chunk":
                    reply_audio.extend(event.data.audio)  # type: ignore[union-attr]
                case "response.done" | "response.cancelled":
                    say("")
                    done.set()
                case "error":
                    say(f"\nerror: {event.data.code}: {event.data.message}")  # type: ignore[union-attr]

    listener = asyncio.create_task(listen())
    try:
        frame = 2 * 512
        for start in range(0, len(audio), frame):
            await session.push_audio(audio[start : start + frame])
        await session.commit_audio()
        await asyncio.wait_for(done.wait(), timeout=120)
        await session.wait_response()
    finally:
        await session.close(reason="demo finished")
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        await redis.aclose()
        for engine in (engines.vad, engines.stt, engines.llm, engines.tts):
            if engine is not None:
                await engine.close()
    write_wav(out, bytes(reply_audio), session_settings.output_sample_rate)
    say(f"reply audio: {out} ({len(reply_audio) / 2 / session_settings.output_sample_rate:.1f} s)")
    latencies = stage_latencies(seen)
    for name, ms in latencies.items():
        say(f"  {name:42} {ms:7.0f} ms")
    return latencies
