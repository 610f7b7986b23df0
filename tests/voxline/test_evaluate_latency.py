"""The voice-to-voice a candidate would have had, estimated turn by turn from the logged
stages and its own (pure arithmetic on made-up figures)."""

from __future__ import annotations

from schemas import EngineSettings, Settings
from voxline.candidates import parse_candidate
from voxline.evaluate_latency import (
    baseline_candidate,
    by_turn_ms,
    estimated_voice_to_voice,
    stt_changes,
)

LOGGED = {
    "s1 t1": {"vad_tail": 600.0, "stt": 100.0, "llm_first_token": 300.0,
              "tts_first_chunk": 150.0, "voice_to_voice": 1200.0},
    "s1 t2": {"vad_tail": 620.0, "stt": 120.0, "llm_first_token": 280.0,
              "tts_first_chunk": 160.0, "voice_to_voice": 1250.0},
    "s2 t1": {"llm_first_token": 250.0},  # a typed turn: no voice-to-voice to estimate
}


#: the logged configuration's stages offline (a preemptive live turn logged far less)
BASELINE = {"transcripts": {"by_turn_ms": {"s1 t1": 300.0, "s1 t2": 320.0}},
            "answers": {"by_turn_ms": {"s1 t1": 250.0, "s1 t2": 260.0}},
            "speech": {"by_turn_ms": {"s1 t1": 140.0, "s1 t2": 150.0}}}


def estimate(measures: dict[str, object], *, changes_stt: bool = False,
             silence: tuple[float, float] | None = None,
             baseline: dict[str, object] | None = None) -> dict[str, object] | None:
    logged_tt = None if silence is None else {"silence_waited_ms": {"p50": silence[0]}}
    theirs = None if silence is None else {"silence_waited_ms": {"p50": silence[1]}}
    return estimated_voice_to_voice(LOGGED, measures, baseline or BASELINE,
                                    changes_stt=changes_stt, logged_turn_taking=logged_tt,
                                    turn_taking=theirs)


def test_a_candidate_that_changes_nothing_estimates_what_was_logged() -> None:
    found = estimate({"transcripts": {"by_turn_ms": {"s1 t1": 900.0, "s1 t2": 900.0}}})
    assert found == {"p50": 1225.0, "p95": 1250.0, "turns": 2, "swapped": [],
                     "silence_shift_ms": 0.0}


def test_each_changed_stage_adds_its_difference_from_the_baseline_on_its_turn() -> None:
    found = estimate({"transcripts": {"by_turn_ms": {"s1 t1": 400.0, "s1 t2": 320.0}},
                      "answers": {"by_turn_ms": {"s1 t1": 200.0}},  # t2 not asked again
                      "speech": {"by_turn_ms": {"s1 t1": 140.0, "s1 t2": 60.0}}},
                     changes_stt=True)
    assert found is not None
    # t1: 1200 + (400 - 300) + (200 - 250) + 0 = 1250; t2: 1250 + 0 + (60 - 150) = 1160
    assert (found["p50"], found["p95"]) == (1205.0, 1250.0)
    assert found["swapped"] == ["stt", "llm_first_token", "tts_first_chunk"]


def test_a_changed_stage_without_a_baseline_has_no_estimate() -> None:
    assert estimate({"speech": {"by_turn_ms": {"s1 t1": 60.0}}},
                    baseline={"transcripts": {"by_turn_ms": {}}}) is None


def test_a_turn_taking_candidate_shifts_every_turn_by_the_replays_medians() -> None:
    found = estimate({}, silence=(800.0, 500.0))
    assert found is not None
    assert (found["p50"], found["p95"], found["silence_shift_ms"]) == (925.0, 950.0, -300.0)
    assert found["swapped"] == ["vad_tail"]


def test_no_voice_turn_no_estimate() -> None:
    assert estimated_voice_to_voice({"s t": {"llm_first_token": 1.0}}, {}, BASELINE,
                                    changes_stt=True, logged_turn_taking=None,
                                    turn_taking=None) is None


def test_only_another_transcriber_is_a_change_of_the_stt_stage() -> None:
    server = Settings(stt={"engine": "faster-whisper", "options": {"model": "whisper-tiny.en"}})
    same = EngineSettings(engine="faster-whisper", options={"model": "whisper-tiny.en"})
    other = EngineSettings(engine="faster-whisper", options={"model": "whisper-base"})
    assert not stt_changes(None, server)
    assert not stt_changes(same, server)
    assert stt_changes(other, server)


def test_by_turn_keeps_the_measured_turns_only() -> None:
    assert by_turn_ms([(("s", "a"), 12.34), (("s", "b"), None)]) == {"s a": 12.3}


def test_the_baseline_runs_what_the_candidates_change_with_the_servers_engines() -> None:
    server = Settings()
    quick = parse_candidate("quick=end_of_speech_ms=500")
    assert baseline_candidate([quick], server) is None  # nothing offline to compare
    terse = parse_candidate('terse={"max_tokens": 8}')
    base = baseline_candidate([quick, terse], server)
    assert base is not None and base.tries_answers and not base.tries_speech
    assert base.llm == server.llm and base.stt is None and not base.reply_patch
