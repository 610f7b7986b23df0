"""A candidate measured in a process of its own: it travels there whole (its JSON), a child
that fails or outruns the budget is reported with the reason instead of taking the
evaluation down, and the CLI exits 4 when a candidate could not be measured."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from typer.testing import CliRunner

from pipeline.log import EventLog
from pipeline.session import LiveSession, SessionEngines
from schemas import ConfigurationError, EngineSettings, Event, SessionSettings, Settings
from tests.support.engines import RecordingLLM
from tests.support.sessions import collect_until
from voxline import evaluate_candidate
from voxline.candidates import Candidate, parse_candidate, resolved
from voxline.cli import app
from voxline.evaluate_candidate import measured_apart

ODD = ('odd={"turn_detection": "silence", "stt_model": "whisper-tiny.en", '
       '"system_prompt": "Be brief.", "max_tokens": 7, "llm_model": "m", "voice": "amy", '
       '"tts_model": "t", "tts_engine": "piper"}')


def test_a_candidate_travels_to_its_process_whole() -> None:
    candidate = parse_candidate(ODD)
    assert Candidate.from_json(candidate.to_json()) == candidate
    plain = parse_candidate("quick=end_of_speech_ms=500")
    assert Candidate.from_json(plain.to_json()) == plain
    window = parse_candidate('w={"stt_options": {"turn_window_s": 30}, "llm_options": '
                             '{"threads": 2}, "tts_model": "x", "tts_options": {"a": 1}}')
    assert Candidate.from_json(window.to_json()) == window


def test_options_alone_change_the_server_s_engine_and_a_named_engine_stands_as_given() -> None:
    server = EngineSettings(engine="language-router", options={"stt_a": 1, "turn_window_s": 15})
    window = parse_candidate('w={"stt_options": {"turn_window_s": 30}}').stt
    assert resolved(window, server) == EngineSettings(
        engine="language-router", options={"stt_a": 1, "turn_window_s": 30})
    own = parse_candidate('o={"stt_model": "whisper-base", "stt_options": {"beam": 1}}').stt
    assert resolved(own, server) == own and own is not None
    assert own.engine == "faster-whisper" and own.engine_options() == {"beam": 1,
                                                                       "model": "whisper-base"}
    assert resolved(None, server) is server
    for bad, said in (('b={"stt_options": 3}', "stt_options is a JSON object"),
                      ('b={"llm_engine": "x"}', "llm_engine needs llm_model")):
        with pytest.raises(ConfigurationError, match=said):
            parse_candidate(bad)


async def _typed_session(event_log: EventLog, sid: str) -> dict[str, Sequence[Event]]:
    session = await LiveSession.open(sid, event_log, SessionEngines(llm=RecordingLLM(["Hi."])),
                                     create=SessionSettings())
    await session.submit_text("Hello there.")
    await collect_until(session, "response.done")
    await session.close()
    return {sid: await event_log.read_all(sid)}


@pytest.mark.redis
async def test_a_child_that_fails_is_reported_and_one_past_the_budget_is_stopped(
        event_log: EventLog, key_prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    read = await _typed_session(event_log, f"{key_prefix}apart")
    said: list[str] = []
    broken = parse_candidate('broken={"llm_model": "m", "llm_engine": "no-such-engine"}')
    failed = await measured_apart(read, broken, Settings(), {}, 60.0, said.append)
    assert failed["complete"] is False
    assert failed["error"].startswith("its process failed (exit 1)")
    assert "no-such-engine" in failed["error"]

    monkeypatch.setattr(evaluate_candidate, "LOAD_GRACE_S", 0.2)
    slow = parse_candidate("terse=max_tokens=3")
    stopped = await measured_apart(read, slow, Settings(), {}, 0.0, said.append)
    assert stopped == {"error": "its process ran past the budget (0 s + 0 s to load) and "
                                "was stopped", "complete": False}


@pytest.mark.redis
def test_the_cli_exits_4_when_a_candidate_could_not_be_measured(
        event_log_settings_env: dict[str, str], tmp_path: object) -> None:
    sid = event_log_settings_env["SID"]
    result = CliRunner().invoke(app, [
        "evaluate", sid, "--out", str(tmp_path),
        "--candidate", 'broken={"llm_model": "m", "llm_engine": "no-such-engine"}'],
        env={k: v for k, v in event_log_settings_env.items() if k != "SID"})
    assert result.exit_code == 4, result.output
    assert "failed: broken: its process failed" in result.output


@pytest.fixture
def event_log_settings_env(redis_url: str, key_prefix: str) -> dict[str, str]:
    """A typed session in the log, and the environment that points the CLI at it."""
    from pipeline.log import create_redis
    from schemas import EventLogSettings

    async def make() -> str:
        redis = create_redis(redis_url)
        try:
            log = EventLog(redis, EventLogSettings(key_prefix=key_prefix))
            return next(iter(await _typed_session(log, f"{key_prefix}cli")))
        finally:
            await redis.aclose()

    return {"VOXLINE_REDIS_URL": redis_url, "VOXLINE_LOG__KEY_PREFIX": key_prefix,
            "SID": asyncio.run(make())}
