"""The processes an app a test started runs as: its Ray replicas, found among the test's
own descendants (another Ray cluster on the machine is never looked at)."""

from __future__ import annotations

from collections.abc import Callable


def descendants(root_pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(root_pid).children(recursive=True)]
    except psutil.Error:
        return []


def _matching(root_pid: int, matches: Callable[[list[str]], bool]) -> list[int]:
    """Live processes among ``root_pid``'s descendants whose command line ``matches``."""
    import psutil

    found = []
    for pid in descendants(root_pid):
        try:
            proc = psutil.Process(pid)
            if matches(proc.cmdline()) and proc.status() != "zombie":
                found.append(pid)
        except psutil.Error:
            continue
    return found


def replica_pids(root_pid: int, deployment: str, app: str = "voxline") -> list[int]:
    """Live replica processes of ``deployment`` among ``root_pid``'s descendants (Ray titles a
    replica's worker ``ray::ServeReplica:<app>:<deployment>``)."""
    title = f"ServeReplica:{app}:{deployment}"
    return _matching(root_pid, lambda args: any(title in arg for arg in args[:1]))


def program_pids(root_pid: int, program: str) -> list[int]:
    """Live processes among ``root_pid``'s descendants whose program is named ``program``
    (a binary such as Ray's ``raylet``)."""
    return _matching(root_pid, lambda args: bool(args) and args[0].rsplit("/", 1)[-1] == program)


def script_pids(root_pid: int, script: str) -> list[int]:
    """Live processes among ``root_pid``'s descendants that run the Python file ``script``
    (a name such as ``log_monitor.py``: Ray's daemons)."""
    return _matching(root_pid, lambda args: any(arg.endswith(script) for arg in args[1:]))
