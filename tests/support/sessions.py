"""A live session's parts for the tests that drive one without HTTP: its engines (scripted,
with a fixed transcript), the reply they give, and its events read as a client reads them."""

from __future__ import annotations

import asyncio
import weakref

from pipeline.log import EventLog
from pipeline.session import LiveSession, SessionEngines
from schemas import Event, SessionSettings, SpeechStopped
from tests.support.engines import EnergyVAD, ScriptedLLM, ScriptedSTT, ScriptedTTS

REPLY = ["Paris ", "is ", "the ", "capital. ", "It ", "is ", "lovely ", "in ", "spring."]


def engines(llm: ScriptedLLM | None = None, tts: ScriptedTTS | None = None) -> SessionEngines:
    return SessionEngines(
        llm=llm or ScriptedLLM(REPLY),
        tts=tts if tts is not None else ScriptedTTS(sample_rate=16000),
        stt=ScriptedSTT(),
        vad=EnergyVAD(),
    )


#: per session, the last event id a test has read (collect_until goes on from there)
_read_up_to: weakref.WeakKeyDictionary[LiveSession, str | None] = weakref.WeakKeyDictionary()


async def collect_until(session: LiveSession, *types: str) -> list[Event]:
    """The session's events as a reader of its log gets them, from where the previous call
    stopped (at first, the start of the log) up to the first of ``types``."""
    seen: list[Event] = []
    tail = session.log.tail(session.session_id, _read_up_to.get(session))
    try:
        async for event in tail:
            seen.append(event)
            if event.type in types:
                break
    finally:
        await tail.aclose()  # type: ignore[attr-defined]
    if seen:
        _read_up_to[session] = seen[-1].id
    return seen


async def speech_stops(log: EventLog, session_id: str, count: int) -> list[SpeechStopped]:
    """The first ``count`` ``input.speech_stopped`` events of the session (waits for them)."""
    seen: list[SpeechStopped] = []
    tail = log.tail(session_id, None)
    try:
        async for event in tail:
            if isinstance(event, SpeechStopped):
                seen.append(event)
                if len(seen) == count:
                    break
    finally:
        await tail.aclose()  # type: ignore[attr-defined]
    return seen


async def spoken_over_reply(log: EventLog, name: str, heard: str, audio: bytes,
                            settings: SessionSettings, until: str = "transcript.final",
                            *, written: bool = False) -> list[Event]:
    """A typed turn, ``audio`` spoken over its reply (``heard``: what the scripted
    transcriber hears) while the reply is being written (it stalls), or with ``written``
    once it was written in full and its audio (8 s) still plays; the session's whole log
    once an ``until`` came after the speech, the session closed. What the evaluations read
    back as speech over a reply."""
    written_out = asyncio.Event()
    llm = ScriptedLLM(REPLY) if written else ScriptedLLM(
        REPLY, gate_at=3, on_token=lambda i: i == 2 and written_out.set())
    tts = ScriptedTTS(sample_rate=16000, chunk_bytes=64_000 if written else 64)
    session = await LiveSession.open(name, log, SessionEngines(
        llm=llm, tts=tts, stt=ScriptedSTT(heard), vad=EnergyVAD()), create=settings)
    await session.submit_text("Tell me about Paris")
    if written:
        await collect_until(session, "response.done")
    else:
        async with asyncio.timeout(10):
            await written_out.wait()
    for start in range(0, len(audio), 640):
        await session.push_audio(audio[start : start + 640])
    await collect_until(session, until)
    await session.close()
    return await log.read_all(name)
