"""``voxline replay SESSION --evaluate SETTINGS``: a logged voice session's input replayed
through the server's real VAD and end-of-turn model with other settings, and by its words
(the real transcriber and text end-of-turn model) where the settings say so."""

from __future__ import annotations

import asyncio
import json

import pytest
from typer.testing import CliRunner

from loadtests._spoken_sessions import speak_into_session
from loadtests._turn_corpus import split_at_pauses
from pipeline.log import EventLog, create_redis
from pipeline.session import SessionEngines
from schemas import EventLogSettings, SessionSettings, Settings, SpeechStopped
from tests.support.audio_fixtures import compose, piper_float
from tests.support.engines import ScriptedLLM, ScriptedSTT, ScriptedTTS
from tests.support.silero_model import loaded_silero
from voxline.cli import app
from voxline.evaluate import evaluate_sessions, parse_patch

pytestmark = pytest.mark.redis
SID = "sess-evaluate"
runner = CliRunner()


async def _log_a_paused_turn(redis_url: str, prefix: str, **settings: object) -> None:
    """A session whose one turn has a 900 ms thinking pause (silence rule at 2,000 ms)."""
    head, tail = split_at_pauses(piper_float("Could you tell me about, the history of Rome?"), 1)
    speech = compose([head, tail], [0.3, 0.9, 2.5])
    redis = create_redis(redis_url)
    try:
        log = EventLog(redis, EventLogSettings(key_prefix=prefix))
        engines = SessionEngines(llm=ScriptedLLM(["Fine."]), tts=ScriptedTTS(),
                                 stt=ScriptedSTT(), vad=loaded_silero())
        create = SessionSettings(auto_response=False, turn_detection="silence",
                                 end_of_speech_ms=2000).merged(settings)
        await speak_into_session(log, SID, speech.pcm16, engines, create, SpeechStopped)
    finally:
        await redis.aclose()


def test_replay_evaluate_compares_settings_on_the_logged_input(
    redis_url: str, key_prefix: str
) -> None:
    asyncio.run(_log_a_paused_turn(redis_url, key_prefix))
    env = {"VOXLINE_REDIS_URL": redis_url, "VOXLINE_LOG__KEY_PREFIX": key_prefix}
    result = runner.invoke(app, [
        "replay", SID, "--json",
        "--evaluate", "turn_detection=silence,end_of_speech_ms=500",
        "--evaluate", '{"turn_detection": "smart", "turn_judge": "audio"}',
    ], env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    rows = report["settings"]
    assert report["sessions"] == [SID]
    assert (rows["as logged"]["turns"], rows["as logged"]["continued"]) == (1, 0)
    cut = rows["turn_detection=silence,end_of_speech_ms=500"]
    assert (cut["turns"], cut["continued"]) == (2, 1)  # cut at the pause; speech went on
    assert rows['{"turn_detection": "smart", "turn_judge": "audio"}']["turns"] == 1  # kept
    table = runner.invoke(app, ["replay", SID, "--evaluate", "end_of_speech_ms=800"], env=env)
    assert table.exit_code == 0 and "as logged" in table.output and "800" in table.output


@pytest.mark.models
def test_a_session_judged_by_its_words_is_replayed_by_its_words(
    redis_url: str, key_prefix: str
) -> None:
    # the words are read: the pause after "Could you tell me about," reads unfinished,
    # and the whole question's end is as complete as the text model's threshold says
    asyncio.run(_log_a_paused_turn(redis_url, key_prefix, turn_judge="text"))
    settings = Settings(redis_url=redis_url, log=EventLogSettings(key_prefix=key_prefix))
    words = '{"turn_detection": "smart", "turn_judge": "text"}'
    strict = '{"turn_detection": "smart", "turn_judge": "text", "turn_text_threshold": 0.99}'
    result = asyncio.run(evaluate_sessions([SID], [words, strict], settings))
    assert result.sessions == [SID] and not result.skipped
    (ends, _), = result.replays[words]
    assert len(ends) == 1  # the pause did not end the turn
    assert ends[0].end_of_turn is not None and ends[0].end_of_turn >= 0.5
    assert ends[0].decided_ms - ends[0].speech_end_ms < 1000  # turn_complete_ms
    (strict_ends, _), = result.replays[strict]
    assert len(strict_ends) == 1
    assert strict_ends[0].end_of_turn == ends[0].end_of_turn
    assert strict_ends[0].decided_ms - strict_ends[0].speech_end_ms >= 2000  # incomplete


def test_words_asked_of_a_server_without_a_text_model_are_refused(
    redis_url: str, key_prefix: str
) -> None:
    asyncio.run(_log_a_paused_turn(redis_url, key_prefix))
    env = {"VOXLINE_REDIS_URL": redis_url, "VOXLINE_LOG__KEY_PREFIX": key_prefix,
           "VOXLINE_TURN_TEXT__ENGINE": "none"}
    result = runner.invoke(app, ["replay", SID, "--evaluate",
                                 '{"turn_detection": "smart", "turn_judge": "text"}'], env=env)
    assert result.exit_code != 0
    assert "VOXLINE_TURN_TEXT__ENGINE" in result.output
    # an English session's default judge (the words) falls back to the sound there, as a
    # live session on that server does: replayed, not skipped or refused
    smart = runner.invoke(app, ["replay", SID, "--json", "--evaluate",
                                '{"turn_detection": "smart"}'], env=env)
    assert smart.exit_code == 0, smart.output
    report = json.loads(smart.output[smart.output.index("{"):])
    assert report["sessions"] == [SID] and report["settings"]['{"turn_detection": "smart"}'][
        "turns"] == 1


@pytest.mark.parametrize("text", ["voice=amy", "end_of_speech_ms", "{not json", ""])
def test_evaluate_takes_turn_taking_settings_only(text: str) -> None:
    from schemas import ConfigurationError

    with pytest.raises(ConfigurationError):
        parse_patch(text)
    assert parse_patch("end_of_speech_ms=800, turn_detection=silence") == {
        "end_of_speech_ms": 800, "turn_detection": "silence"}


def test_several_sessions_only_with_evaluate() -> None:
    result = runner.invoke(app, ["replay", "a", "b"])
    assert result.exit_code == 2 and "only with --evaluate" in result.output
