"""What the capacity runner samples: CPU and RSS per deployment once a second, replica counts,
and on demand the cumulative CPU time of every process it counts (:mod:`loadtests._cpu_time`).

Replicas are found as processes: Ray titles a Serve replica's worker
``ray::ServeReplica:<app>:<Deployment>``. When the runner started the app itself, only the
descendants of this process count (other Ray clusters on the machine are not ours); with
``--server-pid`` those of that process; otherwise every matching process on the machine.
Replica counts come from ``serve.status()`` when this process is connected to the Ray
cluster (it started the app), else from the processes (a replica still loading counts).

Besides the deployments, the processes every turn also passes through are groups of their
own: Serve's HTTP/WebSocket proxy (``ServeProxy``: every socket frame crosses it), its
controller (``ServeController``), a ``redis-server`` (``Redis``: the event log), and, under a
known root process, the rest of the server's processes (``ServerOther``: Ray's raylet, GCS,
dashboard, idle workers). ``named`` pins a group to a process whatever its title (smoke mode:
the scripted-engine Gateway child).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psutil

from loadtests._cpu_attribution import machine_snapshot
from loadtests._cpu_time import CpuSnapshot, ProcCpu, ProcKey

TITLE = re.compile(r"ServeReplica:(?P<app>[\w-]+):(?P<deployment>\w+)")
#: seconds between two asks of ``serve.status()`` (its replica counts are reused between):
#: one ask cost the runner ~90 ms of CPU (pydantic models, cloudpickle), 9 % of a core at
#: one sample a second, taken from the machine under test
SERVE_STATUS_EVERY_S = 5.0
#: groups that are not Serve deployments (no replica count), matched on the process title
SERVE_SYSTEM = (("ProxyActor", "ServeProxy"), ("ServeController", "ServeController"))
REDIS, OTHER = "Redis", "ServerOther"


@dataclass
class Sample:
    """One moment: seconds since the run began, and per deployment its figures."""

    t: float
    cpu_percent: dict[str, float] = field(default_factory=dict)  # 100 = one core
    rss_mb: dict[str, float] = field(default_factory=dict)
    replicas: dict[str, int] = field(default_factory=dict)
    #: the whole machine: what else ran beside the app shows here (1-minute load average,
    #: CPU % of all cores together, 100 = every core busy)
    machine: dict[str, float] = field(default_factory=dict)


def group_of(title: str, name: str, app: str, *, under_root: bool) -> tuple[str, bool] | None:
    """(group, is a Serve deployment) of a process by its title and name; None: not counted.

    ``under_root``: the process descends from the server's root process, so what is not
    recognised is still the server's (``ServerOther``); elsewhere on the machine it is not.
    """
    match = TITLE.search(title)
    if match:
        return (match["deployment"], True) if match["app"] == app else None
    for marker, group in SERVE_SYSTEM:
        if marker in title:
            return group, False
    if name.startswith("redis-server"):
        return REDIS, False
    return (OTHER, False) if under_root else None


class ReplicaProbe:
    """Samples the replicas of one Serve application (thread-safe: the sampler runs in a
    thread while the runner takes CPU snapshots)."""

    def __init__(self, app: str = "voxline", root_pid: int | None = None,
                 *, use_serve_status: bool = False, named: Mapping[str, int] | None = None,
                 ) -> None:
        self.app = app
        self.root_pid = root_pid
        self.use_serve_status = use_serve_status
        self.named = dict(named or {})
        self._serve_counts: tuple[float, dict[str, int] | None] | None = None
        self._procs: dict[int, psutil.Process] = {}
        #: last cumulative CPU reading of every process ever counted, exited ones included
        self._ledger: dict[ProcKey, ProcCpu] = {}
        self._lock = threading.Lock()
        self._runner = psutil.Process()
        self.start = time.monotonic()

    def _candidates(self) -> list[tuple[psutil.Process, bool]]:
        """(process, descends from the root) of every process that may count."""
        found: list[tuple[psutil.Process, bool]] = []
        for pid in self.named.values():
            with contextlib.suppress(psutil.Error):
                found.append((psutil.Process(pid), True))
        if self.root_pid is not None:
            with contextlib.suppress(psutil.Error):
                found += [(p, True) for p in psutil.Process(self.root_pid).children(
                    recursive=True)]
            return found
        return found + [(p, False) for p in psutil.process_iter()]

    def processes(self) -> dict[str, tuple[bool, list[psutil.Process]]]:
        """Per group: (is a Serve deployment, its live processes)."""
        found: dict[str, tuple[bool, list[psutil.Process]]] = {}
        named = {pid: group for group, pid in self.named.items()}
        for proc, under_root in self._candidates():
            if proc.pid == self._runner.pid:
                continue  # the runner counts apart (it may be the root, or the Ray driver)
            try:
                started = proc.create_time()
                if proc.pid in named:
                    group: tuple[str, bool] | None = (named[proc.pid], True)
                else:
                    title = " ".join(proc.cmdline()[:1])
                    group = group_of(title, proc.name(), self.app, under_root=under_root)
            except psutil.Error:  # exited meanwhile
                continue
            if group is None:
                continue
            known = self._procs.setdefault(proc.pid, proc)
            if known.create_time() != started:  # the pid was reused by a new process
                known = self._procs[proc.pid] = proc
            entry = found.setdefault(group[0], (group[1], []))
            entry[1].append(known)
        return found

    def replica_processes(self) -> dict[str, list[psutil.Process]]:
        return {name: procs for name, (deployment, procs) in self.processes().items()
                if deployment}

    def serve_replicas(self) -> dict[str, int] | None:
        """RUNNING replicas per deployment by Serve's count (``None``: not asked, or it
        failed), asked at most every :data:`SERVE_STATUS_EVERY_S`."""
        if not self.use_serve_status:
            return None
        now = time.monotonic()
        if self._serve_counts is None or now - self._serve_counts[0] >= SERVE_STATUS_EVERY_S:
            self._serve_counts = (now, self._ask_serve())
        return self._serve_counts[1]

    def _ask_serve(self) -> dict[str, int] | None:
        try:
            from ray import serve

            status: Any = serve.status()
            deployments = status.applications[self.app].deployments
            return {name: int(d.replica_states.get("RUNNING", 0))
                    for name, d in deployments.items()}
        except Exception:
            return None

    def _read(self, group: str, proc: psutil.Process) -> None:
        """Record ``proc``'s cumulative CPU time in the ledger (lock held)."""
        times = proc.cpu_times()
        self._ledger[(proc.pid, proc.create_time())] = ProcCpu(group, times.user + times.system)

    def sample(self) -> Sample:
        with self._lock:
            sample = Sample(round(time.monotonic() - self.start, 2))
            for group, (deployment, procs) in self.processes().items():
                cpu = rss = 0.0
                for proc in procs:
                    try:
                        cpu += proc.cpu_percent(None)  # since this process's previous sample
                        rss += proc.memory_info().rss / 2**20
                        self._read(group, proc)
                    except psutil.Error:
                        continue
                sample.cpu_percent[group] = round(cpu, 1)
                sample.rss_mb[group] = round(rss, 1)
                if deployment:
                    sample.replicas[group] = len(procs)
            sample.machine = {"load_avg_1m": round(os.getloadavg()[0], 2),
                              "cpu_percent": psutil.cpu_percent(None)}
        counted = self.serve_replicas()
        if counted is not None:
            sample.replicas = counted
        return sample

    def snapshot(self) -> CpuSnapshot:
        """Cumulative CPU-seconds now: every live process read afresh, exited ones at their
        last reading; the machine's busy time and the runner's own."""
        with self._lock:
            for group, (_, procs) in self.processes().items():
                for proc in procs:
                    with contextlib.suppress(psutil.Error):
                        self._read(group, proc)
            runner = self._runner.cpu_times()
            pids = {key[0] for key in self._ledger} | {self._runner.pid}
            machine = machine_snapshot(pids)  # the machine's busy time read once, with it
            return CpuSnapshot(round(time.monotonic() - self.start, 3), dict(self._ledger),
                               machine_s=machine.busy_s,
                               runner_s=runner.user + runner.system,
                               runner_pid=self._runner.pid, machine=machine)

    async def window(self, seconds: float) -> tuple[CpuSnapshot, CpuSnapshot]:
        """Snapshots either side of ``seconds`` of waiting (each read off the event loop:
        a read walks every process of the app)."""
        before = await asyncio.to_thread(self.snapshot)
        await asyncio.sleep(seconds)
        return before, await asyncio.to_thread(self.snapshot)

    def pids(self) -> dict[str, list[int]]:
        return {name: [p.pid for p in procs] for name, procs in self.replica_processes().items()}


def own_pid() -> int:
    return os.getpid()
