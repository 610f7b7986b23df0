"""``cluster/redis-cluster.yaml``: the Redis Cluster manifest, checked by running it.

A manifest is only read by Kubernetes, so nothing notices a node option Redis refuses,
a script that cannot form the cluster twice, or a pod spec that lets a primary and its
replica share a machine. The structure is checked here from the parsed YAML; its
``redis.conf`` + ``cluster.conf`` and its three scripts are run for real: six nodes
started by the pods' own ``start.sh`` on loopback (Debian's redis-server, our processes,
a temporary directory, only the ``dir`` of ``redis.conf`` pointed there), formed by the
Job's ``form.sh``, used by Voxline through a ``redis+cluster://`` URL with the password,
crashed together and started again on new addresses (a cluster whose pods all moved).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from redis import Redis

from pipeline.log import EventLog, create_redis
from schemas import EventLogSettings, InputText, InputTextData
from voxline.redis_cluster import free_cluster_port

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "cluster" / "redis-cluster.yaml"
REDIS_CONF = ROOT / "cluster" / "redis.conf"
LABELS = {"app.kubernetes.io/name": "voxline-redis-cluster"}
PASSWORD = "manifest-test"
NODES = 6

needs_redis_tools = pytest.mark.skipif(
    not (shutil.which("redis-server") and shutil.which("redis-cli") and shutil.which("getent")),
    reason="needs Debian's redis-server and redis-cli (the image's tools)")


def documents() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    kinds = [d["kind"] for d in docs]
    assert len(kinds) == len(set(kinds)), kinds
    return {d["kind"]: d for d in docs}


def files() -> dict[str, str]:
    data: dict[str, str] = documents()["ConfigMap"]["data"]
    return data


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = documents()["StatefulSet"]["spec"]["template"]["spec"]
    return spec


def conf_lines(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        assert "#" not in line, f"Redis allows no trailing comment: {raw!r}"
        key, *args = line.split()
        settings[key.lower()] = args
    return settings


# ---- the manifest, parsed ------------------------------------------------------------------


def test_six_pods_three_shards_with_a_replica_each() -> None:
    docs = documents()
    assert set(docs) == {"ConfigMap", "Service", "StatefulSet", "PodDisruptionBudget", "Job"}
    statefulset = docs["StatefulSet"]["spec"]
    assert statefulset["replicas"] == NODES
    assert statefulset["serviceName"] == docs["Service"]["metadata"]["name"]
    assert statefulset["selector"]["matchLabels"] == LABELS
    assert statefulset["template"]["metadata"]["labels"] == LABELS
    form = files()["form.sh"]
    assert 'NODES="${NODES:-6}"' in form and 'REPLICAS="${REPLICAS:-1}"' in form
    assert "--cluster create" in form and '--cluster-replicas "$REPLICAS"' in form
    job = docs["Job"]["spec"]["template"]["spec"]
    assert job["containers"][0]["command"] == ["sh", "/scripts/form.sh"]


def test_no_two_nodes_on_one_machine_and_zones_spread_where_possible() -> None:
    spec = pod_spec()
    [required] = spec["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]
    assert required["topologyKey"] == "kubernetes.io/hostname"
    assert required["labelSelector"]["matchLabels"] == LABELS
    [spread] = spec["topologySpreadConstraints"]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone"
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"  # preferred, not required
    assert spread["labelSelector"]["matchLabels"] == LABELS


def test_every_node_persists_to_a_volume_of_its_own() -> None:
    statefulset = documents()["StatefulSet"]["spec"]
    [claim] = statefulset["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    [container] = statefulset["template"]["spec"]["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == "/data"
    # the standalone Redis's own redis.conf (persistence, noeviction) is every node's base
    volumes = {v["name"]: v for v in statefulset["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "voxline-redis-config"
    assert mounts["config"] == "/etc/redis" and mounts["scripts"] == "/scripts"
    base = conf_lines(REDIS_CONF.read_text())
    assert base["appendonly"] == ["yes"] and base["appendfsync"] == ["everysec"]
    assert base["dir"] == ["/data"]
    cluster = conf_lines(files()["cluster.conf"])
    assert not {"appendonly", "appendfsync", "dir", "maxmemory-policy"} & set(cluster)


def test_cluster_options_bound_the_failover_and_fit_the_pod() -> None:
    conf = conf_lines(files()["cluster.conf"])
    assert conf["cluster-enabled"] == ["yes"]
    assert conf["cluster-config-file"] == ["nodes.conf"]
    assert 1000 <= int(conf["cluster-node-timeout"][0]) <= 15000
    assert conf["cluster-require-full-coverage"] == ["no"]  # one shard down stops only it
    [container] = pod_spec()["containers"]
    limit_gi = int(container["resources"]["limits"]["memory"].removesuffix("Gi"))
    maxmemory_gb = int(conf["maxmemory"][0].removesuffix("gb"))
    assert maxmemory_gb <= 0.8 * limit_gi, "fork headroom: maxmemory ~75% of the limit"


def test_the_service_is_headless_and_disruptions_go_one_pod_at_a_time() -> None:
    docs = documents()
    service = docs["Service"]["spec"]
    assert service["clusterIP"] == "None" and service["publishNotReadyAddresses"] is True
    assert {p["port"] for p in service["ports"]} == {6379, 16379}  # clients and the bus
    pdb = docs["PodDisruptionBudget"]["spec"]
    assert pdb["maxUnavailable"] == 1 and pdb["selector"]["matchLabels"] == LABELS


def test_the_password_comes_from_a_secret_only() -> None:
    docs = documents()
    for spec in (pod_spec(), docs["Job"]["spec"]["template"]["spec"]):
        env = {e["name"]: e for e in spec["containers"][0]["env"]}
        assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "voxline-redis-auth"
    assert PASSWORD not in MANIFEST.read_text()
    assert "requirepass" not in conf_lines(files()["cluster.conf"])


def test_the_scripts_are_valid_sh() -> None:
    for name in ("start.sh", "form.sh", "prestop.sh"):
        run = subprocess.run(["sh", "-n"], input=files()[name], text=True, capture_output=True)
        assert run.returncode == 0, (name, run.stderr)


def test_the_urls_in_the_manifest_and_the_readme_name_its_pods() -> None:
    url = ("redis+cluster://:PASSWORD@voxline-redis-cluster-0.voxline-redis-cluster:6379,"
           "voxline-redis-cluster-1.voxline-redis-cluster:6379,"
           "voxline-redis-cluster-2.voxline-redis-cluster:6379/")
    assert url in MANIFEST.read_text()
    assert url in (ROOT / "docs" / "operations.md").read_text()


# ---- the manifest, run on loopback ---------------------------------------------------------


@dataclass
class Pods:
    """Six "pods" on loopback: each a redis-server started by the manifest's start.sh."""

    workdir: Path
    ports: list[int]
    ip: str = "127.0.0.1"
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def script(self, name: str) -> Path:
        return self.workdir / name

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "REDIS_PASSWORD": PASSWORD, **extra}

    def start(self, ip: str) -> None:
        """Start every node on ``ip`` (its "pod IP"), the data directories kept."""
        self.ip = ip
        self.processes = []
        for index, port in enumerate(self.ports):
            data = self.workdir / f"node{index}"
            data.mkdir(exist_ok=True)
            self.processes.append(subprocess.Popen(
                ["sh", str(self.script("start.sh")), "--bind", ip, "--daemonize", "no",
                 "--logfile", str(data / "redis.log")],
                env=self.env(DATA=str(data), PORT=str(port), POD_IP=ip, NODE_HOSTNAME=ip,
                             REDIS_CONF=str(self.script("redis.conf")),
                             CLUSTER_CONF=str(self.script("cluster.conf"))),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                start_new_session=True))
        deadline = time.monotonic() + 30
        for index, process in enumerate(self.processes):
            while not self.answers(index):
                if process.poll() is not None:
                    log = self.workdir / f"node{index}" / "redis.log"
                    tail = log.read_text()[-800:] if log.exists() else ""
                    err = process.stderr.read().decode() if process.stderr else ""
                    raise AssertionError(f"node {index} exited: {err}{tail}")
                assert time.monotonic() < deadline, f"node {index} did not answer"
                time.sleep(0.05)

    def client(self, index: int) -> Redis:
        return Redis(host=self.ip, port=self.ports[index], password=PASSWORD,
                     decode_responses=True, socket_timeout=5)

    def answers(self, index: int) -> bool:
        try:
            with self.client(index) as client:
                return bool(client.ping())
        except Exception:
            return False

    def form(self) -> subprocess.CompletedProcess[str]:
        addresses = " ".join(f"{self.ip}:{port}" for port in self.ports)
        return subprocess.run(["sh", str(self.script("form.sh"))], text=True,
                              capture_output=True, timeout=240,
                              env=self.env(NODE_ADDRESSES=addresses))

    def prestop(self, index: int) -> None:
        subprocess.run(["sh", str(self.script("prestop.sh"))], check=True, timeout=60,
                       env=self.env(POD_IP=self.ip, PORT=str(self.ports[index])))

    def replica_online(self, index: int, timeout_s: float = 30.0) -> None:
        """Wait until primary ``index`` has a replica in sync (prestop.sh hands over to
        an online replica only: right after the cluster forms, one may still be syncing)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.client(index) as client:
                info = client.info("replication")
            if info.get("slave0", {}).get("state") == "online":
                return
            time.sleep(0.2)
        raise AssertionError(f"node {index} has no replica online after {timeout_s:.0f} s")

    def roles(self) -> dict[int, str]:
        roles = {}
        for index in range(len(self.ports)):
            with self.client(index) as client:
                roles[index] = client.info("replication")["role"]
        return roles

    def slot_owners(self) -> dict[tuple[int, int], str]:
        """(first slot, last slot) -> the primary's node id."""
        with self.client(0) as client:
            slots: Any = client.execute_command("CLUSTER SLOTS")
        return {(int(r[0]), int(r[1])): str(r[2][2]) for r in slots}

    @property
    def url(self) -> str:
        hosts = ",".join(f"{self.ip}:{port}" for port in self.ports[:3])
        return f"redis+cluster://:{PASSWORD}@{hosts}/"

    def stop(self, sig: int = signal.SIGTERM) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(sig)
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stderr is not None:
                process.stderr.close()


@pytest.fixture
def pods(tmp_path: Path) -> Iterator[Pods]:
    """The manifest's files in a directory; ``redis.conf`` as is but for ``dir``, which
    Redis enters while reading the file (before start.sh's ``--dir`` could move it)."""
    for name, text in files().items():
        (tmp_path / name).write_text(text)
    base = REDIS_CONF.read_text()
    assert "\ndir /data\n" in base
    (tmp_path / "redis.conf").write_text(base.replace("\ndir /data\n", f"\ndir {tmp_path}\n"))
    taken: set[int] = set()
    pods = Pods(tmp_path, [free_cluster_port(taken) for _ in range(NODES)])
    try:
        yield pods
    finally:
        pods.stop(signal.SIGKILL)


def text(session: str, body: str) -> InputText:
    return InputText(session_id=session, data=InputTextData(text=body))


async def append_and_read(url: str, prefix: str, session: str, body: str) -> list[str]:
    """Append one event (acknowledged by a replica: WAIT 1; a replica still in its first
    sync gets the 5 s), return the session's texts."""
    redis = create_redis(url)
    try:
        log = EventLog(redis, EventLogSettings(key_prefix=prefix, replica_acks=1,
                                               replica_ack_timeout_ms=5000))
        if body:
            await log.append(text(session, body))
        return [e.data.text for e in await log.read_all(session)
                if isinstance(e, InputText)]
    finally:
        await redis.aclose()


@pytest.mark.redis
@needs_redis_tools
async def test_the_pods_boot_with_its_options_and_the_job_forms_the_cluster_once(
    pods: Pods,
) -> None:
    pods.start("127.0.0.1")
    with pods.client(0) as node:
        assert node.config_get("cluster-node-timeout") == {
            "cluster-node-timeout": conf_lines(files()["cluster.conf"])[
                "cluster-node-timeout"][0]}
        assert node.config_get("appendfsync") == {"appendfsync": "everysec"}
        assert node.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    formed = pods.form()
    assert formed.returncode == 0, formed.stdout + formed.stderr
    assert "forming a cluster" in formed.stdout
    assert sorted(pods.roles().values()) == ["master"] * 3 + ["slave"] * 3
    owners = pods.slot_owners()
    assert sum(last - first + 1 for first, last in owners) == 16384

    again = pods.form()  # the Job run a second time: nothing changes
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already formed" in again.stdout
    assert pods.slot_owners() == owners

    assert await append_and_read(pods.url, "voxtest:manifest", "s1", "kept") == ["kept"]
    assert all((pods.workdir / f"node{i}" / "appendonlydir").is_dir() for i in range(NODES))

    # a primary's preStop hands its slots to its replica before the pod stops
    primary = next(i for i, role in pods.roles().items() if role == "master")
    pods.replica_online(primary)
    pods.prestop(primary)
    assert pods.roles()[primary] == "slave"
    assert await append_and_read(pods.url, "voxtest:manifest", "s1", "") == ["kept"]


@pytest.mark.redis
@needs_redis_tools
async def test_every_pod_crashing_and_coming_back_on_new_ips_keeps_acknowledged_events(
    pods: Pods,
) -> None:
    """Every node SIGKILLed at once, then started on another address (pods rescheduled
    with new IPs): start.sh rewrites each node's own address, the Job run again
    re-introduces them, and what a replica acknowledged is all there."""
    pods.start("127.0.0.1")
    formed = pods.form()
    assert formed.returncode == 0, formed.stdout + formed.stderr
    sessions = [f"s{i}" for i in range(12)]  # over several partitions, so every shard
    for session in sessions:
        assert await append_and_read(pods.url, "voxtest:moved", session, session) == [session]

    pods.stop(signal.SIGKILL)
    pods.start("127.0.0.2")
    rejoined = pods.form()
    assert rejoined.returncode == 0, rejoined.stdout + rejoined.stderr
    assert "already formed" in rejoined.stdout
    assert sorted(pods.roles().values()) == ["master"] * 3 + ["slave"] * 3
    for session in sessions:
        assert await append_and_read(pods.url, "voxtest:moved", session, "") == [session]
