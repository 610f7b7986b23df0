"""Judging a pause by its words (``turn_judge: text``): each pause is transcribed quickly and
a text model's probability ends the turn or keeps it; the word cues keep a turn that reads
unfinished; no words, or a failure, end it after ``end_of_speech_ms``. A live session with
a loudness "VAD" and scripted models, then the real VAD, Whisper and text model on a Piper
turn with a thinking pause (through the replay, which judges exactly as a session does).
The tests wait on the log, never on the clock.
"""

from __future__ import annotations

import pytest

from loadtests._turn_corpus import split_at_pauses
from pipeline.log import EventLog
from pipeline.session import LiveSession, LoggedInput, SessionEngines, replay_turn_ends
from pipeline.session.settings import EngineChoices, merge_settings
from schemas import ProtocolError, SessionSettings, SpeechStopped
from tests.support.audio_fixtures import compose, piper_float, tone
from tests.support.engines import (
    EnergyVAD,
    ScriptedLLM,
    ScriptedSTT,
    ScriptedTextTurn,
    ScriptedTTS,
    ScriptedTurn,
)
from tests.support.sessions import speech_stops

RATE = 16000
redis = pytest.mark.redis
#: speech, a 1.2 s pause, speech, then quiet past turn_incomplete_ms
PAUSED = (tone(0.3, False) + tone(0.8, True) + tone(1.2, False) + tone(0.8, True)
          + tone(2.4, False))
BY_WORDS = SessionSettings(auto_response=False, turn_judge="text")


def _engines(stt: ScriptedSTT, text: ScriptedTextTurn | None, turn: ScriptedTurn
             ) -> SessionEngines:
    return SessionEngines(llm=ScriptedLLM(["Fine."]), tts=ScriptedTTS(sample_rate=RATE),
                          stt=stt, vad=EnergyVAD(), turn=turn, turn_text=text)


async def _turns(log: EventLog, session_id: str, engines: SessionEngines,
                 settings: SessionSettings, count: int) -> list[SpeechStopped]:
    """Speak :data:`PAUSED` into a new session; its first ``count`` turn ends."""
    session = await LiveSession.open(session_id, log, engines, create=settings)
    try:
        for start in range(0, len(PAUSED), 640):
            await session.push_audio(PAUSED[start : start + 640])
        return await speech_stops(log, session_id, count)
    finally:
        await session.close()


@redis
@pytest.mark.parametrize(("verdict", "turns"), [(0.1, 1), (0.9, 2)])
async def test_the_words_decide_and_the_sound_is_not_asked(
    event_log: EventLog, verdict: float, turns: int
) -> None:
    audio, stt, text = ScriptedTurn(0.9), ScriptedSTT("I would like to know."), \
        ScriptedTextTurn(verdict)
    stops = await _turns(event_log, f"words-{turns}", _engines(stt, text, audio), BY_WORDS,
                         turns)
    assert audio.heard == []  # the audio model says 0.9 and is never asked
    assert text.read and all(t == "I would like to know." for t in text.read)
    assert sum(r.quick for r in stt.requests) == len(text.read)  # each pause transcribed
    assert all(stop.data.end_of_turn == verdict for stop in stops)
    if turns == 1:  # the pause kept the turn; its end waited turn_incomplete_ms
        assert stops[0].data.silence_ms is not None and stops[0].data.silence_ms >= 2000
    else:  # the pause ended a turn after turn_complete_ms
        assert stops[0].data.silence_ms is not None and 250 <= stops[0].data.silence_ms < 300


@redis
async def test_words_that_read_unfinished_keep_the_turn_without_asking_the_model(
    event_log: EventLog,
) -> None:
    stt, text = ScriptedSTT("I'd like to book a table for"), ScriptedTextTurn(0.99)
    [stop] = await _turns(event_log, "words-cue", _engines(stt, text, ScriptedTurn(0.9)),
                          BY_WORDS, 1)
    assert text.read == [] and stop.data.end_of_turn == 0.0


@redis
@pytest.mark.parametrize(("heard", "verdict"), [("", 0.9), ("I would like to know.", None)])
async def test_no_words_or_a_failed_verdict_end_after_end_of_speech(
    event_log: EventLog, heard: str, verdict: float | None
) -> None:
    stt, text = ScriptedSTT(heard), ScriptedTextTurn(verdict)
    settings = BY_WORDS.merged({"end_of_speech_ms": 400})
    first, *_ = await _turns(event_log, f"words-fallback-{bool(heard)}",
                             _engines(stt, text, ScriptedTurn(0.9)), settings, 1)
    assert first.data.end_of_turn is None
    assert first.data.silence_ms is not None and 400 <= first.data.silence_ms < 432


@redis
@pytest.mark.parametrize(("settings", "with_text", "by_words"), [
    (SessionSettings(auto_response=False), True, True),  # English: the words by default
    (SessionSettings(auto_response=False, language="en-GB"), True, True),
    (SessionSettings(auto_response=False, language="de"), True, False),  # German: the sound
    (SessionSettings(auto_response=False, turn_judge="audio"), True, False),  # asked for
    (SessionSettings(auto_response=False), False, False),  # no text model on the server
])
async def test_the_words_judge_english_by_default_and_the_sound_otherwise(
    event_log: EventLog, settings: SessionSettings, with_text: bool, by_words: bool
) -> None:
    audio, stt, text = ScriptedTurn(0.9), ScriptedSTT("I would like to know."), \
        ScriptedTextTurn(0.1)
    session_id = f"judge-{settings.language}-{settings.turn_judge}-{with_text}"
    await _turns(event_log, session_id, _engines(stt, text if with_text else None, audio),
                 settings, 1 if by_words else 2)
    if by_words:
        assert text.read and audio.heard == []
    else:
        assert text.read == [] and len(audio.heard) >= 1


def test_the_text_judge_is_refused_where_there_is_no_text_model() -> None:
    with pytest.raises(ProtocolError) as caught:
        merge_settings(SessionSettings(), {"turn_judge": "text"},
                       EngineChoices(smart_turn=True, text_turn=False))
    assert caught.value.code == "invalid_settings"
    assert merge_settings(SessionSettings(), {"turn_judge": "audio"},
                          EngineChoices(text_turn=False)).turn_judge == "audio"


# -- the real models -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def vad_and_audio_model() -> tuple[object, object]:
    from tests.support.silero_model import loaded_silero
    from tests.support.turn_model import loaded_smart_turn

    return loaded_silero(), loaded_smart_turn()


async def test_real_models_keep_a_thinking_pause_in_the_turn_by_its_words(
    vad_and_audio_model: tuple[object, object],
) -> None:
    """"I would like to know, … the capital of France.": Smart Turn hears the pause as
    often complete as not on these voices; the words say it goes on."""
    from pipeline.engines import create_engine, transcript_text
    from schemas import TranscriptionRequest

    head, tail = split_at_pauses(piper_float("I would like to know, the capital of France."), 1)
    speech = compose([head, tail], [0.3, 0.9, 2.5])
    stt, text = create_engine("stt", "faster-whisper"), create_engine("turn_text", "llama-cpp")
    await stt.load()
    await text.load()
    heard: list[str] = []

    async def transcribe(audio: bytes, rate: int) -> str:
        request = TranscriptionRequest(audio=audio, sample_rate=rate, language="en",
                                       quick=True)
        heard.append(transcript_text([s async for s in stt.transcribe(request)]))  # type: ignore[attr-defined]
        return heard[-1]

    try:
        ends, _ = await replay_turn_ends(
            LoggedInput("words-real", speech.pcm16, (), ()),
            SessionSettings(turn_judge="text"), *vad_and_audio_model,  # type: ignore[arg-type]
            transcribe=transcribe, text=text)  # type: ignore[arg-type]
    finally:
        await stt.close()
        await text.close()
    _, (_, second_end) = speech.segments_ms
    assert len(heard) >= 2, heard  # the pause, then the end
    assert len(ends) == 1, (ends, heard)  # one turn: the pause did not end it
    assert ends[0].speech_end_ms >= second_end - 100
    assert ends[0].end_of_turn is not None and ends[0].end_of_turn >= 0.6, (ends, heard)


@redis
async def test_a_pause_is_judged_on_the_transcript_its_speculation_makes(
    event_log: EventLog,
) -> None:
    """Preemptive turns transcribe each pause for the reply they prepare; the judge reads
    that transcript instead of asking the Transcriber for the same words again."""
    stt, text = ScriptedSTT("I would like to know."), ScriptedTextTurn(0.1)
    settings = SessionSettings(turn_judge="text")  # replies and preemptive turns: on
    [stop] = await _turns(event_log, "words-shared",
                          _engines(stt, text, ScriptedTurn(0.9)), settings, 1)
    assert text.read == ["I would like to know."] * 2  # both pauses judged by their words
    assert not any(r.quick for r in stt.requests)  # on the speculations' transcripts
    # one transcription per pause: the first pause's speculation was dropped when speech
    # resumed, the last one's covers the turn, so the turn is not transcribed again
    assert len(stt.requests) == 2
    assert stop.data.end_of_turn == 0.1
