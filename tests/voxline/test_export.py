"""``voxline export``: logged voice sessions as a dataset (WAV per utterance, events as
JSONL), read back event for event; an erased session is never exported; the turn-taking
evaluation of the dataset gives the figures the log gives."""

from __future__ import annotations

import asyncio
import json
import wave
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loadtests._spoken_sessions import speak_into_session
from loadtests._turn_corpus import split_at_pauses
from pipeline.datasets import read_dataset
from pipeline.log import EventLog, audit_entries, create_redis
from pipeline.session import SessionEngines
from schemas import EventLogSettings, InputAudio, SessionSettings, SpeechStopped
from tests.support.audio_fixtures import compose, piper_float
from tests.support.engines import ScriptedLLM, ScriptedSTT, ScriptedTTS
from tests.support.silero_model import loaded_silero
from voxline.cli import app

pytestmark = pytest.mark.redis
runner = CliRunner()
KEPT, ERASED = "sess-export-kept", "sess-export-erased"


async def _log_spoken(redis_url: str, prefix: str, session_id: str) -> None:
    """A spoken turn with a thinking pause (the server's own voice), answered."""
    head, tail = split_at_pauses(piper_float("Could you tell me about, the history of Rome?"), 1)
    speech = compose([head, tail], [0.3, 0.9, 2.5])
    redis = create_redis(redis_url)
    try:
        log = EventLog(redis, EventLogSettings(key_prefix=prefix))
        engines = SessionEngines(llm=ScriptedLLM(["Rome was founded on seven hills."]),
                                 tts=ScriptedTTS(), stt=ScriptedSTT(), vad=loaded_silero())
        create = SessionSettings(auto_response=False, turn_detection="silence",
                                 end_of_speech_ms=2000)
        await speak_into_session(log, session_id, speech.pcm16, engines, create,
                                 SpeechStopped)
    finally:
        await redis.aclose()


async def _logged(redis_url: str, prefix: str, session_id: str) -> list[object]:
    redis = create_redis(redis_url)
    try:
        return list(await EventLog(redis, EventLogSettings(key_prefix=prefix))
                    .read_all(session_id))
    finally:
        await redis.aclose()


async def _audit(redis_url: str, prefix: str, session_id: str) -> list[dict[str, object]]:
    redis = create_redis(redis_url)
    try:
        log = EventLog(redis, EventLogSettings(key_prefix=prefix))
        return await audit_entries(log, session_id)
    finally:
        await redis.aclose()


def test_export_writes_the_log_as_a_dataset_and_skips_an_erased_session(
    redis_url: str, key_prefix: str, tmp_path: Path,
) -> None:
    for session_id in (KEPT, ERASED):
        asyncio.run(_log_spoken(redis_url, key_prefix, session_id))
    env = {"VOXLINE_REDIS_URL": redis_url, "VOXLINE_LOG__KEY_PREFIX": key_prefix}
    erased = runner.invoke(app, ["erase", ERASED, "--yes"], env=env)
    assert erased.exit_code == 0, erased.output
    out = tmp_path / "dataset"

    result = runner.invoke(app, ["export", KEPT, ERASED, "--out", str(out)], env=env)

    assert result.exit_code == 0, result.output
    assert f"skipped {ERASED}" in result.output
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["sessions"] == 1 and list(manifest["skipped"]) == [ERASED]
    assert not list(out.rglob(f"*{ERASED}*"))  # not a file of it
    logged = asyncio.run(_logged(redis_url, key_prefix, KEPT))
    utterances = [e for e in logged if isinstance(e, InputAudio)]
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == len(utterances) >= 1
    for row, utterance in zip(rows, utterances, strict=True):  # the audiofolder layout
        assert row["session_id"] == KEPT and row["event_id"] == utterance.id
        with wave.open(str(out / row["file_name"]), "rb") as wav:
            assert wav.getframerate() == utterance.data.sample_rate
            assert wav.readframes(wav.getnframes()) == utterance.data.audio
    [back] = read_dataset(out)
    assert back.session_id == KEPT and list(back.events) == logged  # event for event
    assert any(entry["action"] == "voxline export"
               for entry in asyncio.run(_audit(redis_url, key_prefix, KEPT)))

    again = runner.invoke(app, ["export", KEPT, "--out", str(out)], env=env)
    assert again.exit_code == 2 and "not an empty folder" in again.output


def test_the_dataset_evaluates_as_the_log_does(
    redis_url: str, key_prefix: str, tmp_path: Path,
) -> None:
    asyncio.run(_log_spoken(redis_url, key_prefix, KEPT))
    env = {"VOXLINE_REDIS_URL": redis_url, "VOXLINE_LOG__KEY_PREFIX": key_prefix}
    out = tmp_path / "dataset"
    assert runner.invoke(app, ["export", KEPT, "--out", str(out)], env=env).exit_code == 0
    tried = ["--evaluate", "turn_detection=silence,end_of_speech_ms=500",
             "--evaluate", "end_of_speech_ms=2500"]

    def measures(*source: str) -> dict[str, object]:
        result = runner.invoke(app, ["replay", *source, "--json", *tried], env=env)
        assert result.exit_code == 0, result.output
        report: dict[str, object] = json.loads(result.output[result.output.index("{"):])
        return report

    from_log, from_dataset = measures(KEPT), measures("--dataset", str(out))
    assert from_dataset == from_log
    settings = from_log["settings"]
    assert isinstance(settings, dict)
    assert settings["turn_detection=silence,end_of_speech_ms=500"]["turns"] == 2  # cut
    unknown = runner.invoke(app, ["replay", "nobody", "--dataset", str(out), *tried], env=env)
    assert unknown.exit_code != 0 and "no session 'nobody'" in unknown.output
