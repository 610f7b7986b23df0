"""``voxline stats`` and ``voxline replay``: a session's timeline and what the user heard,
from a standalone Redis and from a Redis Cluster."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import schemas as s
from pipeline.audio import AudioEncoder
from pipeline.log import EventLog, create_redis
from voxline.cli import app, console
from voxline.inspect import SessionRecord, replay_session, session_table, turn_audio
from voxline.runstate import ServerRecord, recorded

pytestmark = pytest.mark.redis

SID = "sess-inspect"
RATE = 24000
runner = CliRunner()


def tone(seconds: float, rate: int = RATE) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes()


def chunk(
    turn: str, ts: int, index: int, audio: bytes, fmt: str = "pcm16", rate: int = RATE
) -> s.ResponseAudioChunk:
    return s.ResponseAudioChunk(
        session_id=SID, turn_id=turn, ts=ts,
        data=s.AudioChunkData(format=s.AudioFormat(fmt), sample_rate=rate, sentence_index=0,
                              chunk_index=index, audio=audio))  # fmt: skip


def encoded(fmt: str, pcm: bytes, pieces: int = 4) -> list[bytes]:
    """``pcm`` through the session's output encoder, as the chunk payloads of a response."""
    step = len(pcm) // pieces // 2 * 2
    with AudioEncoder(fmt, RATE) as encoder:
        out = [encoder.encode(pcm[i : i + step]) for i in range(0, len(pcm), step)]
        out.append(encoder.finish())
    return [payload for payload in out if payload]


def text_turn(turn: str, t0: int, text: str, reply: str) -> list[s.EventBase]:
    return [
        s.InputText(session_id=SID, turn_id=turn, ts=t0, data=s.InputTextData(text=text)),
        s.ResponseStarted(session_id=SID, turn_id=turn, ts=t0 + 5),
        s.ResponseTextDelta(session_id=SID, turn_id=turn, ts=t0 + 100,
                            data=s.TextDeltaData(delta=reply)),
        s.ResponseSentence(session_id=SID, turn_id=turn, ts=t0 + 150,
                           data=s.SentenceData(index=0, text=reply)),
    ]  # fmt: skip


PCM_CHUNKS = [tone(0.1)] * 3  # turn 1: pcm16, 0.3 s
WAV_PCM = tone(0.5)  # turn 2: wav
MP3_PCM = tone(0.6)  # turn 3: mp3, cancelled
#: mp3 goes through FFmpeg (PyAV, the ``cpu`` extra); without it the turn is a WAV stream
MP3 = "mp3" if importlib.util.find_spec("av") is not None else "wav"
NARRATION = [tone(0.2, 16000), tone(0.15, 16000)]  # turn 4: narrated after a text reply


def session_events(t0: int) -> list[s.EventBase]:
    settings = s.SessionSettings()
    voice = [
        s.SessionCreated(session_id=SID, ts=t0, data=s.SessionCreatedData(settings=settings)),
        s.SpeechStarted(session_id=SID, ts=t0 + 1000, data=s.SpeechBoundaryData(audio_ms=500)),
        s.SpeechStopped(session_id=SID, turn_id="t1", ts=t0 + 3100,
                        data=s.SpeechStoppedData(audio_ms=2000)),
        s.InputAudio(session_id=SID, turn_id="t1", ts=t0 + 3100,
                     data=s.InputAudioData(sample_rate=16000, duration_ms=1800,
                                           audio=bytes(57600))),
        s.TranscriptFinal(session_id=SID, turn_id="t1", ts=t0 + 3300,
                          data=s.TranscriptData(text="What is the capital of France?")),
        s.ResponseStarted(session_id=SID, turn_id="t1", ts=t0 + 3310),
        s.ResponseTextDelta(session_id=SID, turn_id="t1", ts=t0 + 3500,
                            data=s.TextDeltaData(delta="Paris is the capital.")),
        s.ResponseSentence(session_id=SID, turn_id="t1", ts=t0 + 3650,
                           data=s.SentenceData(index=0, text="Paris is the capital.")),
        *[chunk("t1", t0 + 3800 + i, i, pcm) for i, pcm in enumerate(PCM_CHUNKS)],
        s.ResponseDone(session_id=SID, turn_id="t1", ts=t0 + 4500,
                       data=s.ResponseDoneData(text="Paris is the capital.")),
    ]  # fmt: skip
    wav = text_turn("t2", t0 + 10_000, "And of Germany?", "Berlin.")
    wav += [
        chunk("t2", t0 + 10_300 + i, i, p, "wav") for i, p in enumerate(encoded("wav", WAV_PCM))
    ]
    wav.append(
        s.ResponseDone(
            session_id=SID, turn_id="t2", ts=t0 + 10_900, data=s.ResponseDoneData(text="Berlin.")
        )
    )
    mp3 = text_turn("t3", t0 + 20_000, "Tell me a long story", "Once upon a time")
    mp3 += [chunk("t3", t0 + 20_300 + i, i, p, MP3) for i, p in enumerate(encoded(MP3, MP3_PCM))]
    mp3.append(
        s.ResponseCancelled(
            session_id=SID,
            turn_id="t3",
            ts=t0 + 21_000,
            data=s.ResponseCancelledData(reason="client", text_sent="Once upon a time"),
        )
    )
    narrated = text_turn("t4", t0 + 30_000, "Thanks", "You are welcome.")
    narrated[1] = s.ResponseStarted(
        session_id=SID, turn_id="t4", ts=t0 + 30_005, data=s.ResponseStartedData(mode="text")
    )
    narrated += [
        s.ResponseDone(session_id=SID, turn_id="t4", ts=t0 + 30_200,
                       data=s.ResponseDoneData(text="You are welcome.")),
        *[chunk("t4", t0 + 31_000 + i, i, p, rate=16000) for i, p in enumerate(NARRATION)],
        s.NarrationReady(session_id=SID, turn_id="t4", ts=t0 + 31_500,
                         data=s.NarrationReadyData(chunk_count=2)),
        s.SessionClosed(session_id=SID, ts=t0 + 40_000),
    ]  # fmt: skip
    return voice + wav + mp3 + narrated


async def write_session(url: str, prefix: str) -> list[s.Event]:
    redis = create_redis(url)
    try:
        log = EventLog(redis, s.EventLogSettings(key_prefix=prefix))
        result = await log.append_batch(session_events(s.now_ms() - 60_000))
        return list(result.events)
    finally:
        await redis.aclose()


async def delete_keys(url: str, prefix: str) -> None:
    redis = create_redis(url)
    try:
        keys = [key async for key in redis.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


@pytest.fixture
def redis_url(both_redis_urls: str) -> str:
    """``stats`` and ``replay`` read a standalone Redis and a ``redis+cluster://`` URL."""
    return both_redis_urls


@pytest.fixture
def logged(redis_url: str, key_prefix: str) -> Iterator[list[s.Event]]:
    events = asyncio.run(write_session(redis_url, key_prefix))
    try:
        yield events
    finally:
        asyncio.run(delete_keys(redis_url, key_prefix))


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables as wide as the ``COLUMNS`` the tests give: Rich fixes a console's width when
    it is made if ``COLUMNS`` is set then, and pytest-xdist's workers start with 80."""
    monkeypatch.setattr(console, "width", 260)


@pytest.fixture
def env(redis_url: str, key_prefix: str) -> dict[str, str | None]:
    return {"VOXLINE_REDIS_URL": redis_url, "VOXLINE_LOG__KEY_PREFIX": key_prefix,
            "COLUMNS": "260"}  # fmt: skip


def wav_seconds(path: Path) -> tuple[float, int]:
    with wave.open(str(path)) as f:
        return f.getnframes() / f.getframerate(), f.getframerate()


# ---- stats ----------------------------------------------------------------------------------


def test_stats_prints_each_turn_with_its_stages(
    logged: list[s.Event], env: dict[str, str | None]
) -> None:
    result = runner.invoke(app, ["stats", SID], env=env)
    assert result.exit_code == 0, result.output
    out = result.output
    for text in ("session sess-inspect", "What is the capital of France?",
                 "Paris is the capital.", "And of Germany?", "Berlin.", "voice 1.8 s",
                 "cancelled (client)", "completed", "vad tail", "v2v", "ttfa"):  # fmt: skip
        assert text in out, text
    row = next(line for line in out.splitlines() if "t1" in line and "Paris" in line)
    # vad tail 850, stt 200, llm 200, cut 150, tts 150, ttfa 700, v2v 1550, done 1400
    cells = [c.strip() for c in row.split("│")]
    numbers = [c for c in cells if c.isdigit() and c != "1"]
    assert numbers == ["850", "200", "200", "150", "150", "700", "1550", "1400"]


def test_session_table_uses_the_metrics_measures(logged: list[s.Event]) -> None:
    table = session_table(SessionRecord(SID, tuple(logged)))
    headers = [str(c.header) for c in table.columns]
    assert headers[:5] == ["#", "turn", "input", "transcript", "reply"]
    assert headers[-1] == "status"
    assert table.row_count == 4


def test_stats_of_an_unknown_session_fails_clearly(
    logged: list[s.Event], env: dict[str, str | None]
) -> None:
    result = runner.invoke(app, ["stats", "no-such-session"], env=env)
    assert result.exit_code == 1
    assert "no session 'no-such-session'" in result.output


def test_stats_without_a_redis_url_or_a_running_server_fails_clearly(
    env: dict[str, str | None], tmp_path: Path
) -> None:
    result = runner.invoke(app, ["stats", SID], env={
        **env, "VOXLINE_REDIS_URL": None, "VOXLINE_RUN_DIR": str(tmp_path)})
    assert result.exit_code == 1
    assert "VOXLINE_REDIS_URL is not set" in result.output
    assert "--redis-url" in result.output and "voxline serve" in result.output


def test_stats_and_replay_find_the_running_servers_redis_by_themselves(
    logged: list[s.Event], env: dict[str, str | None], redis_url: str, key_prefix: str,
    tmp_path: Path,
) -> None:
    """What ``voxline serve`` records (its Redis, its key prefix) is found with neither
    variable set: the README's run command, then ``voxline stats SESSION``."""
    record = ServerRecord(url="http://127.0.0.1:1", redis_url=redis_url,
                          key_prefix=key_prefix, port=8000, pid=os.getpid())
    run_dir = tmp_path / "run"
    bare = {"COLUMNS": "260", "VOXLINE_REDIS_URL": None, "VOXLINE_LOG__KEY_PREFIX": None,
            "VOXLINE_RUN_DIR": str(run_dir)}
    with recorded(record, run_dir):
        stats = runner.invoke(app, ["stats", SID], env=bare)
        replay = runner.invoke(app, ["replay", SID, "--out", str(tmp_path / "r")], env=bare)
    assert stats.exit_code == 0, stats.output
    assert "Paris is the capital." in stats.output
    assert replay.exit_code == 0, replay.output
    assert (tmp_path / "r" / "transcript.txt").exists()
    assert not list(run_dir.iterdir())  # removed when the server stops


def test_redis_url_option_and_variable_win_over_the_record(
    logged: list[s.Event], env: dict[str, str | None], redis_url: str, key_prefix: str,
    tmp_path: Path,
) -> None:
    wrong = ServerRecord(url="http://127.0.0.1:1", redis_url=redis_url,
                         key_prefix="voxtest:nothing-here", port=8000, pid=os.getpid())
    with recorded(wrong, tmp_path):
        by_variable = runner.invoke(app, ["stats", SID],
                                    env={**env, "VOXLINE_RUN_DIR": str(tmp_path)})
        by_option = runner.invoke(app, ["stats", SID, "--redis-url", redis_url], env={
            **env, "VOXLINE_REDIS_URL": "redis://127.0.0.1:1/0",
            "VOXLINE_RUN_DIR": str(tmp_path)})
    assert by_variable.exit_code == 0, by_variable.output
    assert by_option.exit_code == 0, by_option.output


# ---- replay ---------------------------------------------------------------------------------


def test_replay_writes_the_transcript_and_the_audio_heard(
    logged: list[s.Event], env: dict[str, str | None], tmp_path: Path
) -> None:
    out = tmp_path / "replay"
    result = runner.invoke(app, ["replay", SID, "--out", str(out)], env=env)
    assert result.exit_code == 0, result.output
    lines = [
        "user: What is the capital of France?",
        "assistant: Paris is the capital.",
        "user: And of Germany?",
        "assistant: Berlin.",
        "user: Tell me a long story",
        "assistant: Once upon a time [cancelled]",
        "user: Thanks",
        "assistant: You are welcome.",
    ]
    assert (out / "transcript.txt").read_text(encoding="utf-8").splitlines() == lines
    for line in lines:
        assert line in result.output

    files = sorted(p.name for p in out.glob("*.wav"))
    assert files == ["turn-01-t1.wav", "turn-02-t2.wav", "turn-03-t3.wav", "turn-04-t4.wav"]
    # pcm16: exactly the chunks' samples
    assert wav_seconds(out / "turn-01-t1.wav") == (sum(map(len, PCM_CHUNKS)) / 2 / RATE, RATE)
    with wave.open(str(out / "turn-01-t1.wav")) as f:
        assert f.readframes(f.getnframes()) == b"".join(PCM_CHUNKS)
    # wav stream: the samples behind its streaming header
    assert wav_seconds(out / "turn-02-t2.wav") == (len(WAV_PCM) / 2 / RATE, RATE)
    # mp3: decoded; the codec adds at most a frame or two of padding
    seconds, rate = wav_seconds(out / "turn-03-t3.wav")
    assert rate == RATE and abs(seconds - len(MP3_PCM) / 2 / RATE) < 0.1
    # narration: two chunks at 16 kHz after a text-only reply
    assert wav_seconds(out / "turn-04-t4.wav") == (sum(map(len, NARRATION)) / 2 / 16000, 16000)


def test_turn_audio_joins_streams_at_the_first_streams_rate(logged: list[s.Event]) -> None:
    more = [*logged, chunk("t1", 0, 0, tone(0.1, 16000), rate=16000)]  # a 16 kHz narration
    audio = turn_audio(more, "t1")
    assert audio is not None
    pcm, rate = audio
    assert rate == RATE
    assert abs(len(pcm) / 2 / RATE - 0.4) < 0.01  # 0.3 s + 0.1 s resampled to 24 kHz
    assert turn_audio(logged, "nope") is None


def test_replay_session_without_audio(tmp_path: Path) -> None:
    events = [
        e.model_copy(update={"id": f"{i + 1}-0"})
        for i, e in enumerate(text_turn("x", 1000, "hello", "hi"))
    ]
    result = replay_session(SessionRecord(SID, tuple(events)), tmp_path)  # type: ignore[arg-type]
    assert result.lines == ["user: hello", "assistant: hi"]
    assert [t.audio for t in result.turns] == [None]
    assert result.turns[0].status == "responding"


def test_trace_draws_each_turn_and_exports_otlp_json(
    logged: list[s.Event], env: dict[str, str | None], tmp_path: Path
) -> None:
    drawn = runner.invoke(app, ["trace", SID], env=env, terminal_width=200)
    assert drawn.exit_code == 0, drawn.output
    assert "turn t1" in drawn.output and "stt" in drawn.output and "llm" in drawn.output
    out = tmp_path / "trace.json"
    written = runner.invoke(app, ["trace", SID, "t1", "--otlp-json", str(out)], env=env)
    assert written.exit_code == 0, written.output
    spans = json.loads(out.read_text())["resourceSpans"][0]["scopeSpans"][0]["spans"]
    root = spans[0]
    assert root["name"] == "turn" and {sp["traceId"] for sp in spans} == {root["traceId"]}
    stopped = next(e for e in logged if e.type == "input.speech_stopped" and e.turn_id == "t1")
    assert root["startTimeUnixNano"] == str(stopped.ts * 1_000_000)  # the log's clock
    stt = next(sp for sp in spans if sp["name"] == "stt")
    final = next(e for e in logged if e.type == "transcript.final" and e.turn_id == "t1")
    assert stt["endTimeUnixNano"] == str(final.ts * 1_000_000)
    missing = runner.invoke(app, ["trace", SID, "no-such-turn"], env=env)
    assert missing.exit_code == 1 and "no turn" in missing.output
