"""Cross-session VAD batching seen by clients: live sessions on one detector, at once.

Several sessions share one real Silero detector (the batched export, as the sessions of
a Gateway replica do) and each speaks its own utterance at the same time; what each
session's log holds (the events in order, where speech started and stopped, the
utterance's length, the reply) is the same with the frames of all sessions batched into
shared model calls as with each session's frames run alone.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from pipeline.audio import EndpointConfig
from pipeline.engines.vad.silero import SileroVoiceActivityDetector
from pipeline.log import EventLog
from pipeline.session import LiveSession, SessionEngines
from schemas import SessionSettings
from tests.support.audio_fixtures import ENGLISH_SENTENCES, compose, piper_float
from tests.support.engines import ScriptedLLM, ScriptedSTT, ScriptedTTS
from tests.support.sessions import REPLY
from tests.support.silero_model import loaded_silero

pytestmark = [pytest.mark.models, pytest.mark.redis]

HANG = 60.0  # seconds; only reached when the code under test hangs
SESSIONS = 4


@pytest.fixture(scope="module")
def utterances() -> list[bytes]:
    """One utterance per session, each between silences of its own lengths."""
    clips = [piper_float(s) for s in ENGLISH_SENTENCES[:SESSIONS]]
    rng = np.random.default_rng(11)
    return [
        compose([clip], [float(rng.uniform(0.3, 0.9)), 1.2], seed=i).pcm16
        for i, clip in enumerate(clips)
    ]


def detector(**options: Any) -> SileroVoiceActivityDetector:
    return loaded_silero(model="silero-vad", **options)


def seen(event: Any) -> tuple[Any, ...]:
    """What a client sees of an event, less its ids and times."""
    data = getattr(event, "data", None)
    if event.type in ("input.speech_started", "input.speech_stopped"):
        return (event.type, data.audio_ms)
    if event.type == "input.audio":
        return (event.type, data.duration_ms, data.audio)
    if event.type == "response.text.delta":
        return (event.type, data.delta)
    return (event.type,)


async def one_session(
    name: str, log: EventLog, vad: SileroVoiceActivityDetector, audio: bytes
) -> list[tuple[Any, ...]]:
    parts = SessionEngines(
        llm=ScriptedLLM(REPLY), tts=ScriptedTTS(sample_rate=16000), stt=ScriptedSTT(), vad=vad
    )
    session = await LiveSession.open(
        name, log, parts, create=SessionSettings(), endpoint_config=EndpointConfig()
    )
    try:
        for start in range(0, len(audio), 640):  # 20 ms pieces, as fast as they are taken
            await session.push_audio(audio[start : start + 640])
        events = []
        async for event in log.tail(name, None):
            events.append(seen(event))
            if event.type == "response.done":
                return events
        raise AssertionError("the log ended before the reply")
    finally:
        await session.close()


async def run_all(
    log: EventLog, vad: SileroVoiceActivityDetector, utterances: list[bytes], prefix: str
) -> list[list[tuple[Any, ...]]]:
    return await asyncio.wait_for(
        asyncio.gather(
            *(one_session(f"{prefix}{i}", log, vad, audio) for i, audio in enumerate(utterances))
        ),
        HANG,
    )


async def test_each_session_sees_the_same_events_batched_or_not(
    event_log: EventLog, utterances: list[bytes]
) -> None:
    alone = await run_all(event_log, detector(batch_max_items=1), utterances, "alone")
    batching = detector(batch_wait_ms=16)
    batched = await run_all(event_log, batching, utterances, "batched")
    info = await batching.describe()
    await batching.close()

    assert info["batch"]["largest"] > 1  # the sessions' frames really shared calls
    assert batched == alone
    for events in alone:
        types = [e[0] for e in events]
        assert types.count("input.speech_started") == 1 and "transcript.final" in types
