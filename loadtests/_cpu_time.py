"""CPU-seconds spent between two moments, per group of processes (a Serve deployment, the proxy).

Sampled CPU % integrated over time misses what happens between samples and depends on the
sampling rate; the kernel's cumulative CPU time of each process (user + system) does not.
A :class:`CpuSnapshot` holds, for every process seen so far, that cumulative figure and the
group it belongs to; the seconds a group spent between two snapshots is the sum of its
processes' differences.

Processes come and go between snapshots (a replica restarted after a crash, a scale-out,
a scale-in), so each is keyed by (pid, start time), never by pid alone:

- in both snapshots: what it spent in between (never negative: a reading that went back,
  which the kernel never reports, counts 0);
- only in the later one: it started in between (a new replica), so all its CPU time counts,
  its model load included; a pid reused by a new process is such a process;
- only in the earlier one: it exited with no later reading, so nothing can be said of its
  last seconds and nothing is counted. The probe keeps the last reading of every process it
  saw in later snapshots, so an exited replica counts up to its last sample (a second or
  less of it is lost), and its replacement counts from its start: no double count.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from loadtests._cpu_attribution import MachineSnapshot

#: a process across time: (pid, start time as the kernel reports it); a reused pid differs
ProcKey = tuple[int, float]


@dataclass(frozen=True)
class ProcCpu:
    """One process's group and its cumulative CPU-seconds (user + system) when read."""

    group: str
    cpu_s: float


@dataclass(frozen=True)
class CpuSnapshot:
    """Cumulative CPU-seconds at one moment (``t``: seconds on the runner's clock)."""

    t: float
    procs: Mapping[ProcKey, ProcCpu] = field(default_factory=dict)
    #: the whole machine's busy CPU-seconds (every core, every process)
    machine_s: float = 0.0
    #: the runner's own process: the load it generates costs CPU on the same machine
    runner_s: float = 0.0
    runner_pid: int = 0
    #: every process and the counted ones' threads, for what the groups don't explain
    #: (:mod:`loadtests._cpu_attribution`); None where not read
    machine: MachineSnapshot | None = None


def cpu_between(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, float]:
    """CPU-seconds per group between two snapshots (rules: the module docstring).

    A group seen in either snapshot is listed, with 0.0 if none of its processes counted.
    """
    spent: dict[str, float] = defaultdict(float)
    for gone in before.procs.values():
        spent[gone.group] += 0.0
    for key, now in after.procs.items():
        earlier = before.procs.get(key)
        spent[now.group] += now.cpu_s if earlier is None else max(0.0, now.cpu_s - earlier.cpu_s)
    return {group: round(seconds, 3) for group, seconds in sorted(spent.items())}


def machine_between(before: CpuSnapshot, after: CpuSnapshot) -> tuple[float, float]:
    """(machine busy CPU-seconds, the runner's CPU-seconds) between two snapshots."""
    return (round(max(0.0, after.machine_s - before.machine_s), 3),
            round(max(0.0, after.runner_s - before.runner_s), 3))


def per_unit(spent: Mapping[str, float], units: float) -> dict[str, float] | None:
    """``spent`` divided by ``units`` (turns, session-seconds); None when there were none."""
    if units <= 0:
        return None
    return {group: round(seconds / units, 4) for group, seconds in spent.items()}
