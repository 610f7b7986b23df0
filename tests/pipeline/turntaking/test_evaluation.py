"""Turn-taking settings tried on logged sessions: the input put back together from the log
and replayed through the same endpointer and end-of-turn judge a live session uses.

A loudness "VAD" and a scripted model first (the replay is then exact), then the real
Silero VAD and Smart Turn on the benchmark's corpus: the replay's figures are the live
session's, scored the benchmark's way.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from loadtests._turn_corpus import build_corpus
from loadtests.bench_turn_taking import score
from pipeline.log import EventLog
from pipeline.session import LiveSession, SessionEngines
from pipeline.turntaking.evaluation import (
    LoggedInput,
    TurnEnd,
    logged_input,
    missed_ends,
    quick_transcriber,
    replay_turn_ends,
    score_against_truth,
    turn_measures,
)
from schemas import Event, InputAudio, SessionSettings, SpeechStopped
from tests.support.audio_fixtures import tone
from tests.support.engines import EnergyVAD, ScriptedLLM, ScriptedSTT, ScriptedTTS, ScriptedTurn

pytestmark = pytest.mark.redis
SMART = SessionSettings(auto_response=False, turn_detection="smart")
#: the turn: speech, a 1.2 s pause, speech; then the next turn after 1 s
SPEECH = (tone(0.3, False) + tone(0.8, True) + tone(1.2, False) + tone(0.8, True)
          + tone(3.0, False) + tone(0.6, True) + tone(3.0, False))


def _engines(vad: object, turn: object) -> SessionEngines:
    return SessionEngines(llm=ScriptedLLM(["Fine."]), tts=ScriptedTTS(), stt=ScriptedSTT(),
                          vad=vad, turn=turn)  # type: ignore[arg-type]


async def _live(log: EventLog, name: str, engines: SessionEngines, settings: SessionSettings,
                audio: bytes, turns: int | None = None, until_ms: int = 0) -> list[Event]:
    """Stream ``audio`` into a new session; its log once ``turns`` turns have ended, or
    (``turns`` None) once a turn has ended at or after ``until_ms`` of the input."""
    session = await LiveSession.open(name, log, engines, create=settings)
    for start in range(0, len(audio), 640):
        await session.push_audio(audio[start : start + 640])
    tail = log.tail(name, None)
    stopped = 0
    try:
        async for event in tail:
            if not isinstance(event, SpeechStopped):
                continue
            stopped += 1
            if stopped == turns or (turns is None and event.data.audio_ms
                                    + (event.data.silence_ms or 0) >= until_ms):
                break
    finally:
        await tail.aclose()  # type: ignore[attr-defined]
    await session.close()
    return await log.read_all(name)


async def test_a_replay_ends_turns_where_the_live_session_did(event_log: EventLog) -> None:
    events = await _live(event_log, "eval", _engines(EnergyVAD(), ScriptedTurn(0.1, 0.9, 0.9)),
                         SMART, SPEECH, turns=2)
    logged = logged_input("eval", events)
    assert logged is not None and len(logged.live_ends) == 2
    ends, starts = await replay_turn_ends(logged, SMART, EnergyVAD(), ScriptedTurn(0.1, 0.9, 0.9))
    assert tuple(ends) == logged.live_ends  # the same decisions, the same verdicts
    # the old rule on the same input: the thinking pause ends a turn, and speech follows
    silence = SMART.model_copy(update={"turn_detection": "silence"})
    cut, cut_starts = await replay_turn_ends(logged, silence, EnergyVAD())
    assert len(cut) == 3 and cut[0].decided_ms - cut[0].speech_end_ms == 512  # 16 frames
    measures = turn_measures([(ends, starts)])
    assert (measures["turns"], measures["continued"]) == (2, 0)
    cut_measures = turn_measures([(cut, cut_starts)])
    assert (cut_measures["turns"], cut_measures["continued"]) == (3, 1)
    assert cut_measures["silence_waited_ms"] == {"p50": 512.0, "p95": 512.0}
    # both live ends were waited after (the next speech 3 s later, then none): a setting
    # that waits out the 3 s gap merges the first turn into the next, and misses its end
    assert turn_measures([(ends, starts)], logged=[logged])["missed"] == 0
    assert turn_measures([(cut, cut_starts)], logged=[logged])["ended"] == 2
    slow = silence.model_copy(update={"end_of_speech_ms": 3500})
    merged, merged_starts = await replay_turn_ends(logged, slow, EnergyVAD())
    assert len(merged) == 1
    slow_measures = turn_measures([(merged, merged_starts)], logged=[logged])
    assert (slow_measures["ended"], slow_measures["missed"], slow_measures["missed_rate"]) == (
        2, 1, 0.5)


async def test_a_replay_tells_each_pause_judged_and_its_verdict(event_log: EventLog) -> None:
    events = await _live(event_log, "judged", _engines(EnergyVAD(), ScriptedTurn(0.1, 0.9, 0.9)),
                         SMART, SPEECH, turns=2)
    logged = logged_input("judged", events)
    assert logged is not None
    heard: list[tuple[int, float | None]] = []
    ends, _ = await replay_turn_ends(
        logged, SMART, EnergyVAD(), ScriptedTurn(0.1, 0.9, 0.9),
        on_judged=lambda pause, verdict: heard.append((pause.audio_ms, verdict)))
    # the thinking pause (judged incomplete), then each turn's end (complete)
    assert [verdict for _, verdict in heard] == [0.1, 0.9, 0.9]
    positions = [at for at, _ in heard]
    assert positions == sorted(positions)
    assert positions[0] < ends[0].speech_end_ms <= positions[1] < ends[1].speech_end_ms
    assert [end.end_of_turn for end in ends] == [0.9, 0.9]


async def test_a_log_older_than_start_ms_is_placed_from_where_speech_stopped(
    event_log: EventLog,
) -> None:
    events = await _live(event_log, "eval-old", _engines(EnergyVAD(), None),
                         SMART.model_copy(update={"turn_detection": "silence"}), SPEECH, turns=3)
    old = [e.model_copy(update={"data": e.data.model_copy(update={"start_ms": None})})
           if isinstance(e, InputAudio) else e for e in events]
    logged, rebuilt = logged_input("eval-old", events), logged_input("eval-old", old)
    assert logged is not None and rebuilt is not None
    assert rebuilt.live_ends == logged.live_ends
    # each utterance within a frame of its place
    assert all(abs(a - b) <= 32 for a, b in zip(rebuilt.speech_starts_ms,
                                                logged.speech_starts_ms, strict=True))


def test_no_audio_no_input() -> None:
    assert logged_input("none", []) is None
    assert score_against_truth([TurnEnd(500, 900)], 1000) == (True, None)
    assert score_against_truth([TurnEnd(500, 900), TurnEnd(1000, 1300)], 1000) == (True, 300)
    assert score_against_truth([TurnEnd(1000, 1300)], 1000) == (False, 300)


# -- the real models on the benchmark's corpus ---------------------------------------------


@pytest.fixture(scope="module")
def smart_turn() -> object:
    from tests.support.turn_model import loaded_smart_turn

    return loaded_smart_turn()


@pytest.mark.parametrize("settings", [
    SessionSettings(auto_response=False, turn_detection="silence", end_of_speech_ms=500),
    SessionSettings(auto_response=False, turn_detection="smart"),
], ids=["silence", "smart"])
async def test_the_replay_scores_the_corpus_as_the_live_sessions_did(
    event_log: EventLog, smart_turn: object, settings: SessionSettings
) -> None:
    from tests.support.silero_model import loaded_silero

    items = build_corpus(0, languages=("en",), limit=4)
    live, replayed = [], []
    for n, item in enumerate(items):
        name = f"eval-{settings.turn_detection}-{n}"
        engines = replace(_engines(loaded_silero(), smart_turn))
        events = await _live(event_log, name, engines, settings, item.pcm16,
                             turns=1 + len(item.pauses_ms) * (settings.turn_detection == "silence"))
        logged = logged_input(name, events)
        assert logged is not None
        ends, _ = await replay_turn_ends(logged, settings, loaded_silero(), smart_turn)  # type: ignore[arg-type]
        live.append([(e.speech_end_ms, e.decided_ms, e.end_of_turn) for e in logged.live_ends])
        replayed.append([(e.speech_end_ms, e.decided_ms, e.end_of_turn) for e in ends])
        # every decision within one VAD frame of the live one
        assert len(ends) == len(logged.live_ends), item.id
        for (_, live_at, _), (_, replay_at, _) in zip(live[-1], replayed[-1], strict=True):
            assert abs(live_at - replay_at) <= 32, item.id
    live_score, replay_score = score(items, live), score(items, replayed)
    assert replay_score["false_cutoff_rate"] == live_score["false_cutoff_rate"]
    assert abs(replay_score["end_of_turn_ms"]["p50"] - live_score["end_of_turn_ms"]["p50"]) <= 32


@pytest.mark.models
async def test_the_replay_judges_by_words_as_the_live_sessions_did(
    event_log: EventLog, smart_turn: object
) -> None:
    """``turn_judge`` text: a live session's judge transcribes each pause quickly (no
    preemptive turn here) and the text model reads it; the replay that ``voxline replay
    --evaluate`` runs, with the same transcriber and model, ends the same turns with the
    same verdicts."""
    from pipeline.engines import create_engine
    from tests.support.silero_model import loaded_silero

    settings = SessionSettings(auto_response=False, turn_detection="smart", turn_judge="text")
    stt, text = create_engine("stt", "faster-whisper"), create_engine("turn_text", "llama-cpp")
    await stt.load()
    await text.load()
    items = [i for i in build_corpus(0, languages=("en",)) if i.kind != "complete"][::8][:4]
    live, replayed = [], []
    try:
        for n, item in enumerate(items):
            name = f"eval-words-{n}"
            engines = SessionEngines(llm=ScriptedLLM(["Fine."]), tts=ScriptedTTS(), stt=stt,  # type: ignore[arg-type]
                                     vad=loaded_silero(), turn=smart_turn, turn_text=text)  # type: ignore[arg-type]
            events = await _live(event_log, name, engines, settings, item.pcm16,
                                 until_ms=item.end_ms)
            logged = logged_input(name, events)
            assert logged is not None
            ends, _ = await replay_turn_ends(
                logged, settings, loaded_silero(), smart_turn,  # type: ignore[arg-type]
                transcribe=quick_transcriber(stt, "en"), text=text)  # type: ignore[arg-type]
            live.append([(e.speech_end_ms, e.decided_ms, e.end_of_turn) for e in logged.live_ends])
            replayed.append([(e.speech_end_ms, e.decided_ms, e.end_of_turn) for e in ends])
            assert len(ends) == len(logged.live_ends), item.id
            for (_, live_at, live_p), (_, replay_at, replay_p) in zip(
                    live[-1], replayed[-1], strict=True):
                assert abs(live_at - replay_at) <= 32, item.id
                assert (live_p is None) == (replay_p is None), item.id
                assert live_p is None or abs(live_p - replay_p) < 0.01, item.id  # type: ignore[operator]
    finally:
        await stt.close()
        await text.close()
    assert any(len(item.pauses_ms) for item in items)  # pauses were judged
    live_score, replay_score = score(items, live), score(items, replayed)
    assert replay_score["false_cutoff_rate"] == live_score["false_cutoff_rate"]
    assert abs(replay_score["end_of_turn_ms"]["p50"] - live_score["end_of_turn_ms"]["p50"]) <= 32


def test_a_turn_end_is_missed_only_where_the_user_waited_after_it() -> None:
    # speech starts at 0, 3000 and 3600 ms; the live session ended turns at 1000 (the user
    # then waited 2 s) and 3300 (speech followed within 2 s: a continuation, not counted)
    logged = LoggedInput("s", bytes(2 * 16 * 10_000), (0, 3000, 3600),
                         (TurnEnd(1000, 1500), TurnEnd(3300, 3500)))
    assert missed_ends(logged, [TurnEnd(1000, 1500)], waited_ms=1000) == (1, 0)
    assert missed_ends(logged, [TurnEnd(900, 1400)], waited_ms=1000) == (1, 0)  # VAD slack
    assert missed_ends(logged, [TurnEnd(1000, 3100)], waited_ms=1000) == (1, 1)  # too late
    assert missed_ends(logged, [TurnEnd(500, 800)], waited_ms=1000) == (1, 1)  # a cut, no end
    assert missed_ends(logged, [], waited_ms=50) == (2, 2)  # now both were waited after
