"""The demo turn: a spoken question over the WebSocket, the reply heard and measured.

The question is spoken by the server's own voice (``POST /v1/audio/speech``), so no
microphone is needed; it is streamed in real time as 20 ms PCM16 frames, endpointed by
VAD on the server, transcribed, answered by the LLM and spoken back while it is written.
What is printed comes from the events the socket delivers (each already in the log);
the stage latencies come from their timestamps.
"""

from __future__ import annotations

import asyncio
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.workers import TurnTimeline
from schemas import Event
from voxline.client import SessionInfo, SessionSocket, VoxlineClient

QUESTION = "What is the capital of France?"
RATE = 24000  # /v1/audio/speech's pcm rate; the session takes it as its input rate
FRAME_MS = 20


@dataclass
class TurnResult:
    """What a client saw of one voice or text turn."""

    session: SessionInfo
    events: list[Event] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    transcript: str = ""
    reply: str = ""
    #: client clock (perf_counter): input finished, first audio received
    input_end: float | None = None
    first_audio: float | None = None

    @property
    def stages(self) -> dict[str, float]:
        stages = TurnTimeline.of(self.events).stages()
        if self.input_end is not None and self.first_audio is not None:
            stages["client_first_audio"] = (self.first_audio - self.input_end) * 1000
        return stages


def with_pauses(speech: bytes, rate: int, before_s: float = 0.5, after_s: float = 2.5) -> bytes:
    """Speech with the silence a speaker leaves around it: the turn ends in it (after 250
    ms when the end-of-turn model hears it complete, 2 s when not, by default), and a
    turn that ends early does not wait for the rest (the sender stops with the reply)."""
    return bytes(2 * int(rate * before_s)) + speech + bytes(2 * int(rate * after_s))


async def stream_audio(conn: SessionSocket, audio: bytes, rate: int, *, realtime: bool) -> None:
    """Send ``audio`` as 20 ms frames, paced like a microphone when ``realtime``."""
    frame = 2 * rate * FRAME_MS // 1000
    start = time.perf_counter()
    for n, offset in enumerate(range(0, len(audio), frame)):
        await conn.send_audio(audio[offset : offset + frame])
        if realtime:
            delay = start + (n + 1) * FRAME_MS / 1000 - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)


async def voice_turn(
    client: VoxlineClient,
    audio: bytes,
    *,
    speech_end_s: float,
    realtime: bool = True,
    on_event: Callable[[Event], None] | None = None,
    **settings: Any,
) -> TurnResult:
    """One spoken turn on a new session; ``speech_end_s`` is where speech ends in ``audio``."""
    session = await client.create_session(
        input_sample_rate=RATE, output_sample_rate=RATE, **settings
    )
    result = TurnResult(session)
    async with client.connect(session) as conn:
        start = time.perf_counter()
        sender = asyncio.create_task(stream_audio(conn, audio, RATE, realtime=realtime))
        result.input_end = start + speech_end_s if realtime else None
        try:
            await _receive(conn, result, on_event)
        finally:
            sender.cancel()
    return result


async def text_turn(
    client: VoxlineClient,
    text: str,
    *,
    on_event: Callable[[Event], None] | None = None,
    **settings: Any,
) -> TurnResult:
    """One typed turn on a new session, spoken back."""
    session = await client.create_session(output_sample_rate=RATE, **settings)
    result = TurnResult(session)
    async with client.connect(session) as conn:
        result.input_end = time.perf_counter()
        await conn.send_text(text)
        await _receive(conn, result, on_event)
    return result


async def _receive(
    conn: SessionSocket, result: TurnResult, on_event: Callable[[Event], None] | None
) -> None:
    """The turn's events into ``result`` (and ``on_event``) until its response ends."""
    async for event in conn.until_done():
        _collect(result, event)
        if on_event is not None:
            on_event(event)


def _collect(result: TurnResult, event: Event) -> None:
    result.events.append(event)
    data: Any = event.data
    match event.type:
        case "transcript.final":
            result.transcript = data.text
        case "response.text.delta":
            result.reply += data.delta
        case "response.audio.chunk":
            if result.first_audio is None:
                result.first_audio = time.perf_counter()
            result.audio.extend(data.audio)


def write_wav(path: Path, pcm: bytes, rate: int) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)


async def run_demo(
    url: str, out: Path, say: Callable[..., None], question: str = QUESTION
) -> dict[str, float]:
    """The main job's voice turn against a running server; returns the stage latencies."""
    async with VoxlineClient(url) as client:
        speech = await client.speech(question, response_format="pcm")
        audio = with_pauses(speech, RATE)
        say(f'speaking the question: "{question}" ({len(speech) / 2 / RATE:.1f} s of speech, '
            "streamed in real time over the WebSocket)")

        def show(event: Event) -> None:
            data: Any = event.data
            match event.type:
                case "input.speech_started":
                    say("  [vad] speech started")
                case "input.speech_stopped":
                    say("  [vad] speech stopped")
                case "transcript.final":
                    say(f"heard: {data.text!r}")
                    say("reply: ", end="")
                case "response.text.delta":
                    say(data.delta, end="")
                case "response.done" | "response.cancelled":
                    say("")
                case "error":
                    say(f"\nerror: {data.code}: {data.message}")

        result = await voice_turn(
            client, audio, speech_end_s=0.5 + len(speech) / 2 / RATE, on_event=show,
            sampling={"temperature": 0.0, "max_tokens": 60, "seed": 1},
        )
    write_wav(out, bytes(result.audio), RATE)
    say(f"session {result.session.session_id}; reply audio: {out} "
        f"({len(result.audio) / 2 / RATE:.1f} s)")
    stages = result.stages
    labels = {
        "stt": "stt (end of speech → transcript)",
        "llm_first_token": "llm first token (after transcript)",
        "first_piece_cut": "first piece cut (after first token)",
        "tts_first_chunk": "tts first chunk (after first piece)",
        "time_to_first_audio": "time to first audio (server, from speech end)",
        "client_first_audio": "voice-to-voice (client: speech end → audio)",
        "response_done": "response done",
    }
    for name, label in labels.items():
        if name in stages:
            say(f"  {label:48} {stages[name]:7.0f} ms")
    parts = TurnTimeline.of(result.events).parts()
    if parts is not None:  # the same time, in parts that add up to it
        say(f"  {parts.text()}")
    return stages
