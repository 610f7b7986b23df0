"""Adding a shard to a live Redis Cluster moves whole sessions.

Every key of a session, and its partition's feed, carries the partition's hash tag: one
slot. So stock ``redis-cli --cluster add-node`` and ``reshard`` (which
moves each source's lowest-numbered slots) move partitions whole, and with them their
sessions and feed (consumer groups included), while a writer keeps appending to them.
This is the procedure of docs/operations.md, "Add a shard", on a cluster of our own
(3 primaries without replicas, then a fourth), never the shared fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from redis import Redis as SyncRedis
from redis.crc import key_slot

from pipeline.log import EventLog, FeedReader, create_redis
from schemas import EventLogError, EventLogSettings, InputText
from tests.support.event_samples import typed_text as text
from voxline.redis_cluster import RedisClusterServers, free_cluster_port, start_redis_cluster
from voxline.redis_server import start_redis_server

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(not shutil.which("redis-cli"), reason="needs Debian's redis-cli"),
]

PREFIX = "voxtest:reshard"
SESSIONS = [f"s{i}" for i in range(64)]



@pytest.fixture
def cluster() -> Iterator[RedisClusterServers]:
    cluster = start_redis_cluster(primaries=3, replicas_per_primary=0)
    try:
        yield cluster
    finally:
        cluster.stop()


def cli(*args: str) -> str:
    run = subprocess.run(["redis-cli", *args], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return run.stdout


def known(peer: SyncRedis) -> list[dict[str, Any]]:
    """The nodes ``peer`` knows (redis-py parses CLUSTER NODES into address -> node)."""
    nodes: dict[str, dict[str, Any]] = peer.execute_command("CLUSTER NODES")
    return list(nodes.values())


def wait_known(ports: list[int], node: str, timeout_s: float = 30.0) -> None:
    """Until every node knows ``node``, connected: a node just added takes a moment to be
    met by all (a slot moved to it before is refused: "I don't know about node")."""
    deadline = time.monotonic() + timeout_s
    for port in ports:
        with SyncRedis(port=port, decode_responses=True) as peer:
            while not any(info["node_id"] == node and info["connected"]
                          for info in known(peer)):
                assert time.monotonic() < deadline, f"{port} never met {node}"
                time.sleep(0.1)


def wait_agreed(port: int, new: int, timeout_s: float = 30.0) -> None:
    """Until ``redis-cli --cluster check`` passes (every node has the same slot map; a
    new node learns it a moment after it is met), which ``reshard`` requires, and the new
    node counts the cluster as up: until then it refuses the keys of a moved slot with
    CLUSTERDOWN."""
    deadline = time.monotonic() + timeout_s
    while subprocess.run(["redis-cli", "--cluster", "check", f"127.0.0.1:{port}"],
                         capture_output=True, timeout=30).returncode != 0:
        assert time.monotonic() < deadline, "the nodes never agreed on the slots"
        time.sleep(0.2)
    with SyncRedis(port=new, decode_responses=True) as node:
        while node.cluster("INFO")["cluster_state"] != "ok":
            assert time.monotonic() < deadline, "the new node never saw the cluster up"
            time.sleep(0.1)


def owners(port: int) -> dict[int, str]:
    """slot -> the node id of its primary."""
    with SyncRedis(port=port, decode_responses=True) as node:
        ranges: Any = node.execute_command("CLUSTER SLOTS")
    return {slot: str(r[2][2]) for r in ranges for slot in range(int(r[0]), int(r[1]) + 1)}


def node_id(port: int) -> str:
    with SyncRedis(port=port, decode_responses=True) as node:
        return str(node.execute_command("CLUSTER MYID"))


async def keep_appending(log: EventLog, sessions: list[str], stop: asyncio.Event,
                         written: dict[str, list[str]], errors: Counter[str]) -> None:
    """A writer that does not pause for the move: each event retried with its stamped id
    until the log takes it (as the Gateway retries a transient append)."""
    n = 0
    while not stop.is_set():
        session = sessions[n % len(sessions)]
        [event] = log.stamp([text(session, f"during {n}")])
        for _ in range(100):
            try:
                await log.append_batch([event])
                written[session].append(f"during {n}")
                break
            except EventLogError as exc:
                errors[exc.message[:80]] += 1
                await asyncio.sleep(0.02)
        n += 1
        await asyncio.sleep(0.002)


async def test_a_new_shard_takes_whole_partitions_while_sessions_go_on(
    cluster: RedisClusterServers,
) -> None:
    redis = create_redis(cluster.url)
    log = EventLog(redis, EventLogSettings(key_prefix=PREFIX))
    keys = log.keys
    try:
        written: dict[str, list[str]] = {s: [] for s in SESSIONS}
        for session in SESSIONS:
            for k in range(2):
                await log.append(text(session, f"before {k}"))
                written[session].append(f"before {k}")
        reader = FeedReader(redis, log.feed_keys, "workers", "c1", log.settings)
        await reader.ensure_group("0")

        # a fourth primary, empty, joins (`redis-cli --cluster add-node NEW EXISTING`)
        first = cluster.primaries[0].port
        workdir = cluster.workdir / "new"
        workdir.mkdir()
        new = start_redis_server(port=free_cluster_port(), workdir=workdir,
                                 extra_args=cluster.node_args)
        cluster.primaries.append(new)  # stopped with the cluster
        cli("--cluster", "add-node", f"127.0.0.1:{new.port}", f"127.0.0.1:{first}")
        wait_known([n.port for n in cluster.primaries], node_id(new.port))
        wait_agreed(first, new.port)

        # the source with the most partitions gives its two lowest ones: `reshard` moves a
        # source's lowest slots, so K = the slots it owns up to the second partition's
        slot_of = {n: key_slot(keys.feed(n).encode()) for n in range(keys.partitions)}
        before = owners(first)
        by_owner: dict[str, list[int]] = {}
        for n, slot in slot_of.items():
            by_owner.setdefault(before[slot], []).append(n)
        source, parts = max(by_owner.items(), key=lambda item: len(item[1]))
        moving = sorted(parts, key=lambda n: slot_of[n])[:2]
        last = slot_of[moving[-1]]
        count = sum(1 for slot, owner in before.items() if owner == source and slot <= last)
        movers = [s for s in SESSIONS if keys.partition(s) in moving]
        assert movers, "some sessions live in the partitions that move"

        stop = asyncio.Event()
        errors: Counter[str] = Counter()
        writer = asyncio.create_task(keep_appending(log, movers, stop, written, errors))
        try:
            await asyncio.sleep(0.2)
            await asyncio.to_thread(
                cli, "--cluster", "reshard", f"127.0.0.1:{first}", "--cluster-from", source,
                "--cluster-to", node_id(new.port), "--cluster-slots", str(count),
                "--cluster-yes")
            await asyncio.sleep(0.2)
        finally:
            stop.set()
            await writer

        after = owners(first)
        assert {after[slot_of[n]] for n in moving} == {node_id(new.port)}
        with SyncRedis(port=new.port) as node:  # every key of a moved partition is there
            for n in moving:
                there = node.execute_command("CLUSTER COUNTKEYSINSLOT", slot_of[n])
                sessions_in = sum(1 for s in SESSIONS if keys.partition(s) == n)
                # its sessions, its feed and its changes stream
                assert there == sessions_in + 2, (n, there)
                assert node.exists(keys.changes(n))
                assert node.xinfo_groups(keys.feed(n))[0]["name"] == b"workers"
        assert sum(len(written[s]) for s in movers) > 2 * len(movers), "the writer wrote"

        # a client that knew the old map and a fresh one both read every session whole,
        # in order, nothing twice
        fresh = create_redis(cluster.url)
        try:
            for client in (redis, fresh):
                reading = EventLog(client, log.settings)
                for session in SESSIONS:
                    texts = [e.data.text for e in await reading.read_all(session)
                             if isinstance(e, InputText)]
                    assert texts == written[session], session
        finally:
            await fresh.aclose()
        print("transient append errors during the move:", dict(errors))
    finally:
        with contextlib.suppress(Exception):
            await redis.aclose()
