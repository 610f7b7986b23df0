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
