"""Where a running ``voxline serve`` is, so other commands find it by themselves.

The run command may start a Redis of its own on a free port; ``voxline stats`` and
``voxline replay`` read sessions from that Redis, and ``voxline talk`` talks to that URL.
Rather than have the user copy a port from the serve output, ``serve`` records one small
JSON file per server (keyed by its HTTP port) in a per-user directory, the way
``systemd`` services leave pid files in ``$XDG_RUNTIME_DIR``: written atomically
(a temporary file renamed over it, readable by the user only, since a Redis URL may hold
a password), removed on a clean stop. A file left by a server that died is stale: its
process is gone or its Redis does not answer, and it is skipped (and removed when the
process is gone). An explicit ``--redis-url`` or ``VOXLINE_REDIS_URL`` always wins.

The directory is ``$VOXLINE_RUN_DIR``, else ``$XDG_RUNTIME_DIR/voxline``, else
``~/.cache/voxline/run``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["ServerRecord", "find_server", "recorded", "run_dir"]


@dataclass(frozen=True)
class ServerRecord:
    """One running server: its URL, its Redis and the key prefix its sessions are under."""

    url: str
    redis_url: str
    key_prefix: str
    port: int
    pid: int


def run_dir() -> Path:
    """The per-user directory the records live in (see the module docstring)."""
    if explicit := os.environ.get("VOXLINE_RUN_DIR"):
        return Path(explicit)
    if runtime := os.environ.get("XDG_RUNTIME_DIR"):
        return Path(runtime) / "voxline"
    return Path.home() / ".cache" / "voxline" / "run"


def _path(port: int, directory: Path | None = None) -> Path:
    return (directory or run_dir()) / f"server-{port}.json"


def write_record(record: ServerRecord, directory: Path | None = None) -> Path:
    """Write ``record`` atomically (a reader sees the old file or the new, never half)."""
    path = _path(record.port, directory)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".server-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:  # mkstemp's file is the user's only (0600)
            json.dump(asdict(record), f)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def remove_record(port: int, pid: int, directory: Path | None = None) -> None:
    """Remove the record of ``port`` if it is still this process's (a newer server on the
    same port may have replaced it)."""
    path = _path(port, directory)
    record = _load(path)
    if record is not None and record.pid == pid:
        with contextlib.suppress(OSError):
            path.unlink()


@contextlib.contextmanager
def recorded(record: ServerRecord, directory: Path | None = None) -> Iterator[Path]:
    """The record written for the duration of the block, removed when it ends."""
    path = write_record(record, directory)
    try:
        yield path
    finally:
        remove_record(record.port, record.pid, directory)


def _load(path: Path) -> ServerRecord | None:
    try:
        raw = json.loads(path.read_text())
        return ServerRecord(url=str(raw["url"]), redis_url=str(raw["redis_url"]),
                            key_prefix=str(raw["key_prefix"]), port=int(raw["port"]),
                            pid=int(raw["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def _addresses(url: str) -> list[tuple[str, int]]:
    """The (host, port) pairs a Redis URL names: one, or a list for the URLs that name
    several nodes (``redis+cluster://h1:p1,h2:p2/``, the sentinels of
    ``redis+sentinel://``), which ``urlsplit`` cannot parse."""
    parts = urlsplit(url)
    default = "26379" if parts.scheme == "redis+sentinel" else "6379"  # the sentinels'
    addresses = []
    for part in filter(None, parts.netloc.rsplit("@", 1)[-1].split(",")):
        host, colon, port = part.rpartition(":")
        if not colon or not port.isdigit() or host.endswith(":"):  # no port ("h", "[::1]")
            host, port = part, default
        addresses.append((host.strip("[]") or "127.0.0.1", int(port)))
    return addresses or [("127.0.0.1", 6379)]


def _redis_answers(url: str, timeout: float = 0.5) -> bool:
    """Something accepts connections where the URL points, on any of its nodes (no command
    is sent: a Redis with a password would refuse one, and still be the right Redis)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return Path(parts.path).exists()
    for address in _addresses(url):
        try:
            with socket.create_connection(address, timeout=timeout):
                return True
        except OSError:
            continue
    return False


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # removed meanwhile: read as the oldest, then skipped when loaded
        return 0.0


def find_server(port: int | None = None, directory: Path | None = None) -> ServerRecord | None:
    """The live server recorded for ``port``, or (no port, or none there) the newest live
    one; ``None`` when none is. Records whose process is gone are removed."""
    folder = directory or run_dir()
    try:
        paths = sorted(folder.glob("server-*.json"), key=_mtime, reverse=True)
    except OSError:  # no directory yet: no server ever recorded
        return None
    live: list[ServerRecord] = []
    for path in paths:
        record = _load(path)
        if record is None:
            continue
        if not _pid_alive(record.pid):
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        if _redis_answers(record.redis_url):
            live.append(record)
    preferred = [r for r in live if r.port == port]
    return next(iter(preferred or live), None)
