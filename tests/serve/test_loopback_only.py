"""The app on one machine listens on loopback only: Ray's GCS, raylet, agents and every
worker, and the Gateway (:data:`voxline.server.LOOPBACK_ONLY`). Before, Ray swapped the
127.0.0.1 it was given for the machine's routable address and its servers listened on
every interface. The one exception is Serve's: each replica's inter-deployment gRPC
server, which Serve binds to every interface with no setting to say otherwise; one port
a replica, nothing else."""

from __future__ import annotations

import ipaddress
import os

import psutil
import pytest

from tests.serve._app import App
from tests.support.processes import descendants

pytestmark = [pytest.mark.serve, pytest.mark.models, pytest.mark.redis]


def listening(pid: int) -> tuple[str, list[tuple[str, int]]]:
    """A process's title and the addresses it listens on (TCP)."""
    try:
        proc = psutil.Process(pid)
        title = " ".join(proc.cmdline())[:120]
        return title, [(c.laddr.ip, c.laddr.port) for c in proc.net_connections(kind="tcp")
                       if c.status == psutil.CONN_LISTEN]
    except psutil.Error:
        return "", []


def loopback(host: str) -> bool:
    address = ipaddress.ip_address(host)  # gRPC's IPv4 on a dual socket: ::ffff:127.0.0.1
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback


def test_the_apps_servers_listen_on_loopback_only(app: App) -> None:
    import ray

    assert ray.util.get_node_ip_address() == "127.0.0.1"  # this process is Ray's driver
    titles: dict[int, str] = {}
    wide: dict[int, list[tuple[str, int]]] = {}
    for pid in descendants(os.getpid()):
        title, addresses = listening(pid)
        titles[pid] = title
        beyond = [(host, port) for host, port in addresses
                  if not loopback(host)]
        if beyond:
            wide[pid] = beyond
    # Ray's node was looked at: its GCS and raylet are among this test's processes
    for server in ("gcs_server", "raylet"):
        assert any(server in title for title in titles.values()), server
    serve_own = {pid: addresses for pid, addresses in wide.items()
                 if "ServeReplica:" in titles[pid] and len(addresses) == 1}
    assert wide == serve_own, {titles[pid]: wide[pid] for pid in wide.keys() - serve_own.keys()}
