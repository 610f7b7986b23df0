"""SIGTERM to ``voxline serve`` (what Kubernetes and systemd send), or SIGINT (Ctrl-C): a
drain, then a clean stop.

A child process of its own (not tests/faults/conftest.py's shared app: this one is
stopped by the test), with its own Redis (``VOXLINE_REDIS_URL`` unset: serve starts one)
and free ports. A socket has a voice reply running when the signal comes; then:

* a new session is refused while the server drains: 503 ``server_draining``;
* the running socket gets its reply's end, then is closed with 1012 (resume elsewhere);
* the process exits with 0, having written no traceback and none of the native stack
  dumps of Ray's own signal handler ("*** SIGTERM received", ``@ 0x...`` frames);
* no process of its tree (Ray's, the Redis it started) outlives it. The tree is taken
  with psutil before the signal, and only those processes are looked at: other Rays and
  Redises on the machine are not ours.

SIGTERM runs the default way in (the Gateway replica listening on the port itself), SIGINT
the other (Serve's proxy in front, ``VOXLINE_INGRESS=proxy``); each checks which it got.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest
from websockets.exceptions import ConnectionClosed

from tests.faults._processes import ROOT, stop_child
from voxline.client import VoxlineClient
from voxline.redis_server import free_port
from voxline.server import wait_ready

pytestmark = [pytest.mark.serve, pytest.mark.models]

STORY = "Tell me a long story about a dragon who lives in the mountains."
LONG = {"temperature": 0.0, "max_tokens": 160, "seed": 1}
#: what Ray's native signal handler writes (abseil's failure signal handler)
NATIVE_DUMP = re.compile(r"\*\*\* SIG[A-Z]+ received|^\s*@\s+0x[0-9a-f]+", re.MULTILINE)
EXIT_S = 120.0  # a hang guard, not a measure: the grace (20 s) + stopping Serve and Ray


def start_serve(workdir: Path, ingress: str = "auto"
                ) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("VOXLINE_") and not k.startswith("RAY_ADDRESS")}
    env |= {"PYTHONPATH": str(ROOT), "VOXLINE_STT__MODEL": "whisper-tiny.en",
            "VOXLINE_METRICS_PORT": str(free_port()), "RAY_USAGE_STATS_ENABLED": "0",
            "VOXLINE_INGRESS": ingress}
    stderr_path = workdir / "stderr.log"
    with (workdir / "stdout.log").open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-c", "from voxline.cli import main; main()", "serve",
             "--no-demo", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            start_new_session=True)
    return process, f"http://127.0.0.1:{port}", stderr_path


def process_tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def command_lines(processes: list[psutil.Process]) -> list[str]:
    """The command lines of those of ``processes`` still running."""
    lines = []
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            lines.append(" ".join(proc.cmdline()))
    return lines


def listening_on(processes: list[psutil.Process], port: int) -> str:
    """The command line of the process of ``processes`` that listens on ``port``."""
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port
                   for c in proc.net_connections(kind="tcp")):
                return " ".join(proc.cmdline())
    raise AssertionError(f"no process of the server listens on {port}")


def alive(processes: list[psutil.Process]) -> list[str]:
    """Those still running (``is_running`` compares the start time too: a reused pid is
    another process, not ours)."""
    left = []
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{proc.pid} {' '.join(proc.cmdline()[:3])}")
    return left


async def refused_while_draining(url: str) -> dict[str, object]:
    """POST /v1/sessions until the drain answers it (bounded).

    Each POST on a connection of its own: a draining server closes its idle keep-alive
    connections, and a POST sent on one as it closes is lost unanswered (``httpx.ReadError``
    in a clean-clone run through Serve's proxy). A client may retry only idempotent requests
    on such a close, so what is checked is a fresh request's answer."""
    async with httpx.AsyncClient(base_url=url, timeout=10,
                                 headers={"connection": "close"}) as http:
        for _ in range(200):
            response = await http.post("/v1/sessions", json={})
            if response.status_code == 503:
                assert response.headers.get("retry-after")
                error: dict[str, object] = response.json()["error"]
                return error
            await asyncio.sleep(0.05)
    raise AssertionError("the server never refused a new session")


#: each signal with one way in (voxline.ingress): what listens on the port is the Gateway
#: replica itself (the one-machine default) or Serve's proxy, and both drain alike
WAYS_IN = {"direct": "ServeReplica:voxline:Gateway", "proxy": "ProxyActor"}


@pytest.mark.timeout(900)
@pytest.mark.parametrize(("signum", "ingress"), [(signal.SIGTERM, "auto"),
                                                 (signal.SIGINT, "proxy")],
                         ids=["SIGTERM-direct", "SIGINT-proxy"])
async def test_a_stop_signal_drains_then_stops_everything_with_exit_code_0(
    tmp_path: Path, signum: signal.Signals, ingress: str
) -> None:
    process, url, stderr_path = start_serve(tmp_path, ingress)
    tree: list[psutil.Process] = []
    try:
        try:
            await asyncio.to_thread(wait_ready, url, 600, lambda _: None)
        except TimeoutError:
            raise AssertionError(stderr_path.read_text(errors="replace")[-3000:]) from None
        tree = process_tree(process.pid)
        assert any("redis-server" in " ".join(p.cmdline()) for p in tree[1:]), \
            "serve started no Redis of its own"
        way_in = WAYS_IN["direct" if ingress == "auto" else ingress]
        assert way_in in listening_on(tree, int(url.rsplit(":", 1)[1]))
        proxies = [line for line in command_lines(tree) if "ProxyActor" in line]
        assert bool(proxies) == (ingress == "proxy")  # direct: Serve runs no proxy at all
        async with VoxlineClient(url, timeout=60) as client:
            session = await client.create_session(sampling=LONG, preemptive_turns=False)
            async with client.connect(session, resume_for_s=0) as conn:  # see the 1012
                await conn.send_text(STORY)
                seen: list[str] = []
                events = conn.events()
                async for event in events:  # the reply is under way
                    seen.append(event.type)
                    if event.type == "response.text.delta":
                        break
                process.send_signal(signum)
                error = await refused_while_draining(url)
                assert error["code"] == "server_draining", error
                with pytest.raises(ConnectionClosed):
                    async with asyncio.timeout(EXIT_S):
                        async for event in events:
                            seen.append(event.type)
                assert conn.ws is not None
                assert (conn.ws.close_code, conn.ws.close_reason) == (1012, "server_draining")
                assert "response.done" in seen, seen  # within the grace: it finished
        code = await asyncio.to_thread(process.wait, EXIT_S)
        stderr = stderr_path.read_text(errors="replace")
        assert code == 0, stderr[-3000:]
        assert "Traceback" not in stderr, stderr[-3000:]
        assert not NATIVE_DUMP.search(stderr), stderr[-3000:]
        for _ in range(60):  # Ray's last processes may go a moment after (30 s at most)
            if not (left := alive(tree)):
                break
            await asyncio.sleep(0.5)
        assert not left, left
    finally:
        stop_child(process)
        for proc in tree[1:]:  # a failed stop: what this test's child started, by pid
            with contextlib.suppress(psutil.Error):
                if proc.is_running():
                    proc.kill()
