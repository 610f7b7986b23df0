"""Smart turn detection: an end-of-turn model judges each pause, and the silence that ends
the turn follows its verdict (short when complete, long when not).

The endpointer and the segmenter with made-up probabilities and verdicts; a live session
with a loudness "VAD" and a scripted model; then the real Silero VAD and Smart Turn on
Piper speech with a thinking pause. The tests wait on the log, never on the clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from loadtests._turn_corpus import split_at_pauses
from pipeline.audio import (
    EndpointConfig,
    Endpointer,
    SpeechEnd,
    SpeechPause,
    endpoint_stream,
)
from pipeline.log import EventLog
from pipeline.session import LiveSession, SessionEngines
from pipeline.session.settings import EngineChoices, merge_settings
from schemas import Event, ProtocolError, SessionSettings
from tests.support.audio_fixtures import compose, piper_float, tone
from tests.support.engines import EnergyVAD, ScriptedLLM, ScriptedSTT, ScriptedTTS, ScriptedTurn
from tests.support.sessions import speech_stops

RATE = 16000
FRAME = 512 * 2  # bytes: 32 ms


def _push(endpointer: Endpointer, seconds: float, loud: bool) -> list[object]:
    audio = tone(seconds, loud)
    events: list[object] = []
    for start in range(0, len(audio), FRAME):
        events += endpointer.push(audio[start : start + FRAME], 0.95 if loud else 0.0)
    return events


# -- the endpointer ------------------------------------------------------------------------


def test_a_verdict_shortens_the_silence_under_way_only() -> None:
    endpointer = Endpointer(EndpointConfig(min_silence_ms=2000, pause_ms=96))
    _push(endpointer, 0.8, True)
    assert any(isinstance(e, SpeechPause) for e in _push(endpointer, 0.128, False))
    assert endpointer.end_silence_after(250) == []  # 128 ms heard: not yet
    [end] = [e for e in _push(endpointer, 0.2, False) if isinstance(e, SpeechEnd)]
    assert 250 <= end.silence_ms < 250 + 32
    # the next utterance's silence is back at min_silence_ms until judged
    _push(endpointer, 0.8, True)
    assert not any(isinstance(e, SpeechEnd) for e in _push(endpointer, 1.9, False))
    assert any(isinstance(e, SpeechEnd) for e in _push(endpointer, 0.2, False))


def test_a_verdict_for_silence_already_heard_ends_at_once() -> None:
    endpointer = Endpointer(EndpointConfig(min_silence_ms=2000, pause_ms=256))
    _push(endpointer, 0.8, True)
    assert any(isinstance(e, SpeechPause) for e in _push(endpointer, 0.3, False))
    [end] = endpointer.end_silence_after(100)
    assert isinstance(end, SpeechEnd) and end.silence_ms >= 256
    assert not endpointer.speaking


def test_a_verdict_outside_a_pause_changes_nothing() -> None:
    endpointer = Endpointer(EndpointConfig(min_silence_ms=500, pause_ms=96))
    assert endpointer.end_silence_after(50) == []  # not speaking
    _push(endpointer, 0.8, True)
    assert endpointer.end_silence_after(50) == []  # speaking, no pause
    assert not any(isinstance(e, SpeechEnd) for e in _push(endpointer, 0.064, False))
    with pytest.raises(ValueError):
        endpointer.end_silence_after(0)


def test_speech_after_a_judged_pause_restores_the_long_silence() -> None:
    endpointer = Endpointer(EndpointConfig(min_silence_ms=2000, pause_ms=96))
    _push(endpointer, 0.8, True)
    _push(endpointer, 0.128, False)
    endpointer.end_silence_after(2000)  # judged unfinished: keep waiting
    _push(endpointer, 0.3, True)  # the speaker goes on
    assert not any(isinstance(e, SpeechEnd) for e in _push(endpointer, 1.5, False))


async def _pairs(*parts: tuple[float, bool]) -> AsyncIterator[tuple[bytes, float]]:
    for seconds, loud in parts:
        audio = tone(seconds, loud)
        for start in range(0, len(audio), FRAME):
            yield audio[start : start + FRAME], 0.95 if loud else 0.0


async def test_a_judged_pause_inside_an_utterance_does_not_end_it() -> None:
    verdicts = iter([0.1, 0.9])  # the first pause sounds unfinished, the second complete
    judged: list[SpeechPause] = []

    async def judge(pause: SpeechPause) -> int | None:
        judged.append(pause)
        return 250 if next(verdicts) >= 0.5 else None

    config = EndpointConfig(min_silence_ms=2000, pause_ms=96)
    pairs = _pairs((0.3, False), (0.8, True), (1.2, False), (0.8, True), (0.5, False))
    events = [e async for e in endpoint_stream(pairs, config, judge)]
    [end] = [e for e in events if isinstance(e, SpeechEnd)]
    assert len(judged) == 2
    assert end.duration_s > 0.8 + 1.2 + 0.8  # both halves and the pause between
    assert end.reason == "silence" and end.silence_ms < 300
    # without a judge the same audio is two utterances at a 500 ms silence
    plain = EndpointConfig(min_silence_ms=500, pause_ms=96)
    pairs = _pairs((0.3, False), (0.8, True), (1.2, False), (0.8, True), (0.6, False))
    ends = [e async for e in endpoint_stream(pairs, plain) if isinstance(e, SpeechEnd)]
    assert len(ends) == 2


# -- the session ---------------------------------------------------------------------------

redis = pytest.mark.redis


def _engines(turn: ScriptedTurn | None, vad: object = None) -> SessionEngines:
    return SessionEngines(
        llm=ScriptedLLM(["Fine."]), tts=ScriptedTTS(sample_rate=RATE), stt=ScriptedSTT(),
        vad=vad or EnergyVAD(), turn=turn,  # type: ignore[arg-type]
    )


async def _speak(session: LiveSession, audio: bytes) -> None:
    for start in range(0, len(audio), 640):
        await session.push_audio(audio[start : start + 640])


def _audio_seconds(events: list[Event], turn_id: str | None) -> float:
    [audio] = [e for e in events if e.type == "input.audio" and e.turn_id == turn_id]
    return audio.data.duration_ms / 1000  # type: ignore[union-attr]


@redis
async def test_a_thinking_pause_keeps_the_turn_with_smart_detection(event_log: EventLog) -> None:
    turn = ScriptedTurn(0.1, 0.9)
    session = await LiveSession.open("smart-pause", event_log, _engines(turn),
                                     create=SessionSettings(auto_response=False))
    await _speak(session, tone(0.3, False) + tone(0.8, True) + tone(1.2, False)
                 + tone(0.8, True) + tone(0.6, False))
    [stopped] = await speech_stops(event_log, "smart-pause", 1)
    assert stopped.data.end_of_turn == 0.9
    assert stopped.data.silence_ms is not None and 250 <= stopped.data.silence_ms < 300
    events = await event_log.read_all("smart-pause")
    assert _audio_seconds(events, stopped.turn_id) > 0.8 + 1.2 + 0.8
    assert len(turn.heard) == 2
    await session.close()


@redis
@pytest.mark.parametrize("rate", [8000, 24000])
async def test_the_model_hears_a_pause_at_its_own_rate_whatever_the_input_rate(
    event_log: EventLog, rate: int
) -> None:
    """The pause's audio comes at the VAD's rate, whatever the session's input rate (a
    phone line's 8 kHz, OpenAI's 24 kHz): read as the input rate it was stretched or
    squeezed, and the model judged speech it never heard (a 8 kHz call's turns waited
    turn_incomplete_ms)."""
    turn = ScriptedTurn(0.9)
    session = await LiveSession.open(f"rate-{rate}", event_log, _engines(turn),
                                     create=SessionSettings(input_sample_rate=rate))
    audio = tone(0.3, False, rate) + tone(0.8, True, rate) + tone(0.6, False, rate)
    for start in range(0, len(audio), rate // 25 * 2):  # 40 ms chunks
        await session.push_audio(audio[start : start + rate // 25 * 2])
    await speech_stops(event_log, f"rate-{rate}", 1)
    heard_s = len(turn.heard[0]) / 2 / turn.sample_rate
    assert 0.9 <= heard_s <= 1.3, heard_s  # the tone and a little silence around it
    await session.close()


@redis
@pytest.mark.parametrize(("heard", "turns"), [
    ("I'd like to book a table for", 1),  # reads unfinished: the pause is kept
    ("Book a table.", 2),  # reads finished: the model's verdict ends the turn
])
async def test_text_cues_keep_a_turn_the_model_heard_as_complete(
    event_log: EventLog, heard: str, turns: int
) -> None:
    turn, stt = ScriptedTurn(0.9), ScriptedSTT(heard)
    engines = _engines(turn)
    engines = SessionEngines(llm=engines.llm, tts=engines.tts, stt=stt, vad=engines.vad,
                             turn=turn)
    settings = SessionSettings(auto_response=False, turn_text_cues=True)
    session_id = f"smart-text-{turns}"
    session = await LiveSession.open(session_id, event_log, engines, create=settings)
    await _speak(session, tone(0.3, False) + tone(0.8, True) + tone(1.2, False)
                 + tone(0.8, True) + tone(2.4, False))
    stops = await speech_stops(event_log, session_id, turns)
    assert all(stop.data.end_of_turn == 0.9 for stop in stops)
    # each pause the model judged complete was read: a quick transcription of the turn so far
    assert turn.heard and sum(r.quick for r in stt.requests) == len(turn.heard)
    if turns == 1:
        events = await event_log.read_all(session_id)
        assert _audio_seconds(events, stops[0].turn_id) > 0.8 + 1.2 + 0.8
        assert stops[0].data.silence_ms is not None and stops[0].data.silence_ms >= 2000
    await session.close()


@redis
async def test_text_cues_are_off_unless_asked(event_log: EventLog) -> None:
    turn, stt = ScriptedTurn(0.9), ScriptedSTT("I'd like to book a table for")
    engines = _engines(turn)
    engines = SessionEngines(llm=engines.llm, tts=engines.tts, stt=stt, vad=engines.vad,
                             turn=turn)
    session = await LiveSession.open("smart-no-text", event_log, engines,
                                     create=SessionSettings(auto_response=False))
    await _speak(session, tone(0.3, False) + tone(0.8, True) + tone(1.2, False)
                 + tone(0.8, True) + tone(0.6, False))
    first, second = await speech_stops(event_log, "smart-no-text", 2)
    assert second.data.audio_ms > first.data.audio_ms + 1000  # the pause ended a turn
    assert not any(r.quick for r in stt.requests)  # the turns' own transcripts only
    await session.close()


@redis
async def test_silence_detection_is_one_setting_away(event_log: EventLog) -> None:
    turn = ScriptedTurn(0.1)
    settings = SessionSettings(auto_response=False, turn_detection="silence")
    session = await LiveSession.open("silence-pause", event_log, _engines(turn),
                                     create=settings)
    await _speak(session, tone(0.3, False) + tone(0.8, True) + tone(1.2, False)
                 + tone(0.8, True) + tone(0.6, False))
    first, second = await speech_stops(event_log, "silence-pause", 2)
    assert first.data.end_of_turn is None and first.data.silence_ms == 512  # 16 frames
    assert second.data.audio_ms > first.data.audio_ms + 1000  # the pause ended a turn
    assert turn.heard == []  # never asked
    await session.close()


@redis
async def test_a_failed_verdict_falls_back_to_end_of_speech(event_log: EventLog) -> None:
    turn = ScriptedTurn(None)
    settings = SessionSettings(auto_response=False, end_of_speech_ms=400)
    session = await LiveSession.open("smart-fails", event_log, _engines(turn), create=settings)
    await _speak(session, tone(0.3, False) + tone(0.8, True) + tone(0.6, False))
    [stopped] = await speech_stops(event_log, "smart-fails", 1)
    assert stopped.data.end_of_turn is None
    assert stopped.data.silence_ms is not None and 400 <= stopped.data.silence_ms < 432
    await session.close()


def test_smart_detection_is_refused_where_there_is_no_model() -> None:
    with pytest.raises(ProtocolError) as caught:
        merge_settings(SessionSettings(), {"turn_detection": "smart"},
                       EngineChoices(smart_turn=False))
    assert caught.value.code == "invalid_settings"
    merged = merge_settings(SessionSettings(), {"turn_detection": "silence"},
                            EngineChoices(smart_turn=False))
    assert merged.turn_detection == "silence"
    with pytest.raises(Exception, match="turn_complete_ms"):
        SessionSettings(turn_complete_ms=900, turn_incomplete_ms=800)


# -- the real models -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def smart_turn() -> object:
    from tests.support.turn_model import loaded_smart_turn

    return loaded_smart_turn()


@redis
async def test_real_vad_and_smart_turn_keep_a_thinking_pause_in_the_turn(
    event_log: EventLog, smart_turn: object
) -> None:
    from tests.support.silero_model import loaded_silero

    # "Could you tell me about … the history of Rome?": said whole, with a comma where the
    # speaker stops to think (mid-sentence prosody), the comma's pause stretched to 900 ms
    head, tail = split_at_pauses(piper_float("Could you tell me about, the history of Rome?"), 1)
    speech = compose([head, tail], [0.3, 0.9, 2.5])
    engines = replace(_engines(None, loaded_silero()), turn=smart_turn)
    session = await LiveSession.open("smart-real", event_log, engines,
                                     create=SessionSettings(auto_response=False))
    await _speak(session, speech.pcm16)
    [stopped] = await speech_stops(event_log, "smart-real", 1)
    (first_start, _), (_, second_end) = speech.segments_ms
    assert stopped.data.end_of_turn is not None
    # one turn, ended after the second half: the pause did not end it
    assert stopped.data.audio_ms + (stopped.data.silence_ms or 0) > second_end
    events = await event_log.read_all("smart-real")
    assert _audio_seconds(events, stopped.turn_id) * 1000 > second_end - first_start
    await session.close()
