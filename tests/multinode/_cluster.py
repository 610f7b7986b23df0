"""A real two-node Ray cluster on one machine, started the way an operator starts one.

``ray start --head`` (the "speech" node: ``voxline_speech: 1``) and ``ray start --address``
(the "llm" node: ``voxline_llm: 1``), each with its own ports and temp dir, then the app
deployed onto it by a separate driver process with the ``cpu-nodes`` profile, which
places stages by those resources. Ray's GCS gets a free port, never 6379. Every port a
node is told to bind lies below the kernel's ephemeral range: one picked inside it can be
taken by an outgoing connection (Ray's own, while it starts) before the node binds it.

Never ``ray stop``: it stops every Ray on the machine, other people's too. Each node's
processes are found by its temp dir (in every daemon's command line) and their
descendants (the workers), and killed by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from voxline.redis_server import free_steady_port
from voxline.server import LOOPBACK_ONLY, WORKER_PRIORITY

ROOT = Path(__file__).resolve().parents[2]
#: the nodes' ports start above the range Ray's own workers bind (10002-19999 by default)
RAY_PORTS_FROM = 20000
RAY = str(Path(sys.executable).with_name("ray"))

DEPLOY = """
import json, sys
import ray
from ray import serve
from deployments.app import build_app
from schemas import Settings
args = json.loads(sys.argv[1])
ray.init(address=args["address"], log_to_driver=False)
options = {"proxy_location": "HeadOnly",
           "http_options": {"host": "127.0.0.1", "port": args["port"]}}
try:
    serve.start(**options)
except TimeoutError:
    # Serve waits 60 s for its proxy (a constant, not a setting), and a loaded run of the
    # suite passed it: the controller goes on starting the proxy, the test waits for the
    # app over HTTP, and a second start finds the running controller and returns
    serve.start(**options)
serve.run(build_app({"profile": "cpu-nodes"}, settings=Settings()), name="voxline",
          route_prefix="/", blocking=False)
"""


@dataclass
class Node:
    name: str
    resources: dict[str, float]
    num_cpus: int
    temp_dir: Path
    manager_port: int

    def processes(self) -> list[psutil.Process]:
        """This node's daemons and, below them, its workers (replicas among them)."""
        found: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter():
            try:
                if str(self.temp_dir) in " ".join(proc.cmdline()):
                    found[proc.pid] = proc
                    for child in proc.children(recursive=True):
                        found[child.pid] = child
            except psutil.Error:
                continue
        return list(found.values())

    def raylet(self) -> psutil.Process | None:
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                if "raylet" in proc.name() and f"--node_manager_port={self.manager_port}" \
                        in " ".join(proc.cmdline()):
                    return proc
        return None

    def replicas(self, app: str = "voxline") -> dict[str, int]:
        """Deployment name → live replica processes on this node."""
        raylet = self.raylet()
        counts: dict[str, int] = {}
        if raylet is None:
            return counts
        with contextlib.suppress(psutil.Error):
            for proc in raylet.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    title = " ".join(proc.cmdline()[:1])
                    marker = f"ServeReplica:{app}:"
                    if marker in title and proc.status() != psutil.STATUS_ZOMBIE:
                        # a replica running a call says which in its title too:
                        # "ServeReplica:voxline:Gateway.handle_request_with_rejection"
                        name = title.split(marker, 1)[1].split()[0].split(".", 1)[0]
                        counts[name] = counts.get(name, 0) + 1
        return counts

    def kill(self) -> None:
        """SIGKILL every process of this node: the node is lost, as when its machine dies."""
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGKILL)
        psutil.wait_procs(self.processes(), timeout=10)


class LocalCluster:
    """Head ("speech") and worker ("llm") nodes, the app on them; see the module doc."""

    def __init__(self, env: dict[str, str]) -> None:
        # short: Ray's socket paths live under the temp dir (Unix sockets allow ~107 bytes)
        self.base = Path(tempfile.mkdtemp(prefix="vxmn-", dir="/tmp"))
        #: every port given to a node or the app so far (none is handed out twice)
        self.ports: set[int] = set()
        self.gcs_port = self._port()
        self.http_port = self._port()
        # token authentication with a token of this cluster's own, in the environment of
        # every node and driver (never ~/.ray/auth_token, which other clusters may share)
        # Serve kills a proxy not ready within 5 s (its default): seen once in a loaded run
        # of the suite (the other worker busy), killed before serve.start returned; the
        # replicas at our priority, as the run command starts them
        # and without LOOPBACK_ONLY (the suite's, tests/conftest.py): a node joining a
        # head is what it rules out (`ray start --address` refuses to)
        inherited = {k: v for k, v in os.environ.items() if k not in LOOPBACK_ONLY}
        self.env = {**inherited, **env, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0",
                    "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
                    "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "30", **WORKER_PRIORITY}
        self.head = Node("speech", {"voxline_speech": 1}, 2, self.base / "h",
                         self._port())
        self.worker = Node("llm", {"voxline_llm": 1}, 1, self.base / "w",
                           self._port())

    def _port(self) -> int:
        return free_steady_port(self.ports, floor=RAY_PORTS_FROM)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def _ray_start(self, node: Node, *first: str) -> None:
        ports = {"--node-manager-port": node.manager_port,
                 **{flag: self._port() for flag in (
                     "--object-manager-port", "--dashboard-agent-listen-port",
                     "--dashboard-agent-grpc-port", "--metrics-export-port",
                     "--runtime-env-agent-port")}}
        node.temp_dir.mkdir(parents=True, exist_ok=True)
        args = [RAY, "start", *first, "--node-ip-address=127.0.0.1",
                f"--num-cpus={node.num_cpus}", f"--resources={json.dumps(node.resources)}",
                "--disable-usage-stats", f"--temp-dir={node.temp_dir}",
                *(f"{flag}={port}" for flag, port in ports.items())]
        run_or_say_why(args, env=self.env, cwd=ROOT, timeout=180)

    def start_head(self) -> None:
        self._ray_start(self.head, "--head", f"--port={self.gcs_port}",
                        "--include-dashboard=false",
                        f"--ray-client-server-port={self._port()}")

    def start_worker(self) -> None:
        self._ray_start(self.worker, f"--address={self.address}")

    def deploy(self) -> None:
        run_or_say_why([sys.executable, "-c", DEPLOY,
                        json.dumps({"address": self.address, "port": self.http_port})],
                       env=self.env, cwd=ROOT, timeout=300)

    def stop(self) -> None:
        for node in (self.worker, self.head):
            node.kill()
        shutil.rmtree(self.base, ignore_errors=True)


def run_or_say_why(args: list[str], **options: object) -> None:
    """Run a start-up command; if it fails, fail with the end of what it wrote to stderr
    (a CalledProcessError shows only the command line)."""
    done = subprocess.run(args, **options, stdout=subprocess.DEVNULL,  # type: ignore[call-overload]
                          stderr=subprocess.PIPE, text=True, errors="replace")
    if done.returncode:
        raise RuntimeError(f"{' '.join(args[:3])} ... exited with {done.returncode}:\n"
                           f"{done.stderr[-3000:]}")


def wait_for(check: object, timeout_s: float, what: str) -> None:
    """Poll ``check()`` until true (a hang guard: the bound is not what is tested)."""
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} after {timeout_s:.0f} s")
        time.sleep(1.0)
