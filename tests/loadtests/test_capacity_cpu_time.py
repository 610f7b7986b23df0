"""The capacity runner's CPU accounting: CPU-seconds per group between two snapshots of the
processes' cumulative CPU times, per voice turn, per idle session, and the report's profile."""

from __future__ import annotations

from typing import Any

import pytest

from loadtests import _capacity_probe
from loadtests._capacity_idle import idle_figures
from loadtests._capacity_probe import SERVE_STATUS_EVERY_S, ReplicaProbe, group_of
from loadtests._capacity_profile import (
    MACHINE,
    RUNNER,
    UNATTRIBUTED,
    profile_section,
    profile_table,
)
from loadtests._cpu_time import CpuSnapshot, ProcCpu, cpu_between, machine_between, per_unit
from loadtests.capacity import StepStats


def snap(t: float, procs: dict[tuple[int, float], tuple[str, float]], machine: float = 0.0,
         runner: float = 0.0) -> CpuSnapshot:
    return CpuSnapshot(t, {key: ProcCpu(*value) for key, value in procs.items()},
                       machine_s=machine, runner_s=runner)


def test_steady_processes_count_what_they_spent_in_between_summed_per_group() -> None:
    before = snap(0, {(10, 1.0): ("Transcriber", 5.0), (11, 1.0): ("Transcriber", 2.0),
                      (12, 1.0): ("Gateway", 1.0)})
    after = snap(60, {(10, 1.0): ("Transcriber", 9.0), (11, 1.0): ("Transcriber", 3.5),
                      (12, 1.0): ("Gateway", 1.25)})
    assert cpu_between(before, after) == {"Gateway": 0.25, "Transcriber": 5.5}


def test_a_replica_restarted_mid_step_counts_once_up_to_its_last_reading_and_its_successor_whole(
) -> None:
    before = snap(0, {(10, 1.0): ("Transcriber", 5.0)})
    # the probe keeps the exited replica at its last reading; the new one started at t=30
    after = snap(60, {(10, 1.0): ("Transcriber", 7.0), (20, 30.0): ("Transcriber", 3.0)})
    assert cpu_between(before, after) == {"Transcriber": 5.0}


def test_a_replica_that_exited_with_no_later_reading_counts_nothing_never_negative() -> None:
    before = snap(0, {(10, 1.0): ("Transcriber", 50.0), (12, 1.0): ("Gateway", 4.0)})
    after = snap(60, {(20, 30.0): ("Transcriber", 3.0), (12, 1.0): ("Gateway", 6.0)})
    assert cpu_between(before, after) == {"Gateway": 2.0, "Transcriber": 3.0}


def test_a_group_whose_processes_all_vanished_is_listed_with_zero() -> None:
    before = snap(0, {(10, 1.0): ("Synthesizer", 50.0)})
    assert cpu_between(before, snap(60, {})) == {"Synthesizer": 0.0}


def test_a_reused_pid_is_a_new_process_not_a_negative_difference() -> None:
    before = snap(0, {(10, 1.0): ("LanguageModel", 100.0)})
    after = snap(60, {(10, 45.0): ("LanguageModel", 2.0)})  # same pid, started later
    assert cpu_between(before, after) == {"LanguageModel": 2.0}


def test_a_reading_that_went_back_counts_zero() -> None:
    before = snap(0, {(10, 1.0): ("Gateway", 5.0)})
    assert cpu_between(before, snap(60, {(10, 1.0): ("Gateway", 4.0)})) == {"Gateway": 0.0}


def test_a_process_that_changed_group_counts_its_difference_in_its_new_group() -> None:
    # an idle Ray worker leased to a replica between the snapshots
    before = snap(0, {(10, 1.0): ("ServerOther", 1.0)})
    after = snap(60, {(10, 1.0): ("Transcriber", 9.0)})
    assert cpu_between(before, after) == {"ServerOther": 0.0, "Transcriber": 8.0}


def test_machine_and_runner_deltas_and_per_unit() -> None:
    before, after = snap(0, {}, machine=100.0, runner=3.0), snap(60, {}, machine=160.0,
                                                                  runner=4.5)
    assert machine_between(before, after) == (60.0, 1.5)
    assert per_unit({"Gateway": 3.0}, 4) == {"Gateway": 0.75}
    assert per_unit({"Gateway": 3.0}, 0) is None


def test_a_step_summary_divides_its_cpu_seconds_by_its_completed_turns() -> None:
    before = snap(10, {(10, 1.0): ("Transcriber", 5.0), (12, 1.0): ("Gateway", 1.0)},
                  machine=100.0, runner=1.0)
    after = snap(20, {(10, 1.0): ("Transcriber", 9.0), (12, 1.0): ("Gateway", 2.0)},
                 machine=108.0, runner=1.5)
    stats = StepStats(2, t_start=10, t_end=20, completed=4, cpu=(before, after))
    summary = stats.summary([])
    assert summary["cpu_s_total"] == {"Gateway": 1.0, "Transcriber": 4.0}
    assert summary["cpu_s_per_turn"] == {"Gateway": 0.25, "Transcriber": 1.0}
    assert summary["machine_cpu_s_total"] == 8.0 and summary["machine_cpu_s_per_turn"] == 2.0
    assert summary["runner_cpu_s_total"] == 0.5


def test_a_step_without_snapshots_or_turns_has_the_fields_empty() -> None:
    summary = StepStats(1, t_start=0, t_end=10).summary([])
    assert summary["cpu_s_total"] == {} and summary["cpu_s_per_turn"] is None
    assert summary["machine_cpu_s_total"] is None and summary["machine_cpu_s_per_turn"] is None
    no_turns = StepStats(1, t_start=0, t_end=10, cpu=(snap(0, {(1, 0.0): ("Gateway", 1.0)}),
                                                      snap(10, {(1, 0.0): ("Gateway", 2.0)})))
    assert no_turns.summary([])["cpu_s_per_turn"] is None


def test_an_idle_session_costs_the_cpu_above_the_baseline_divided_by_the_sessions() -> None:
    baseline = (snap(0, {(12, 1.0): ("Gateway", 10.0)}, machine=0.0, runner=0.0),
                snap(10, {(12, 1.0): ("Gateway", 10.5)}, machine=2.0, runner=0.0))  # 5 %
    window = (snap(20, {(12, 1.0): ("Gateway", 11.0)}, machine=5.0, runner=1.0),
              snap(40, {(12, 1.0): ("Gateway", 15.0)}, machine=17.0, runner=3.0))  # 20 %
    figures = idle_figures(100, baseline, window)
    assert figures["cpu_percent_no_session"] == {"Gateway": 5.0}
    assert figures["cpu_percent_with_sessions"] == {"Gateway": 20.0}
    assert figures["cpu_percent_per_idle_session"] == {"Gateway": 0.15}
    assert figures["cpu_per_idle_session"] == {"Gateway": 0.0015}
    assert figures["machine_cpu_percent"] == {"no_session": 20.0, "with_sessions": 60.0,
                                              "per_idle_session": 0.4}
    assert figures["runner_cpu_percent"]["per_idle_session"] == 0.1
    assert idle_figures(0, baseline, window)["cpu_percent_per_idle_session"] is None


def step(sessions: int, turns: int, per_turn: dict[str, float]) -> dict[str, Any]:
    return {"sessions": sessions, "completed_turns": turns, "cpu_s_per_turn": per_turn,
            "cpu_s_total": {k: v * turns for k, v in per_turn.items()},
            "machine_cpu_s_total": 3.0 * turns, "machine_cpu_s_per_turn": 3.0,
            "runner_cpu_s_total": 0.5 * turns}


def test_the_profile_takes_the_one_session_held_and_largest_steps_and_the_idle_phase(
) -> None:
    steps = [step(1, 10, {"Gateway": 0.3, "Transcriber": 0.8}),
             step(2, 20, {"Gateway": 0.35, "Transcriber": 0.9}),
             step(4, 30, {"Gateway": 0.4, "Transcriber": 1.2})]
    idle = {"connected": 200, "cpu_percent_per_idle_session": {"Gateway": 0.2},
            "machine_cpu_percent": {"per_idle_session": 0.5},
            "runner_cpu_percent": {"per_idle_session": 0.25}}
    profile = profile_section(steps, 2, idle)
    stages = profile["stages"]
    assert profile["held_step_sessions"] == 2 and profile["idle_sessions"] == 200
    assert profile["largest_step_sessions"] == 4
    assert list(stages) == ["Gateway", "Transcriber", MACHINE, RUNNER, UNATTRIBUTED]
    assert stages["Transcriber"] == {"cpu_s_per_turn_one_session": 0.8,
                                     "cpu_s_per_turn_held_step": 0.9,
                                     "cpu_s_per_turn_largest_step": 1.2,
                                     "cpu_percent_per_idle_session": None}
    assert stages["Gateway"]["cpu_percent_per_idle_session"] == 0.2
    assert stages[RUNNER]["cpu_s_per_turn_one_session"] == 0.5
    # machine 3.0 − runner 0.5 − stages 1.1 per turn; idle: 0.5 − 0.25 − 0.2
    assert stages[UNATTRIBUTED]["cpu_s_per_turn_one_session"] == pytest.approx(1.4)
    assert stages[UNATTRIBUTED]["cpu_percent_per_idle_session"] == pytest.approx(0.05)


def test_no_step_held_no_idle_phase_leaves_those_figures_null() -> None:
    profile = profile_section([step(1, 10, {"Gateway": 0.3})], None, None)
    assert profile["held_step_sessions"] is None and profile["idle_sessions"] is None
    assert profile["stages"]["Gateway"]["cpu_s_per_turn_held_step"] is None
    assert profile["stages"]["Gateway"]["cpu_s_per_turn_largest_step"] == 0.3
    assert profile_section([], None, None)["stages"] == {}
    assert profile_section([], None, None)["largest_step_sessions"] is None


def test_the_table_shows_the_largest_step_beside_the_held_one() -> None:
    """One session held of 1 and 8: the load's figures are in the table all the same."""
    steps = [step(1, 10, {"Gateway": 0.3}), step(8, 80, {"Gateway": 0.2})]
    lines = profile_table(profile_section(steps, 1, None)).splitlines()
    assert "@1 (held)" in lines[1] and "@8 (largest)" in lines[1]
    assert lines[2].split()[1:4] == ["0.300", "0.300", "0.200"]


@pytest.mark.parametrize(("title", "name", "under_root", "expected"), [
    ("ray::ServeReplica:voxline:Transcriber", "python", True, ("Transcriber", True)),
    ("ray::ServeReplica:voxline:Gateway.handle_request", "python", False, ("Gateway", True)),
    ("ray::ServeReplica:other-app:Gateway", "python", True, None),
    ("ray::ProxyActor", "python", True, ("ServeProxy", False)),
    ("ray::ServeController.run_control_loop", "python", True, ("ServeController", False)),
    ("redis-server 127.0.0.1:6390", "redis-server", True, ("Redis", False)),
    ("/usr/bin/raylet", "raylet", True, ("ServerOther", False)),
    ("/usr/bin/raylet", "raylet", False, None),
])
def test_processes_are_grouped_by_title(title: str, name: str, under_root: bool,
                                        expected: tuple[str, bool] | None) -> None:
    assert group_of(title, name, "voxline", under_root=under_root) == expected


def test_serve_is_asked_for_its_replica_counts_at_most_every_few_seconds(
        monkeypatch: pytest.MonkeyPatch) -> None:
    probe = ReplicaProbe(use_serve_status=True)
    asked: list[int] = []

    def ask() -> dict[str, int]:
        asked.append(1)
        return {"Gateway": len(asked)}

    clock = [1000.0]
    monkeypatch.setattr(probe, "_ask_serve", ask)
    monkeypatch.setattr(_capacity_probe.time, "monotonic", lambda: clock[0])
    assert probe.serve_replicas() == {"Gateway": 1}
    clock[0] += SERVE_STATUS_EVERY_S - 0.5
    assert probe.serve_replicas() == {"Gateway": 1}  # the last answer, not asked again
    clock[0] += 1.0
    assert probe.serve_replicas() == {"Gateway": 2}
    assert len(asked) == 2
    assert ReplicaProbe().serve_replicas() is None  # not asked at all unless told to
