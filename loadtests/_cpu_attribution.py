"""Where the machine's CPU went that no counted group explains, and which threads the counted
groups' time ran on.

The capacity runner counts the server's processes by group (:mod:`loadtests._capacity_probe`)
and the runner apart; what the machine spent beyond both was one "unattributed" figure, as
large as a Gateway's share at times (issue 51). A :class:`MachineSnapshot` reads, at a step's
start and end, everything that figure can be made of:

* the kernel's own time, from the machine's counters: interrupts and soft interrupts (a
  loopback packet is delivered in soft-interrupt context, often charged to no process) and
  time stolen by a hypervisor;
* every process on the machine, counted or not, by name (``/proc/<pid>/stat``: user +
  system), and what each reaped of its exited children (``cutime`` + ``cstime``: a short
  subprocess is counted only there);
* per thread of the processes a caller names (``/proc/<pid>/task/<tid>/stat``), summed by
  thread name: Ray names its C++ threads (``core_worker_io``, ``grpc_global_timer``,
  ``client.poll``), and Voxline names its own (``pipeline.aio.name_os_thread``: a
  replica's event loop ``<kind>-loop``, its ``to_thread`` pool ``<kind>-pool``, each
  engine's model threads); a thread nobody named keeps the process's name. A number at
  the end of a name is dropped, so a pool's threads sum as one.

:func:`attribution` turns two snapshots into seconds per part, with the residual that is
left (processes that came and went between the snapshots with nothing reaping them, and
the accounting's rounding). Only Linux's ``/proc`` is read: elsewhere a snapshot is empty
and the attribution says so.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:  # _cpu_time's snapshots carry ours
    from loadtests._cpu_time import CpuSnapshot

#: a process across time: (pid, start time in clock ticks since boot), reuse-proof
Key = tuple[int, int]
#: the machine's counters read as the kernel's own (not a process's) time
KERNEL_FIELDS = ("irq", "softirq", "steal")
#: the counters of a busy core (idle and iowait are not)
BUSY_FIELDS = ("user", "nice", "system", *KERNEL_FIELDS)
#: parts listed by name: the largest this many, the rest summed as "others"
TOP = 8

_NUMBERED = re.compile(r"[-_]?\d+$")
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PROC = Path("/proc")


@dataclass(frozen=True)
class ProcTimes:
    name: str
    cpu_s: float
    #: CPU-seconds of the children it reaped (a child that exited and was waited for)
    children_s: float


@dataclass(frozen=True)
class MachineSnapshot:
    """Everything on the machine at one moment (see the module docstring)."""

    kernel_s: Mapping[str, float] = field(default_factory=dict)
    procs: Mapping[Key, ProcTimes] = field(default_factory=dict)
    #: per named process: thread name → CPU-seconds of its threads of that name
    threads: Mapping[Key, Mapping[str, float]] = field(default_factory=dict)
    #: the machine's busy CPU-seconds (every core), as the kernel counts it
    busy_s: float = 0.0


def _stat(path: Path) -> tuple[str, list[str]] | None:
    """(comm, the fields after it) of a ``stat`` file; None when it is gone."""
    try:
        text = path.read_text()
    except OSError:
        return None
    left, right = text.find("("), text.rfind(")")
    return text[left + 1:right], text[right + 2:].split()


def _proc_times(pid: int) -> tuple[Key, ProcTimes] | None:
    stat = _stat(_PROC / str(pid) / "stat")
    if stat is None:
        return None
    name, rest = stat  # rest[0] is field 3 (state): utime is field 14, starttime field 22
    utime, stime, cutime, cstime = (int(x) for x in rest[11:15])
    return (pid, int(rest[19])), ProcTimes(name, (utime + stime) / _TICK,
                                            (cutime + cstime) / _TICK)


def _thread_times(pid: int) -> dict[str, float]:
    spent: Counter[str] = Counter()
    try:
        tids = os.listdir(_PROC / str(pid) / "task")
    except OSError:
        return {}
    for tid in tids:
        stat = _stat(_PROC / str(pid) / "task" / tid / "stat")
        if stat is not None:  # "piper-tts-3" and "piper-tts-4" are one kind of thread
            spent[_NUMBERED.sub("", stat[0])] += (int(stat[1][11]) + int(stat[1][12])) / _TICK
    return dict(spent)


def _busy(times: Any) -> float:
    return sum(float(getattr(times, name, 0.0)) for name in BUSY_FIELDS)


def machine_busy_s() -> float:
    """CPU-seconds every core of the machine spent busy since boot (not idle, not waiting
    on I/O; guest time is inside user time already)."""
    return _busy(psutil.cpu_times())


def machine_snapshot(thread_pids: Iterable[int] = ()) -> MachineSnapshot:
    """Read the machine now: its counters, every process, the threads of ``thread_pids``
    (without ``/proc``: its busy time only)."""
    times = psutil.cpu_times()
    if not _PROC.is_dir():
        return MachineSnapshot(busy_s=_busy(times))
    kernel = {name: float(getattr(times, name, 0.0)) for name in KERNEL_FIELDS}
    procs = dict(p for pid in psutil.pids() if (p := _proc_times(pid)) is not None)
    wanted = set(thread_pids)
    threads = {key: _thread_times(key[0]) for key in procs if key[0] in wanted}
    return MachineSnapshot(kernel, procs, threads, _busy(times))


def _top(spent: Mapping[str, float], top: int = TOP) -> dict[str, float]:
    ranked = sorted(((k, v) for k, v in spent.items() if v > 0), key=lambda kv: -kv[1])
    shown = {k: round(v, 3) for k, v in ranked[:top]}
    rest = sum(v for _, v in ranked[top:])
    if rest > 0:
        shown["others"] = round(rest, 3)
    return shown


def _delta(before: ProcTimes | None, after: ProcTimes) -> tuple[float, float]:
    """(own, reaped children's) CPU-seconds between two readings of one process (all of
    it when it started in between)."""
    if before is None:
        return after.cpu_s, after.children_s
    return (max(0.0, after.cpu_s - before.cpu_s),
            max(0.0, after.children_s - before.children_s))


def attribution(before: MachineSnapshot, after: MachineSnapshot,
                counted_pids: Iterable[int], groups: Mapping[int, str] | None = None,
                ) -> dict[str, Any]:
    """What the machine spent between two snapshots, part by part (CPU-seconds):

    ``kernel`` (irq, softirq, steal), ``counted_processes`` (the caller's groups and its
    runner: ``counted_pids``), ``other_processes`` by name, ``reaped_children`` by the
    parent's name, and ``residual``: the machine's busy time that none of these explain.
    With ``groups`` (pid → group), ``threads`` gives per group its threads' CPU-seconds by
    thread name, the largest first."""
    if not after.procs:
        return {"available": False, "why": "no /proc on this machine"}
    counted = set(counted_pids)
    kernel = {name: round(max(0.0, after.kernel_s[name] - before.kernel_s.get(name, 0.0)), 3)
              for name in after.kernel_s}
    counted_s = 0.0
    others: Counter[str] = Counter()
    reaped: Counter[str] = Counter()
    for key, now in after.procs.items():
        own, children = _delta(before.procs.get(key), now)
        if key[0] in counted:
            counted_s += own
        else:
            others[now.name] += own
        if children > 0:
            reaped[now.name] += children
    busy = max(0.0, after.busy_s - before.busy_s)
    explained = sum(kernel.values()) + counted_s + sum(others.values()) + sum(reaped.values())
    result: dict[str, Any] = {
        "available": True,
        "machine_busy_s": round(busy, 3),
        "kernel": kernel,
        "counted_processes": round(counted_s, 3),
        "other_processes": _top(others),
        "reaped_children": _top(reaped),
        "residual": round(busy - explained, 3),
    }
    if groups:
        result["threads"] = _threads_by_group(before, after, groups)
    return result


def _threads_by_group(before: MachineSnapshot, after: MachineSnapshot,
                      groups: Mapping[int, str]) -> dict[str, dict[str, float]]:
    by_group: dict[str, Counter[str]] = {}
    for key, threads in after.threads.items():
        group = groups.get(key[0])
        if group is None:
            continue
        earlier = before.threads.get(key, {})
        spent = by_group.setdefault(group, Counter())
        for name, cpu_s in threads.items():
            spent[name] += max(0.0, cpu_s - earlier.get(name, 0.0))
    return {group: _top(spent) for group, spent in sorted(by_group.items())}


def attribution_between(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, Any] | None:
    """What the machine spent beyond the counted groups and the runner, part by part, and
    the groups' threads by name (:func:`attribution`); None when
    the snapshots did not read the machine."""
    if before.machine is None or after.machine is None:
        return None
    groups = {key[0]: proc.group for key, proc in after.procs.items()}
    groups[after.runner_pid] = "runner"
    return attribution(before.machine, after.machine, groups, groups)


def attribution_text(found: dict[str, Any] | None, turns: int,
                     groups: Iterable[str] = ("Gateway", "ServeProxy", "ServeController")
                     ) -> list[str]:
    """A few printed lines: the parts beyond the counted groups per turn, and the named
    groups' busiest threads per turn."""
    if not found or not found.get("available") or turns <= 0:
        return []

    def per_turn(spent: Mapping[str, float]) -> str:
        return ", ".join(f"{name} {seconds / turns:.3f}" for name, seconds in spent.items())

    lines = [f"beyond the groups, CPU-s per turn: kernel {per_turn(found['kernel'])}; "
             f"other processes {per_turn(found['other_processes']) or '-'}; reaped children "
             f"{per_turn(found['reaped_children']) or '-'}; residual "
             f"{found['residual'] / turns:.3f}"]
    for group in groups:
        if threads := found.get("threads", {}).get(group):
            lines.append(f"{group} threads, CPU-s per turn: {per_turn(threads)}")
    return lines
