"""Processes the fault tests start, and kill: a Redis with persistence of its own, and the
child app (its record, and how it is stopped)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from voxline.redis_server import find_redis_binary, free_port, is_reachable


class DurableRedis:
    """redis-server on 127.0.0.1 and a free port with AOF persistence in ``workdir``:
    SIGKILL it and start it again on the same port from what it had written."""

    def __init__(self, workdir: Path, fsync: str) -> None:
        self.workdir = workdir
        self.fsync = fsync
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 20.0) -> None:
        self.process = subprocess.Popen(
            [find_redis_binary(), "--bind", "127.0.0.1", "--port", str(self.port),
             "--dir", str(self.workdir), "--save", "", "--appendonly", "yes",
             "--appendfsync", self.fsync, "--daemonize", "no",
             "--logfile", str(self.workdir / "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while not is_reachable("127.0.0.1", self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.workdir / "redis.log").read_text(errors="replace")[-800:]
                self.stop()
                raise RuntimeError(f"redis-server did not come up: {log}")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final fsync; what the AOF holds is what survives."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()


def incr_aof(workdir: Path) -> Path:
    """The AOF file Redis 7 appends to now (the manifest's last ``incr`` file)."""
    manifest = (workdir / "appendonlydir").glob("*.manifest")
    lines = next(manifest).read_text().splitlines()
    names = [line.split()[1] for line in lines if line.split()[-1] == "i"]
    return workdir / "appendonlydir" / names[-1]

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ChildApp:
    url: str
    pid: int
    redis_url: str
    key_prefix: str


def stop_child(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the CLI stops the app and Ray), then the whole process group if needed."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=60)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # our own group: Ray's leftovers, if any
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
