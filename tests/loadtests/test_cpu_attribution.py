"""The capacity runner's attribution of the machine's CPU beyond its counted groups
(loadtests/_cpu_attribution.py): the arithmetic on made-up snapshots, and real /proc reads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests._cpu_attribution import (
    MachineSnapshot,
    ProcTimes,
    attribution,
    attribution_text,
    machine_snapshot,
)

GATEWAY, PROXY, OTHER, BORN = (10, 1), (11, 1), (12, 1), (13, 5)


def snapshot(busy: float, softirq: float, procs: dict[tuple[int, int], ProcTimes],
             threads: dict[tuple[int, int], dict[str, float]] | None = None) -> MachineSnapshot:
    return MachineSnapshot({"irq": 0.0, "softirq": softirq, "steal": 0.0}, procs,
                           threads or {}, busy)


def test_every_part_is_its_difference_and_the_residual_is_what_is_left() -> None:
    before = snapshot(100.0, 4.0, {
        GATEWAY: ProcTimes("ray::ServeRepli", 10.0, 0.0),
        PROXY: ProcTimes("ray::ProxyActor", 5.0, 0.0),
        OTHER: ProcTimes("sshd", 1.0, 2.0),
    }, {GATEWAY: {"ray::ServeRepli": 8.0, "core_worker_io": 2.0}})
    after = snapshot(110.0, 5.5, {
        GATEWAY: ProcTimes("ray::ServeRepli", 14.0, 0.0),
        PROXY: ProcTimes("ray::ProxyActor", 6.0, 0.0),
        OTHER: ProcTimes("sshd", 1.5, 3.0),  # ran 0.5 s and reaped a child of 1 s
        BORN: ProcTimes("raylet", 0.75, 0.0),  # started in the window: all of it counts
    }, {GATEWAY: {"ray::ServeRepli": 11.0, "core_worker_io": 2.5, "grpc_global_tim": 0.5}})
    found = attribution(before, after, [10, 11], {10: "Gateway", 11: "ServeProxy"})
    assert found["machine_busy_s"] == 10.0
    assert found["kernel"] == {"irq": 0.0, "softirq": 1.5, "steal": 0.0}
    assert found["counted_processes"] == 5.0
    assert found["other_processes"] == {"raylet": 0.75, "sshd": 0.5}
    assert found["reaped_children"] == {"sshd": 1.0}
    assert found["residual"] == pytest.approx(10.0 - 1.5 - 5.0 - 1.25 - 1.0)
    assert found["threads"] == {
        "Gateway": {"ray::ServeRepli": 3.0, "core_worker_io": 0.5, "grpc_global_tim": 0.5}}
    lines = attribution_text(found, 2, ("Gateway",))
    assert "softirq 0.750" in lines[0] and "residual 0.625" in lines[0]
    assert lines[1] == ("Gateway threads, CPU-s per turn: ray::ServeRepli 1.500, "
                        "core_worker_io 0.250, grpc_global_tim 0.250")


def test_only_the_largest_parts_are_named_the_rest_summed() -> None:
    procs = {(pid, 1): ProcTimes(f"p{pid}", float(pid), 0.0) for pid in range(1, 12)}
    found = attribution(snapshot(0.0, 0.0, {}), snapshot(100.0, 0.0, procs), [])
    assert list(found["other_processes"]) == [*(f"p{pid}" for pid in range(11, 3, -1)),
                                              "others"]
    assert found["other_processes"]["others"] == 1.0 + 2.0 + 3.0


def test_a_machine_without_proc_says_so() -> None:
    assert attribution(MachineSnapshot(), MachineSnapshot(), [])["available"] is False
    assert attribution_text(None, 3) == []


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads Linux's /proc")
def test_a_real_child_that_burns_cpu_shows_as_reaped_by_this_process() -> None:
    me = os.getpid()
    before = machine_snapshot([me])
    subprocess.run([sys.executable, "-c", "sum(i * i for i in range(4_000_000))"], check=True)
    after = machine_snapshot([me])
    found = attribution(before, after, [me], {me: "runner"})
    name = next(p.name for key, p in after.procs.items() if key[0] == me)
    assert found["reaped_children"].get(name, 0.0) > 0.05
    assert found["machine_busy_s"] > 0
    assert "runner" in found["threads"]


def test_the_non_model_share_leaves_out_model_deployments_and_model_threads() -> None:
    from loadtests._capacity_profile import non_model_per_turn

    step = {"completed_turns": 10,
            "cpu_s_per_turn": {"Gateway": 0.2, "Transcriber": 0.3, "LanguageModel": 0.25,
                               "Synthesizer": 0.2, "Redis": 0.01, "ServerOther": 0.04},
            "cpu_attribution": {"threads": {
                "Gateway": {"gateway-loop": 1.2, "voxline-turn-te": 0.5},
                "Transcriber": {"voxline-stt": 2.5}}}}
    assert non_model_per_turn(step) == 0.2 + 0.01 + 0.04 - 0.05
    assert non_model_per_turn({**step, "cpu_attribution": None}) == 0.25
    assert non_model_per_turn({**step, "completed_turns": 0}) is None


def test_the_stages_threads_in_the_gateway_count_as_models() -> None:
    """The CPU profile's Gateway runs the stages: their threads are models there, and
    bench_peers' split sets them apart as a group of their own."""
    from loadtests._capacity_profile import cpu_between_models, model_threads, non_model_per_turn
    from loadtests._cpu_time import CpuSnapshot, ProcCpu

    threads = {"Gateway": {"gateway-loop": 1.0, "llama-cpp": 2.0, "piper-tts": 1.5,
                           "voxline-stt": 1.0, "voxline-turn-te": 0.5},
               "ServerOther": {"raylet": 0.5}}
    assert model_threads(threads) == {"Gateway": 5.0}
    step = {"completed_turns": 10, "cpu_attribution": {"threads": threads},
            "cpu_s_per_turn": {"Gateway": 0.62, "ServerOther": 0.05}}
    assert non_model_per_turn(step) == pytest.approx(0.62 + 0.05 - 0.5)

    def snap(at: float, gateway: float, named: dict[str, float]) -> CpuSnapshot:
        machine = snapshot(at, 0.0, {GATEWAY: ProcTimes("ray::ServeRepli", gateway, 0.0)},
                           {GATEWAY: named})
        return CpuSnapshot(at, {GATEWAY: ProcCpu("Gateway", gateway)}, machine_s=at,
                           runner_s=0.0, runner_pid=99, machine=machine)

    before = snap(0.0, 10.0, {"gateway-loop": 4.0, "llama-cpp": 6.0})
    after = snap(10.0, 16.0, {"gateway-loop": 5.0, "llama-cpp": 9.0, "piper-tts": 2.0})
    assert cpu_between_models(before, after) == {"Gateway": 1.0, "Gateway models": 5.0}


def test_the_floor_is_the_idle_apps_rate_outside_the_models_and_each_step_less_it() -> None:
    """The app's floor (a window with nobody talking) in % of a core, and a step's figure
    outside the models less what that rate spent over the step's seconds."""
    from loadtests._capacity_profile import beyond_floor, floor_section, profile_table
    from loadtests._cpu_time import CpuSnapshot, ProcCpu

    def snap(at: float, gateway: float, named: dict[str, float]) -> CpuSnapshot:
        machine = snapshot(at, 0.0, {GATEWAY: ProcTimes("ray::ServeRepli", gateway, 0.0)},
                           {GATEWAY: named})
        return CpuSnapshot(at, {GATEWAY: ProcCpu("Gateway", gateway)}, machine_s=at,
                           runner_s=0.0, runner_pid=99, machine=machine)

    # 20 s idle: the Gateway 0.8 CPU-s, of which its (idle) LLM thread 0.2
    floor = floor_section(snap(0.0, 10.0, {"gateway-loop": 4.0, "llama-cpp": 6.0}),
                          snap(20.0, 10.8, {"gateway-loop": 4.6, "llama-cpp": 6.2}))
    assert floor["seconds"] == 20.0
    assert floor["cpu_percent"] == {"Gateway": pytest.approx(4.0)}
    assert floor["non_model_cpu_percent"] == pytest.approx(3.0)
    # 10 turns in 40 s, 0.3 CPU-s a turn outside the models: the floor is 1.2 CPU-s of them
    step = {"sessions": 1, "completed_turns": 10, "t_start": 5.0, "t_end": 45.0,
            "cpu_s_per_turn": {"Gateway": 0.3}, "cpu_attribution": None}
    assert beyond_floor(step, floor) == pytest.approx(0.3 - 0.12)
    assert beyond_floor(step, None) is None
    assert beyond_floor({**step, "completed_turns": 0}, floor) is None
    table = profile_table({"held_step_sessions": 1, "largest_step_sessions": 1,
                           "idle_sessions": None, "stages": {}, "idle_floor": floor,
                           "non_model_cpu_s_per_turn": {"1": 0.3},
                           "non_model_cpu_s_per_turn_beyond_floor": {"1": 0.18}})
    assert "4.00 % of a core, 3.00 outside the models" in table and "@1 0.3 / 0.18" in table
