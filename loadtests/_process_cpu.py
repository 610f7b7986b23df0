"""CPU spent by groups of processes over a window, and which of them ran out.

A benchmark on one machine runs the server, its Redis and the load generator side by
side, so "the limit" is whichever of them ran out first. :class:`CpuMeter` reads each
process's CPU time (``psutil``: user + system, from ``/proc``) at the start and end of a
window and gives, per group (Redis primaries, Gateways, the load generator ...), the
percent of one core it used, and its busiest single process. A Redis node and a Python
process each run on one thread, so one of them near 100 % is a limit of its own, whatever
the other cores do; the machine's total (every process, ours or not: the other work on a
shared machine shows as ``other``) near ``100 × cores`` is the other kind of limit.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

#: a single-threaded process this busy (percent of one core) has run out
PROCESS_FULL = 85.0
#: the machine this busy (percent of all its cores) has run out
MACHINE_FULL = 90.0


def process_cpu_s(proc: psutil.Process) -> float:
    """The CPU seconds ``proc`` has used, user and system (``psutil.Error`` once it is
    gone)."""
    times = proc.cpu_times()
    return float(times.user + times.system)


def _cpu_seconds(proc: psutil.Process) -> float | None:
    with contextlib.suppress(psutil.Error):
        return process_cpu_s(proc)
    return None


def _machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, every core together."""
    times = psutil.cpu_times()
    total = float(sum(times))
    idle = float(times.idle + getattr(times, "iowait", 0.0))
    return total - idle, total


@dataclass
class CpuWindow:
    """What each group used over one window (percent of one core; 100 = a core)."""

    seconds: float
    groups: dict[str, float]
    #: each group's busiest process: (pid, percent of one core)
    hottest: dict[str, tuple[int, float]]
    #: every core together (100 × cores = all busy), and the share no group of ours used
    machine: float
    other: float
    cores: int = field(default_factory=lambda: psutil.cpu_count() or 1)

    def verdict(self) -> dict[str, Any]:
        """Which resource ran out: one process at its one core, or the machine's cores."""
        busiest = max(self.hottest.items(), key=lambda item: item[1][1], default=None)
        machine_pct = self.machine / self.cores
        reasons = []
        if busiest is not None and busiest[1][1] >= PROCESS_FULL:
            reasons.append(f"one {busiest[0]} process at {busiest[1][1]:.0f}% of its one core")
        if machine_pct >= MACHINE_FULL:
            share = max(self.groups.items(), key=lambda item: item[1], default=("-", 0.0))
            reasons.append(f"the machine's {self.cores} cores at {machine_pct:.0f}% "
                           f"(largest share: {share[0]}, {share[1]:.0f}% of a core)")
        if not reasons:
            nearest = (f"; busiest process: {busiest[0]} at {busiest[1][1]:.0f}%"
                       if busiest is not None else "")
            reasons.append(f"no CPU ran out: the bound was latency (machine at "
                           f"{machine_pct:.0f}% of its cores{nearest})")
        return {
            "exhausted": reasons,
            "busiest_process": None if busiest is None else {
                "group": busiest[0], "pid": busiest[1][0], "cpu_pct": round(busiest[1][1], 1)},
            "machine_pct_of_all_cores": round(machine_pct, 1),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "cpu_pct_of_one_core": {name: round(value, 1) for name, value in self.groups.items()},
            "hottest_process_pct": {name: round(pct, 1) for name, (_, pct) in self.hottest.items()},
            "machine_pct_of_one_core": round(self.machine, 1),
            "other_processes_pct_of_one_core": round(self.other, 1),
            "cores": self.cores,
            **self.verdict(),
        }


class CpuMeter:
    """Measures groups of pids over a window: ``start()``, then ``stop()`` gives a
    :class:`CpuWindow`. Processes gone in between count what they used until then."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = {name: [psutil.Process(pid) for pid in pids if psutil.pid_exists(pid)]
                       for name, pids in groups.items()}
        self._start: dict[int, float] = {}
        self._machine: tuple[float, float] = (0.0, 0.0)
        self._at = 0.0

    def start(self) -> None:
        self._at = time.monotonic()
        self._machine = _machine_busy_seconds()
        self._start = {}
        for procs in self.groups.values():
            for proc in procs:
                used = _cpu_seconds(proc)
                if used is not None:
                    self._start[proc.pid] = used

    def stop(self) -> CpuWindow:
        seconds = max(time.monotonic() - self._at, 1e-6)
        groups: dict[str, float] = {}
        hottest: dict[str, tuple[int, float]] = {}
        for name, procs in self.groups.items():
            total = 0.0
            for proc in procs:
                used = _cpu_seconds(proc)
                if used is None or proc.pid not in self._start:
                    continue
                pct = (used - self._start[proc.pid]) / seconds * 100
                total += pct
                if name not in hottest or pct > hottest[name][1]:
                    hottest[name] = (proc.pid, pct)
            groups[name] = total
        busy, total_s = _machine_busy_seconds()
        cores = psutil.cpu_count() or 1
        # the machine's busy time over the window, as percent of one core
        machine = (busy - self._machine[0]) / max(total_s - self._machine[1], 1e-6) * 100 * cores
        return CpuWindow(seconds, groups, hottest, machine,
                         max(machine - sum(groups.values()), 0.0), cores)
