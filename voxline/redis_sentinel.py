"""Start a Redis watched by Redis Sentinel on loopback: a primary, its replica, three sentinels.

For trying failover of a standalone log on one machine (``voxline redis-sentinel``) and for
the tests, which SIGKILL the primary under a live session. Every process is a
``redis-server`` of ours (see :mod:`voxline.redis_server`) in one temporary directory,
without persistence; the sentinels are ``redis-server sentinel.conf --sentinel`` with a
generated configuration that monitors the primary as :data:`MASTER_NAME`, a majority of
them agreeing it is down after ``down_after_ms`` of silence. :meth:`RedisSentinelServers.stop`
stops only the processes it started and removes the directory.

Without persistence a restarted server is empty, and an empty server that came back as
the master would have its replica wipe itself on the next sync. So
:meth:`RedisSentinelServers.restart` brings a killed server back as a replica of the
current master, and refuses while the sentinels still name it the master.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from redis import Redis

from schemas import ConfigurationError
from voxline.redis_server import RedisServer, free_port, start_redis_server

T = TypeVar("T")

MASTER_NAME = "voxline"
_DOWN_AFTER_MS = 1000
_FAILOVER_TIMEOUT_MS = 2000
# a replica's first sync starts at once, not after the default 5 s wait
_SERVER_ARGS = ["--repl-diskless-sync-delay", "0"]


@dataclass
class RedisSentinelServers:
    """The servers (the first started as the primary) and sentinels we started;
    :meth:`stop` ends them all."""

    servers: list[RedisServer]
    sentinels: list[RedisServer]
    workdir: Path
    master_name: str = MASTER_NAME
    stopped: bool = field(default=False)

    @property
    def url(self) -> str:
        """``redis+sentinel://127.0.0.1:s1,127.0.0.1:s2,127.0.0.1:s3/voxline``."""
        hosts = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.master_name}"

    def master(self) -> RedisServer:
        """The server the sentinels name the master now (the first that answers)."""
        port = self._named_master_port()
        if port is None:
            raise ConfigurationError("no sentinel answers with the master's address")
        return self._server(port)

    def kill(self, process: RedisServer) -> None:
        """SIGKILL one of our servers or sentinels (a crash, for failover trials); its
        directory stays, so :meth:`restart` brings it back on the same port."""
        if process not in (*self.servers, *self.sentinels):
            raise ValueError("not a server or sentinel of this setup")
        process.process.kill()
        process.process.wait()

    def wait_for_failover(self, old: RedisServer, timeout_s: float = 30.0) -> RedisServer:
        """Wait until the sentinels name another server the master and it acts as one."""
        deadline = time.monotonic() + timeout_s

        def promoted() -> RedisServer | None:
            port = self._named_master_port()
            if port is None or port == old.port:
                return None
            server = self._server(port)
            return server if _role(server.port) == "master" else None

        return _until(deadline, "the sentinels to promote a replica", promoted)

    def restart(self, process: RedisServer, timeout_s: float = 30.0) -> RedisServer:
        """Start a killed server (as a replica of the current master) or sentinel (on its
        rewritten configuration) again, on its port and directory."""
        if process.process.poll() is None:
            raise ValueError("it is still running")
        if process.process.stderr is not None:
            process.process.stderr.close()
        if process in self.sentinels:
            again = start_redis_server(
                port=process.port, workdir=process.workdir, timeout_s=timeout_s,
                config_file=process.workdir / "sentinel.conf", extra_args=["--sentinel"])
            self.sentinels[self.sentinels.index(process)] = again
            return again
        if process not in self.servers:
            raise ValueError("not a server or sentinel of this setup")
        master = self.master()
        if master is process:
            raise ValueError("the sentinels still name it the master: wait for the failover "
                             "(an empty master would wipe its replica)")
        again = start_redis_server(
            port=process.port, workdir=process.workdir, timeout_s=timeout_s,
            config_file=process.workdir / "redis.conf",
            extra_args=[*_SERVER_ARGS, "--replicaof", "127.0.0.1", str(master.port)])
        self.servers[self.servers.index(process)] = again
        return again

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        for process in (*self.sentinels, *self.servers):
            process.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _named_master_port(self) -> int | None:
        for sentinel in self.sentinels:
            if sentinel.process.poll() is not None:
                continue
            with contextlib.suppress(Exception), _client(sentinel.port) as client:
                address = client.sentinel_get_master_addr_by_name(self.master_name)
                if address:
                    return int(address[1])
        return None

    def _server(self, port: int) -> RedisServer:
        for server in self.servers:
            if server.port == port:
                return server
        raise ConfigurationError(f"the sentinels name 127.0.0.1:{port}, not a server of ours")


def start_redis_sentinel(
    *,
    replicas: int = 1,
    sentinels: int = 3,
    down_after_ms: int = _DOWN_AFTER_MS,
    failover_timeout_ms: int = _FAILOVER_TIMEOUT_MS,
    timeout_s: float = 30.0,
) -> RedisSentinelServers:
    """Start a primary, ``replicas`` replicas and ``sentinels`` sentinels (a majority is
    the quorum); returns once every replica is in sync and every sentinel knows them all."""
    if replicas < 1 or sentinels < 1:
        raise ValueError("failover needs a replica and a sentinel")
    workdir = Path(tempfile.mkdtemp(prefix="voxline-redis-sentinel-"))
    setup = RedisSentinelServers([], [], workdir)
    try:
        for index in range(1 + replicas):
            port = free_port()
            serverdir = workdir / str(port)
            serverdir.mkdir()
            (serverdir / "redis.conf").write_text("")  # the sentinels rewrite it on failover
            replicaof = [] if index == 0 else ["--replicaof", "127.0.0.1",
                                                str(setup.servers[0].port)]
            setup.servers.append(start_redis_server(
                port=port, workdir=serverdir, timeout_s=timeout_s,
                config_file=serverdir / "redis.conf", extra_args=[*_SERVER_ARGS, *replicaof]))
        quorum = sentinels // 2 + 1
        for _ in range(sentinels):
            port = free_port()
            sentineldir = workdir / f"sentinel-{port}"
            sentineldir.mkdir()
            name, primary = setup.master_name, setup.servers[0].port
            (sentineldir / "sentinel.conf").write_text(
                f"sentinel monitor {name} 127.0.0.1 {primary} {quorum}\n"
                f"sentinel down-after-milliseconds {name} {down_after_ms}\n"
                f"sentinel failover-timeout {name} {failover_timeout_ms}\n"
                f"sentinel parallel-syncs {name} 1\n")
            setup.sentinels.append(start_redis_server(
                port=port, workdir=sentineldir, timeout_s=timeout_s,
                config_file=sentineldir / "sentinel.conf", extra_args=["--sentinel"]))
        deadline = time.monotonic() + timeout_s
        _until(deadline, "every replica in sync and every sentinel knowing every process",
               lambda: _ready(setup, replicas, sentinels - 1) or None)
    except BaseException:
        setup.stop()
        raise
    return setup


@contextlib.contextmanager
def redis_sentinel(**kwargs: int | float) -> Iterator[RedisSentinelServers]:
    """A Sentinel setup for the duration of the block (tests: a fixture)."""
    setup = start_redis_sentinel(**kwargs)  # type: ignore[arg-type]
    try:
        yield setup
    finally:
        setup.stop()


def _client(port: int) -> Redis:
    return Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=2)


def _role(port: int) -> str | None:
    with contextlib.suppress(Exception), _client(port) as client:
        return str(client.info("replication").get("role"))
    return None


def _ready(setup: RedisSentinelServers, replicas: int, other_sentinels: int) -> bool:
    for server in setup.servers[1:]:
        with _client(server.port) as client:
            if client.info("replication").get("master_link_status") != "up":
                return False
    for sentinel in setup.sentinels:
        with _client(sentinel.port) as client:
            state: dict[str, Any] = client.sentinel_master(setup.master_name)
            if (state.get("num-slaves") != replicas
                    or state.get("num-other-sentinels") != other_sentinels):
                return False
    return True


def _until(deadline: float, what: str, check: Callable[[], T | None]) -> T:
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            found = check()
            if found is not None:
                return found
        time.sleep(0.05)
    raise ConfigurationError(f"the Redis Sentinel setup is not there in time: waiting for {what}")
