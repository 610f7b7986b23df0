"""What the capacity runner samples once a second: CPU and RSS per deployment, replica counts.

Replicas are found as processes: Ray titles a Serve replica's worker
``ray::ServeReplica:<app>:<Deployment>``. When the runner started the app itself, only the
descendants of this process count (other Ray clusters on the machine are not ours); with
``--server-pid`` those of that process; otherwise every matching process on the machine.
Replica counts come from ``serve.status()`` when this process is connected to the Ray
cluster (it started the app), else from the processes (a replica still loading counts).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import psutil

TITLE = re.compile(r"ServeReplica:(?P<app>[\w-]+):(?P<deployment>\w+)")


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


class ReplicaProbe:
    """Samples the replicas of one Serve application."""

    def __init__(self, app: str = "voxline", root_pid: int | None = None,
                 *, use_serve_status: bool = False) -> None:
        self.app = app
        self.root_pid = root_pid
        self.use_serve_status = use_serve_status
        self._procs: dict[int, psutil.Process] = {}
        self.start = time.monotonic()

    def _candidates(self) -> list[psutil.Process]:
        if self.root_pid is not None:
            with contextlib.suppress(psutil.Error):
                return list(psutil.Process(self.root_pid).children(recursive=True))
            return []
        return list(psutil.process_iter())

    def replica_processes(self) -> dict[str, list[psutil.Process]]:
        found: dict[str, list[psutil.Process]] = defaultdict(list)
        for proc in self._candidates():
            try:
                title = " ".join(proc.cmdline()[:1])
            except psutil.Error:
                continue
            match = TITLE.search(title)
            if match and match["app"] == self.app:
                known = self._procs.setdefault(proc.pid, proc)
                found[match["deployment"]].append(known)
        return found

    def serve_replicas(self) -> dict[str, int] | None:
        if not self.use_serve_status:
            return None
        try:
            from ray import serve

            status: Any = serve.status()
            deployments = status.applications[self.app].deployments
            return {name: int(d.replica_states.get("RUNNING", 0))
                    for name, d in deployments.items()}
        except Exception:
            return None

    def sample(self) -> Sample:
        sample = Sample(round(time.monotonic() - self.start, 2))
        for deployment, procs in self.replica_processes().items():
            cpu = rss = 0.0
            for proc in procs:
                try:
                    cpu += proc.cpu_percent(None)  # since this process's previous sample
                    rss += proc.memory_info().rss / 2**20
                except psutil.Error:
                    continue
            sample.cpu_percent[deployment] = round(cpu, 1)
            sample.rss_mb[deployment] = round(rss, 1)
            sample.replicas[deployment] = len(procs)
        sample.machine = {"load_avg_1m": round(os.getloadavg()[0], 2),
                          "cpu_percent": psutil.cpu_percent(None)}
        counted = self.serve_replicas()
        if counted is not None:
            sample.replicas = counted
        return sample

    def pids(self) -> dict[str, list[int]]:
        return {name: [p.pid for p in procs] for name, procs in self.replica_processes().items()}


def own_pid() -> int:
    return os.getpid()
