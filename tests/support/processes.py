"""The processes an app a test started runs as: its Ray replicas, found among the test's
own descendants (another Ray cluster on the machine is never looked at)."""

from __future__ import annotations


def descendants(root_pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(root_pid).children(recursive=True)]
    except psutil.Error:
        return []


def replica_pids(root_pid: int, deployment: str, app: str = "voxline") -> list[int]:
    """Live replica processes of ``deployment`` among ``root_pid``'s descendants (Ray titles a
    replica's worker ``ray::ServeReplica:<app>:<deployment>``)."""
    import psutil

    found = []
    for pid in descendants(root_pid):
        try:
            proc = psutil.Process(pid)
            title = " ".join(proc.cmdline()[:1])
            if f"ServeReplica:{app}:{deployment}" in title and proc.status() != "zombie":
                found.append(pid)
        except psutil.Error:
            continue
    return found
