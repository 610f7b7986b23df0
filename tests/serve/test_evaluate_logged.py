"""``voxline evaluate`` on sessions the real Serve app logged: questions spoken in the
server's own voice (Piper) over the real socket, transcribed live by the app's Whisper,
then chosen from the log by their tag and tried against candidates that differ in a known
way. The figures it reports are recomputed here from the log and the audio's shape.

The evaluation's other tests log their sessions through the live session alone; this one
reads what the Gateway itself wrote (input audio placed in the session's input, the
turn ends, the transcripts), which is what an operator evaluates."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.log import EventLog, create_redis
from tests.serve._app import App
from tests.support.audio_fixtures import piper_pcm16
from voxline.cli import app as cli
from voxline.client import VoxlineClient
from voxline.demo import RATE, voice_turn, with_pauses

pytestmark = [pytest.mark.serve, pytest.mark.models, pytest.mark.redis]

#: the pause inside the second question: longer than the quick candidate's end of speech,
#: shorter than the one the sessions were logged with
PAUSE_S = 0.8
LOGGED_END_MS = 1500
QUICK_END_MS = 400
GREEDY = {"temperature": 0.0, "max_tokens": 12, "seed": 1}


async def _logged(app: App, session_ids: list[str]) -> list[list[str]]:
    """Each session's logged event types, in order."""
    assert app.settings.redis_url is not None
    redis = create_redis(app.settings.redis_url)
    try:
        log = EventLog(redis, app.settings.log)
        return [[e.type for e in await log.read_all(sid)] for sid in session_ids]
    finally:
        await redis.aclose()


async def test_sessions_the_app_logged_are_evaluated_against_candidates(
    app: App, client: VoxlineClient, spoken_question: bytes, tmp_path: Path,
) -> None:
    tag = f"eval-{uuid.uuid4().hex[:8]}"  # only this test's sessions carry it
    paused = (piper_pcm16("Tell me about the history", RATE) + bytes(2 * int(RATE * PAUSE_S))
              + piper_pcm16("of ancient Rome.", RATE))
    logged_ids = []
    for speech in (spoken_question, paused):
        turn = await voice_turn(client, with_pauses(speech, RATE, after_s=2.5),
                                speech_end_s=0.5 + len(speech) / (2 * RATE), realtime=False,
                                sampling=GREEDY, tags=[tag], turn_detection="silence",
                                end_of_speech_ms=LOGGED_END_MS)
        assert turn.transcript.strip() and turn.events[-1].type == "response.done"
        logged_ids.append(turn.session.session_id)

    env = {"VOXLINE_REDIS_URL": app.settings.redis_url,
           "VOXLINE_LOG__KEY_PREFIX": app.settings.log.key_prefix}
    args = ["evaluate", "--tag", tag, "--in-process", "--out", str(tmp_path),
            "--candidate", 'tiny={"stt_model": "whisper-tiny.en"}',
            "--candidate", f"quick=end_of_speech_ms={QUICK_END_MS}",
            "--fail-if", "quick.continued_rate>0", "--fail-if", "tiny.wer_vs_logged>0"]
    result = await asyncio.to_thread(CliRunner().invoke, cli, args, env=env)

    assert result.exit_code == 3, result.output  # the quick candidate cut the paused turn
    assert "crossed: quick" in result.output and "crossed: tiny" not in result.output
    report = json.loads((tmp_path / "evaluation.json").read_text())
    assert sorted(report["sessions"]) == sorted(logged_ids) and report["complete"]

    # recomputed from the log: a turn per question, an utterance heard per turn
    types = await _logged(app, logged_ids)
    turns = sum(t.count("transcript.final") for t in types)
    utterances = sum(t.count("input.audio") for t in types)
    assert turns == 2 and utterances >= 2
    logged, tiny, quick = (report["logged"], *(report["candidates"][n] for n in ("tiny", "quick")))
    assert logged["turn_taking"]["turns"] == turns
    # the same transcriber on the same audio hears what the app heard, word for word
    assert tiny["transcripts"]["utterances"] == utterances
    assert tiny["transcripts"]["wer_vs_logged"] == 0 and tiny["transcripts"]["changed"] == 0
    assert tiny["turn_taking"] == logged["turn_taking"]  # no turn-taking patch: as logged
    # 0.8 s of silence is past 400 ms: the second question ends at its pause, and its
    # speaker goes on within 2 s (a likely cut-off); the first has no such pause
    assert quick["turn_taking"]["turns"] == turns + 1
    assert quick["turn_taking"]["continued"] == 1
    # each question was waited after, and the quick candidate ended both in time
    assert (logged["turn_taking"]["ended"], quick["turn_taking"]["missed"]) == (turns, 0)
    assert "<svg" in (tmp_path / "evaluation.html").read_text()
