"""Preemptive turns: a reply prepared during a pause goes out at once when the pause ends the
turn, and is dropped (one ``speculation.discarded`` fact, nothing else) when it does not.

Scripted engines and a loudness "VAD"; the tests wait on the engines' own signals (a token
handed over), never on the clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import cast

import numpy as np
import pytest

from pipeline.audio import EndpointConfig, Endpointer, SpeechEnd, SpeechPause, SpeechResume
from pipeline.log import EventLog
from pipeline.session import LiveSession, SessionEngines
from pipeline.session.emitter import SessionEmitter
from pipeline.session.speculation import (
    Speculation,
    Speculator,
    final_transcript,
    same_transcript,
)
from schemas import (
    Event,
    SessionSettings,
    SpeculationDiscarded,
)
from tests.support.engines import EnergyVAD, HeardAudio, ScriptedLLM, ScriptedSTT, ScriptedTTS
from tests.support.gated_source import finish

REPLY = ["Paris ", "is ", "the ", "capital. ", "It ", "is ", "lovely ", "in ", "spring."]
RATE = 16000


def tone(seconds: float, loud: bool, amplitude: float = 8000) -> bytes:
    n = int(seconds * RATE)
    if not loud:
        return bytes(2 * n)
    t = np.arange(n) / RATE
    return (np.sin(2 * np.pi * 220 * t) * amplitude).astype("<i2").tobytes()


class Voice:
    """A session with scripted engines and a signal for "the LLM handed over a token"."""

    def __init__(self, stt: ScriptedSTT | None = None) -> None:
        self.token = asyncio.Event()
        self.llm = ScriptedLLM(REPLY, on_token=lambda _i: self.token.set())
        self.stt = stt or ScriptedSTT()
        self.engines = SessionEngines(
            llm=self.llm, tts=ScriptedTTS(sample_rate=RATE), stt=self.stt, vad=EnergyVAD()
        )

    async def open(self, name: str, log: EventLog, **settings: object) -> LiveSession:
        return await LiveSession.open(
            name, log, self.engines, create=SessionSettings.model_validate(settings)
        )

    async def speak(self, session: LiveSession, audio: bytes) -> None:
        for start in range(0, len(audio), 640):
            await session.push_audio(audio[start : start + 640])

    async def preparing(self) -> None:
        """Wait until the LLM has handed over a token (a reply is being prepared)."""
        await finish(self.token.wait())
        self.token.clear()


async def read_until(log: EventLog, session_id: str, kind: str) -> list[Event]:
    seen: list[Event] = []
    tail = log.tail(session_id, None)
    try:
        async for event in tail:
            seen.append(event)
            if event.type == kind:
                break
    finally:
        await tail.aclose()  # type: ignore[attr-defined]
    return seen


def turn_events(seen: list[Event]) -> set[str | None]:
    """Turn ids of every transcript and response event."""
    return {e.turn_id for e in seen if e.type.startswith(("response.", "transcript."))}


# -- the endpointer's pause and resume ----------------------------------------------------


def _push(endpointer: Endpointer, audio: bytes, loud: bool) -> list[object]:
    events: list[object] = []
    for start in range(0, len(audio), 1024):
        events += endpointer.push(audio[start : start + 1024], 0.95 if loud else 0.0)
    return events


def test_a_pause_carries_the_audio_its_utterance_will_have() -> None:
    endpointer = Endpointer(EndpointConfig(min_silence_ms=500, post_padding_ms=200, pause_ms=256))
    _push(endpointer, tone(0.8, True), True)
    paused = _push(endpointer, tone(0.3, False), False)
    [pause] = [e for e in paused if isinstance(e, SpeechPause)]
    ended = _push(endpointer, tone(0.4, False), False)
    [end] = [e for e in ended if isinstance(e, SpeechEnd)]
    # the padding was all heard by the pause: the cut is the same
    assert (pause.audio_ms, pause.start_ms, pause.audio) == (end.audio_ms, end.start_ms, end.audio)
    assert pause.covered_by(end)
    assert not any(isinstance(e, SpeechPause) for e in ended)  # one pause per silence


def test_a_pause_before_the_padding_is_in_carries_the_speech_without_all_of_it() -> None:
    endpointer = Endpointer(EndpointConfig(min_silence_ms=500, post_padding_ms=200, pause_ms=96))
    _push(endpointer, tone(0.8, True), True)
    paused = _push(endpointer, tone(0.3, False), False)
    [pause] = [e for e in paused if isinstance(e, SpeechPause)]
    [end] = [e for e in _push(endpointer, tone(0.4, False), False) if isinstance(e, SpeechEnd)]
    assert (pause.audio_ms, pause.start_ms) == (end.audio_ms, end.start_ms)
    # the pause came at 96-128 ms of silence (1024-byte pushes): less padding than the end's
    missing_ms = (len(end.audio) - len(pause.audio)) / 2 / 16
    assert 200 - 128 <= missing_ms <= 200 - 96
    assert pause.covered_by(end)
    assert len(end.audio) == pause.end_bytes


def test_a_pause_is_not_covered_by_another_utterance() -> None:
    endpointer = Endpointer(EndpointConfig(min_silence_ms=500, post_padding_ms=200, pause_ms=96))
    _push(endpointer, tone(0.8, True), True)
    [pause] = [e for e in _push(endpointer, tone(0.3, False), False) if isinstance(e, SpeechPause)]
    _push(endpointer, tone(0.3, True), True)  # speech again: the utterance goes on
    [end] = [e for e in _push(endpointer, tone(0.6, False), False) if isinstance(e, SpeechEnd)]
    assert end.audio.startswith(pause.audio) and end.audio_ms > pause.audio_ms
    assert not pause.covered_by(end)


@pytest.mark.parametrize(("amplitude", "covered"), [
    (800, False),  # -35 dBFS: a soft consonant the detector took for silence
    (30, True),  # -64 dBFS: a quiet room
])
def test_padding_after_the_pause_is_covered_only_when_it_is_silent(
        amplitude: float, covered: bool) -> None:
    """Soft speech the detector took for silence, heard after a 64 ms pause: in the turn's
    audio, not in the pause's (whose padding was digital silence), so the turn is
    transcribed again; a quiet room's noise there is the silence it was taken for."""
    endpointer = Endpointer(EndpointConfig(min_silence_ms=500, post_padding_ms=200, pause_ms=64))
    _push(endpointer, tone(0.8, True), True)
    [pause] = [e for e in _push(endpointer, tone(0.064, False), False)
               if isinstance(e, SpeechPause)]
    after = tone(0.08, True, amplitude) + tone(0.4, False)
    [end] = [e for e in _push(endpointer, after, False) if isinstance(e, SpeechEnd)]
    assert (end.audio_ms, end.start_ms) == (pause.audio_ms, pause.start_ms)
    assert len(end.audio) <= pause.end_bytes and end.audio.startswith(pause.audio)
    assert pause.covered_by(end) is covered


def test_audio_cut_after_the_padding_is_not_covered_by_the_pause() -> None:
    """A commit long after the offset takes audio the pause never heard (soft speech may
    hide below the threshold): it must be transcribed again."""
    endpointer = Endpointer(EndpointConfig(min_silence_ms=500, post_padding_ms=200, pause_ms=96))
    _push(endpointer, tone(0.8, True), True)
    [pause] = [e for e in _push(endpointer, tone(0.35, False), False)
               if isinstance(e, SpeechPause)]
    [end] = endpointer.flush()
    assert isinstance(end, SpeechEnd) and (end.audio_ms, end.start_ms) == (
        pause.audio_ms, pause.start_ms)
    assert len(end.audio) > pause.end_bytes and not pause.covered_by(end)


def test_speech_after_a_pause_resumes_the_utterance() -> None:
    endpointer = Endpointer(EndpointConfig(min_silence_ms=500, pause_ms=200))
    _push(endpointer, tone(0.8, True), True)
    assert any(isinstance(e, SpeechPause) for e in _push(endpointer, tone(0.3, False), False))
    resumed = _push(endpointer, tone(0.3, True), True)
    assert [type(e) for e in resumed] == [SpeechResume]
    assert endpointer.speaking
    # a short dip without a pause resumes nothing
    assert _push(endpointer, tone(0.1, False), False) == []
    assert _push(endpointer, tone(0.1, True), True) == []


def test_a_pause_must_be_shorter_than_the_silence_that_ends_an_utterance() -> None:
    with pytest.raises(ValueError, match="pause_ms"):
        EndpointConfig(min_silence_ms=300, pause_ms=300)
    assert EndpointConfig().pause_ms is None  # off unless asked for


def test_transcripts_match_on_their_words() -> None:
    assert same_transcript("What is the capital of France?", "what is the capital of france")
    assert same_transcript("It's  fine.", "it's fine")
    assert not same_transcript("What is the capital of France?", "What is the capital of Spain?")


# -- the session ----------------------------------------------------------------------------

redis = pytest.mark.redis


@redis
async def test_a_pause_that_ends_the_turn_sends_the_prepared_reply(event_log: EventLog) -> None:
    voice = Voice()
    session = await voice.open("pre-match", event_log)
    await voice.speak(session, tone(0.3, False) + tone(0.8, True) + tone(0.3, False))
    await voice.preparing()
    # the reply is being prepared, and nothing of it is in the log
    assert [e.type for e in await event_log.read_all("pre-match")] == [
        "session.created", "input.speech_started"]
    await voice.speak(session, tone(0.4, False))  # the silence ends the utterance
    seen = await read_until(event_log, "pre-match", "response.done")
    types = [e.type for e in seen]
    order = ["input.speech_stopped", "input.audio", "transcript.final", "response.started"]
    assert [t for t in types if t in order] == order
    assert "speculation.discarded" not in types
    assert "response.audio.chunk" in types
    # adopted, not redone: one transcription, one LLM request
    assert len(voice.stt.heard) == 1 and len(voice.llm.records) == 1
    audio_event = next(e for e in seen if e.type == "input.audio")
    started = next(e for e in seen if e.type == "response.started")
    assert started.data.input_event_id == audio_event.id  # type: ignore[union-attr]
    assert started.ts >= audio_event.ts  # stamped when sent, not when prepared
    # where the preparation's time went, which the restamped events no longer say
    parts = started.data.prepared_parts  # type: ignore[union-attr]
    assert parts is not None
    assert list(parts) == ["stt", "llm_first_token", "first_piece", "tts_first_chunk"]
    assert all(ms >= 0 for ms in parts.values())
    assert sum(parts.values()) <= started.data.prepared_ms  # type: ignore[union-attr]
    assert turn_events(seen) == {audio_event.turn_id}
    await session.close()


@redis
async def test_a_different_final_transcript_discards_the_prepared_reply(
    event_log: EventLog,
) -> None:
    voice = Voice(ScriptedSTT("What is the capital of France?", "What is the capital of Spain?"))
    session = await voice.open("pre-changed", event_log)
    await voice.speak(session, tone(0.3, False) + tone(0.8, True) + tone(0.35, False))
    await voice.preparing()
    await session.commit_audio()  # push-to-talk: cut here, not where the pause cut
    seen = await read_until(event_log, "pre-changed", "response.done")
    [discarded] = [e for e in seen if isinstance(e, SpeculationDiscarded)]
    assert discarded.turn_id is None
    assert discarded.data.reason == "transcript_changed"
    assert discarded.data.transcript == "What is the capital of France?"
    final = next(e for e in seen if e.type == "transcript.final")
    assert final.data.text == "What is the capital of Spain?"  # type: ignore[union-attr]
    assert types_before(seen, "speculation.discarded", "response.started")
    assert len(voice.llm.records) == 2  # the dropped speculation and the real reply
    assert turn_events(seen) == {final.turn_id}
    await session.close()


@redis
async def test_speech_after_the_pause_discards_the_prepared_reply(event_log: EventLog) -> None:
    voice = Voice()
    session = await voice.open("pre-resumed", event_log)
    await voice.speak(session, tone(0.3, False) + tone(0.8, True) + tone(0.3, False))
    await voice.preparing()
    await voice.speak(session, tone(0.6, True) + tone(0.8, False))  # the user goes on
    seen = await read_until(event_log, "pre-resumed", "response.done")
    [discarded] = [e for e in seen if isinstance(e, SpeculationDiscarded)]
    assert discarded.data.reason == "speech_resumed" and discarded.turn_id is None
    # nothing speculative reached the log but the discard fact: every transcript and
    # response event belongs to the one utterance that was answered
    [audio_event] = [e for e in seen if e.type == "input.audio"]
    assert turn_events(seen) == {audio_event.turn_id}
    assert [e.type for e in seen].count("response.started") == 1
    assert audio_event.data.duration_ms >= 1600  # type: ignore[union-attr]  # both parts
    await session.close()


@redis
async def test_without_preemptive_turns_nothing_is_prepared(event_log: EventLog) -> None:
    voice = Voice()
    session = await voice.open("pre-off", event_log, preemptive_turns=False)
    await voice.speak(session, tone(0.3, False) + tone(0.8, True) + tone(0.8, False))
    seen = await read_until(event_log, "pre-off", "response.done")
    types = [e.type for e in seen]
    assert "speculation.discarded" not in types
    assert types.index("input.audio") < types.index("response.started")
    assert len(voice.stt.heard) == 1 and len(voice.llm.records) == 1
    await session.close()


def types_before(seen: list[Event], first: str, then: str) -> bool:
    types = [e.type for e in seen]
    return types.index(first) < types.index(then)


@redis
async def test_new_audio_settings_drop_the_prepared_reply(event_log: EventLog) -> None:
    voice = Voice()
    session = await voice.open("pre-settings", event_log)
    await voice.speak(session, tone(0.3, False) + tone(0.8, True) + tone(0.3, False))
    await voice.preparing()
    await session.update_settings({"end_of_speech_ms": 700})  # a new speech input
    seen = await read_until(event_log, "pre-settings", "session.updated")
    [discarded] = [e for e in seen if isinstance(e, SpeculationDiscarded)]
    assert discarded.data.reason == "superseded"
    assert session.speculator.current is None
    assert not any(e.type.startswith("response.") for e in seen)
    await session.close()


async def test_a_pause_is_transcribed_as_long_as_its_end_will_be() -> None:
    """The post-padding still to come is given as digital silence: Whisper tiny.en heard
    "friends" in a pause's audio and "France" with the end's 0.19 s more of silence."""
    pause = SpeechPause(audio_ms=800, audio=b"\1\0" * 1600, duration_s=0.1, start_ms=0,
                        end_bytes=4000)
    transcribe = HeardAudio("")  # nothing said: no reply
    speculation = Speculation("t", pause, RATE, transcribe=transcribe, reply=never_replies)
    assert await speculation.transcript() == ""
    heard = transcribe.heard
    assert heard == [pause.audio + bytes(800)] and len(heard[0]) == pause.end_bytes
    assert pause.padded_audio == heard[0]
    await speculation.discard()


async def test_the_judge_reads_the_words_the_pause_was_heard_as_not_asking_again() -> None:
    pause = SpeechPause(audio_ms=800, audio=b"\1\0" * 1600, duration_s=0.1, start_ms=0,
                        end_bytes=4000)
    transcribe = HeardAudio("")
    speculator = Speculator(cast(SessionEmitter, None), transcribe=transcribe,
                            reply=never_replies)
    await speculator.start(pause, RATE)
    assert await speculator.heard(pause.padded_audio, RATE) == ""  # what the judges ask
    assert await speculator.heard(pause.audio, RATE) is None  # other audio: not its words
    assert transcribe.heard == [pause.padded_audio]
    speculation = speculator.take()
    assert speculation is not None
    await speculation.discard()


def never_replies(turn_id: str, text: str, cancel: object) -> AsyncGenerator[Event, None]:
    raise AssertionError("no reply without a transcript")


async def test_a_failed_speculative_transcript_leaves_the_decision_to_the_final_one() -> None:
    pause = SpeechPause(audio_ms=800, audio=b"\0\0" * 1600, duration_s=0.1, start_ms=0,
                        end_bytes=3200)
    end = SpeechEnd(audio_ms=800, audio=pause.audio, duration_s=0.1, start_ms=0)

    async def failing(audio: bytes, rate: int) -> str:
        raise RuntimeError("scripted STT failure")

    async def final(audio: bytes, rate: int) -> str:
        return "What is the capital of France?"

    def never(turn_id: str, text: str, cancel: object) -> AsyncGenerator[Event, None]:
        raise AssertionError("no reply without a transcript")

    speculation = Speculation("t", pause, RATE, transcribe=failing, reply=never)
    assert await final_transcript(speculation, end, RATE, final) == (
        "What is the capital of France?", "failed")
    assert await speculation.discard() == 0
    heard = Speculation("t2", pause, RATE, transcribe=final, reply=never)
    heard.cancel.cancel("barge_in")  # the reply would stop at once; it is not needed here
    assert await final_transcript(heard, end, RATE, failing) == (
        "What is the capital of France?", None)  # same audio: not transcribed again
    await heard.discard()
