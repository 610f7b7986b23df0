"""The capacity runner's headline: the sessions held with voice-to-voice p95 ≤ 2× idle."""

from __future__ import annotations

from typing import Any

from loadtests._report import mean_parts
from loadtests.capacity import (
    StepStats,
    bound_caution,
    bystander_ratio,
    headline,
    voice_parts,
)
from pipeline.workers import LatencyParts


def step(sessions: int, p95: float | None, failed: int = 0, refused: int = 0) -> dict[str, Any]:
    return {"sessions": sessions, "failed_turns": failed, "refusals": refused,
            "voice_to_voice_ms": None if p95 is None else {"p50": p95 / 2, "p95": p95}}


def test_the_largest_step_within_twice_idle_before_the_first_that_breaks_it() -> None:
    steps = [step(1, 1000), step(2, 1500), step(4, 2000), step(8, 2600), step(16, 1900)]
    assert headline(steps) == (1000, 4)  # 16 does not count: 8 broke the bound first


def test_a_failed_or_refused_turn_breaks_the_bound_whatever_the_latency() -> None:
    assert headline([step(1, 1000), step(2, 1100, refused=1)]) == (1000, 1)
    assert headline([step(1, 1000), step(2, 1100, failed=1)]) == (1000, 1)


def test_an_outlier_in_the_one_session_step_is_called_out_beside_held() -> None:
    """A misheard question's 2 s wait in a ten-turn alone step is its p95: 2× that holds
    any step, so the report says so rather than let "8 held" read as a result."""
    outlier = {"sessions": 1, "failed_turns": 0, "refusals": 0,
               "voice_to_voice_ms": {"p50": 277.0, "p95": 1947.0}}
    steps = [outlier, step(8, 1978)]
    assert headline(steps) == (1947.0, 8)
    caution = bound_caution(steps)
    assert caution is not None and "1947 ms" in caution and "277 ms" in caution
    assert bound_caution([step(1, 600), step(8, 1100)]) is None  # p95 2× p50: plain
    assert bound_caution([step(1, None)]) is None and bound_caution([]) is None


def test_no_idle_measure_no_headline() -> None:
    assert headline([step(1, None), step(2, 1000)]) == (None, None)
    assert headline([]) == (None, None)


def test_a_step_summary_keeps_only_its_own_samples() -> None:
    stats = StepStats(2, t_start=10, t_end=20, v2v=[1000.0, 3000.0], completed=2, events=50)
    inside = {"t": 15, "replicas": {"Transcriber": 2}, "cpu_percent": {"Transcriber": 80.0},
              "rss_mb": {"Transcriber": 600.0}, "machine": {"load_avg_1m": 1.5}}
    outside = {**inside, "t": 30, "replicas": {"Transcriber": 5}}
    summary = stats.summary([inside, outside])
    assert summary["replicas_max"] == {"Transcriber": 2}
    assert summary["events_per_s"] == 5.0 and summary["completed_turns"] == 2
    assert summary["voice_to_voice_ms"]["p50"] == 2000.0
    assert summary["machine_load_avg_1m_max"] == 1.5


def test_the_bystander_is_judged_against_the_one_session_step() -> None:
    among_idle = {"voice_to_voice_ms": {"p50": 600, "p95": 1320}}
    assert bystander_ratio(among_idle, [step(2, 5000), step(1, 1100)]) == 1.2
    assert bystander_ratio(among_idle, [step(2, 5000)]) is None  # no one-session step
    assert bystander_ratio({"voice_to_voice_ms": None}, [step(1, 1100)]) is None


def test_a_voice_turns_parts_add_up_to_its_voice_to_voice_time() -> None:
    server = LatencyParts({"stt": 100.0, "handoff": 300.0}, 400.0, head_start_ms=250.0)
    parts = voice_parts(server, 1000.0)
    assert parts is not None and parts.parts == {"endpoint": 600.0, "stt": 100.0,
                                                 "handoff": 300.0}
    assert parts.total_ms == sum(parts.parts.values()) == 1000.0
    assert parts.head_start_ms == 250.0
    assert voice_parts(server, None) is server  # a typed turn: the server's parts


def test_the_slowest_tenth_shows_which_part_makes_the_tail() -> None:
    quick = [LatencyParts({"endpoint": 300.0, "stt": 100.0}, 400.0) for _ in range(9)]
    slow = LatencyParts({"endpoint": 300.0, "stt": 1700.0}, 2000.0)
    means = mean_parts([*quick, slow], slowest=0.1)
    assert means is not None and means["total_mean_ms"] == 560.0
    assert means["slowest"]["turns"] == 1
    assert means["slowest"]["parts_mean_ms"] == {"endpoint": 300.0, "stt": 1700.0}


def test_a_wait_for_a_place_is_listed_where_it_happens_whichever_turn_had_it() -> None:
    """Few turns wait for a place, so the first turn of a step rarely has ``queued``: the
    means still list it before STT, where the wait was."""
    plain = LatencyParts({"endpoint": 200.0, "stt": 10.0, "handoff": 90.0}, 300.0)
    waited = LatencyParts({"endpoint": 200.0, "queued": 600.0, "stt": 10.0,
                           "handoff": 90.0}, 900.0)
    means = mean_parts([plain, waited])
    assert means is not None
    assert list(means["parts_mean_ms"]) == ["endpoint", "queued", "stt", "handoff"]
    assert means["parts_mean_ms"]["queued"] == 300.0
