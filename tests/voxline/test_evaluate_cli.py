"""``voxline evaluate``: a spoken session (the server's own voice, transcribed live by
Whisper tiny.en) evaluated against candidates that differ in a known way: the same
transcriber (no change), another (its word error rate recomputed here, independently),
and a shorter end of speech (the pause cuts the turn); a threshold crossed exits 3; the
exported dataset evaluates to the same figures (each candidate in its own process or all
in this one), and a reference written into its metadata gives the word error rate
against the truth; reply and speech candidates answer and speak the turn again."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loadtests._spoken_sessions import speak_into_session
from loadtests._turn_corpus import split_at_pauses
from pipeline.engines import Transcriber, create_engine, transcribed_text
from pipeline.log import EventLog, create_redis, fold
from pipeline.session import SessionEngines
from schemas import (
    EventLogSettings,
    InputAudio,
    ResponseDone,
    SessionSettings,
    TranscriptionRequest,
)
from tests.support.audio_fixtures import compose, piper_float
from tests.support.engines import ScriptedLLM, ScriptedTTS
from tests.support.silero_model import loaded_silero
from voxline.cli import app
from voxline.word_errors import normalize, word_errors

pytestmark = [pytest.mark.redis, pytest.mark.models]
runner = CliRunner()
SID = "sess-evaluate-cli"


async def _stt(model: str) -> Transcriber:
    stt = create_engine("stt", "faster-whisper", {"model": model})
    await stt.load()
    assert isinstance(stt, Transcriber)
    return stt


async def _log_spoken(redis_url: str, prefix: str) -> None:
    head, tail = split_at_pauses(piper_float("Could you tell me about, the history of Rome?"), 1)
    speech = compose([head, tail], [0.3, 0.9, 2.5])
    redis = create_redis(redis_url)
    stt = await _stt("whisper-tiny.en")
    try:
        log = EventLog(redis, EventLogSettings(key_prefix=prefix))
        engines = SessionEngines(llm=ScriptedLLM(["Rome grew on seven hills."]),
                                 tts=ScriptedTTS(), stt=stt, vad=loaded_silero())
        create = SessionSettings(turn_detection="silence", end_of_speech_ms=2000,
                                 language="en")
        await speak_into_session(log, SID, speech.pcm16, engines, create, ResponseDone)
    finally:
        await stt.close()
        await redis.aclose()


async def _base_wer(redis_url: str, prefix: str) -> float:
    """Whisper base against the logged transcripts, computed here from the log."""
    redis = create_redis(redis_url)
    stt = await _stt("whisper-base")
    try:
        events = await EventLog(redis, EventLogSettings(key_prefix=prefix)).read_all(SID)
        turns = fold(SID, events).turns
        errors = words = 0
        for event in events:
            if isinstance(event, InputAudio):
                logged = turns[event.turn_id or ""].user_text
                heard = await transcribed_text(stt, TranscriptionRequest(
                    audio=event.data.audio, sample_rate=event.data.sample_rate, language="en"))
                errors += word_errors(logged, heard)[0]
                words += len(normalize(logged))
        return round(errors / words, 4)
    finally:
        await stt.close()
        await redis.aclose()


def test_candidates_differ_as_they_should_and_a_crossed_threshold_fails(
    redis_url: str, key_prefix: str, tmp_path: Path,
) -> None:
    asyncio.run(_log_spoken(redis_url, key_prefix))
    env = {"VOXLINE_REDIS_URL": redis_url, "VOXLINE_LOG__KEY_PREFIX": key_prefix}
    candidates = ["--candidate", 'tiny={"stt_model": "whisper-tiny.en"}',
                  "--candidate", 'base={"stt_model": "whisper-base"}',
                  "--candidate", "quick=end_of_speech_ms=500"]

    result = runner.invoke(app, ["evaluate", SID, *candidates, "--out", str(tmp_path / "a"),
                                 "--fail-if", "quick.turns>1",
                                 "--fail-if", "tiny.wer_vs_logged>0"], env=env)

    assert result.exit_code == 3, result.output  # quick cut the turn: crossed
    assert "crossed: quick: turns 2" in result.output and "crossed: tiny" not in result.output
    report = json.loads((tmp_path / "a" / "evaluation.json").read_text())
    assert report["sessions"] == [SID] and report["complete"]
    tiny, base, quick = (report["candidates"][n] for n in ("tiny", "base", "quick"))
    assert tiny["transcripts"]["utterances"] == 1
    assert tiny["transcripts"]["wer_vs_logged"] == 0 and tiny["transcripts"]["changed"] == 0
    assert base["transcripts"]["wer_vs_logged"] == asyncio.run(
        _base_wer(redis_url, key_prefix))
    assert report["logged"]["turn_taking"]["turns"] == 1
    assert quick["turn_taking"]["turns"] == 2 and quick["turn_taking"]["continued"] == 1
    assert tiny["turn_taking"] == report["logged"]["turn_taking"]  # no turn patch: as logged
    # the one turn was waited after, and ended by every candidate; nothing spoke over a reply
    assert (report["logged"]["turn_taking"]["ended"], quick["turn_taking"]["missed"]) == (1, 0)
    assert report["logged"]["turn_taking"]["overlaps"] == 0
    assert report["logged"]["latency_ms"]["stt"] is not None
    page = (tmp_path / "a" / "evaluation.html").read_text()
    assert "<svg" in page and "wer_vs_logged" in page
    # the candidates' table has what the sessions did beside them, where it is known
    turns_row = page.split("<tr><td>turns</td>", 1)[1].split("</tr>", 1)[0]
    assert turns_row.replace("</td>", "").split("<td>")[1:] == ["1", "1", "1", "2"]

    exported = runner.invoke(app, ["export", SID, "--out", str(tmp_path / "data")], env=env)
    assert exported.exit_code == 0, exported.output
    again = runner.invoke(app, ["evaluate", "--dataset", str(tmp_path / "data"),
                                *candidates[:2], *candidates[4:],  # tiny and quick
                                "--out", str(tmp_path / "b"), "--in-process"], env=env)
    assert again.exit_code == 0, again.output
    from_dataset = json.loads((tmp_path / "b" / "evaluation.json").read_text())
    for name in ("tiny", "quick"):  # a transcript and a turn-taking candidate
        ours, theirs = report["candidates"][name], from_dataset["candidates"][name]
        assert ours["turn_taking"] == theirs["turn_taking"]
        for figure in ("utterances", "wer_vs_logged", "changed", "examples"):
            assert ours["transcripts"][figure] == theirs["transcripts"][figure]

    # a person writes down what was really said: the dataset's row gains a reference
    metadata = tmp_path / "data" / "metadata.jsonl"
    [row] = [json.loads(line) for line in metadata.read_text().splitlines()]
    truth = "Could you tell me all about the history of ancient Rome?"
    metadata.write_text(json.dumps({**row, "reference": truth}) + "\n")
    checked = runner.invoke(app, ["evaluate", "--dataset", str(tmp_path / "data"),
                                  "--candidate", 'tiny={"stt_model": "whisper-tiny.en"}',
                                  "--candidate", "short=max_tokens=2,temperature=0,"
                                  "speech_speed=0.7",
                                  "--candidate", "long=max_tokens=40,temperature=0,"
                                  "speech_speed=1.4",
                                  "--out", str(tmp_path / "c"), "--in-process",
                                  "--fail-if", "wer_vs_reference>0.5"], env=env)
    assert checked.exit_code == 0, checked.output
    assert "1 reference transcript(s)" in checked.output
    against = json.loads((tmp_path / "c" / "evaluation.json").read_text())
    logged_text = row["transcript"]
    expected = round(word_errors(truth, logged_text)[0] / len(normalize(truth)), 4)
    assert expected > 0  # the reference differs from what was heard, on purpose
    assert against["logged"]["transcripts"] == {"with_reference": 1,
                                                "wer_vs_reference": expected}
    tiny_then = against["candidates"]["tiny"]["transcripts"]
    assert (tiny_then["with_reference"], tiny_then["wer_vs_reference"]) == (1, expected)
    assert "against 1 reference(s)" in (tmp_path / "c" / "evaluation.html").read_text()

    # the reply asked again of the server's own language model, at two lengths
    assert against["logged"]["answers"] == {"turns": 1, "calls": 0}
    assert against["candidates"]["tiny"]["answers"] is None  # it changes no reply setting
    short, long = (against["candidates"][n]["answers"] for n in ("short", "long"))
    for answers in (short, long):
        assert answers["turns"] == 1 and answers["changed"] == 1  # not the scripted reply
        [example] = answers["examples"]
        assert example["logged"] == "Rome grew on seven hills."
        ours, theirs = normalize(example["logged"]), normalize(example["answered"])
        common = sum(min(ours.count(w), theirs.count(w)) for w in set(ours))
        assert answers["similarity"] == round(
            2 * common / (len(ours) + len(theirs)) if common else 0.0, 4)
    short_words = normalize(short["examples"][0]["answered"])
    assert len(short_words) <= 2 < len(normalize(long["examples"][0]["answered"]))

    # the logged reply spoken again by the server's voice at two speeds, and heard back
    assert against["candidates"]["tiny"]["speech"] is None  # it changes no speech setting
    slow, brisk = (against["candidates"][n]["speech"] for n in ("short", "long"))
    assert slow["audio_s"] > brisk["audio_s"] > 0  # the slower voice speaks longer
    for speech in (slow, brisk):
        assert speech["replies"] == 1 and not speech["failed"]
        assert speech["first_chunk_ms"]["p50"] > 0 and speech["real_time_factor"] > 0
        said = normalize("Rome grew on seven hills.")
        heard = normalize(speech["examples"][0]["heard"]) if speech["examples"] else said
        assert speech["heard_back_wer"] == round(word_errors(
            " ".join(said), " ".join(heard))[0] / len(said), 4)

    # latency side by side: each candidate's own figure where it ran the stage again
    page = (tmp_path / "c" / "evaluation.html").read_text()
    row = page.split("<tr><td>tts_first_chunk</td>", 1)[1].split("</tr>", 1)[0]
    # as logged, as logged offline (the baseline: a candidate changes the voice), then the
    # candidates: the one that leaves the voice alone has no figure of its own
    cells = row.replace("</td>", "").split("<td>")[1:]
    assert [cell == "—" for cell in cells[1:]] == [False, True, False, False]
    assert against["logged"]["offline"]["speech"]["replies"] == 1
    assert cells[3].startswith(f"{slow['first_chunk_ms']['p50']:g} / ")


def test_a_candidate_must_try_something_known() -> None:
    for bad in ("x=volume=11", "x={not json", 'x={"stt_engine": "faster-whisper"}'):
        result = runner.invoke(app, ["evaluate", "s", "--candidate", bad])
        assert result.exit_code != 0 and "error:" in result.output, (bad, result.output)
    result = runner.invoke(app, ["evaluate", "s"])
    assert result.exit_code == 2 and "--candidate" in result.output
    result = runner.invoke(app, ["evaluate", "s", "--candidate", "a=end_of_speech_ms=9",
                                 "--fail-if", "nonsense>1"])
    assert result.exit_code != 0 and "METRIC" in result.output

