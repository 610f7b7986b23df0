"""How clients reach the Gateway when the run command starts the app (``VOXLINE_INGRESS``).

``proxy``: Ray Serve's HTTP proxy listens on ``host:port`` and hands every request to the
Gateway replica. A WebSocket is one long request, and the replica pulls each batch of its
messages from the proxy with an actor call: a voice session's 20–32 ms audio frames cost a
hop each, in two processes. ``direct``: Ray Serve's direct ingress, where the ingress
replica runs its own HTTP server and no proxy stands between it and its clients; the run
command gives the Gateway exactly ``host:port`` (the range Serve allocates replica ports
from is that one port), and Serve's proxy, which Serve still starts on the head node,
listens on a free loopback port of its own that nobody is told about.

Direct ingress has one port for one replica, so it is for the profiles whose Gateway is one
replica that never scales (``cpu``, ``cpu-autoscale``): ``auto`` picks it there, and
``proxy`` elsewhere (the GPU profile's Gateways scale behind Serve's proxy, or behind Ray's
HAProxy ingress on a cluster: ``cluster/README.md``). Measured on the 2-core machine
(``loadtests/capacity.py``, 3 voice sessions; README): the whole server's CPU per voice
turn fell by about a quarter, mostly the proxy's and the Gateway's.

The variables are Ray Serve's own (``ray.serve._private.constants``); Serve reads them in
each of its processes when it starts, so they are set for ``ray.init`` (every process of
the app inherits them) and taken back from this process right after. Without a load
balancer in front, a stopping Gateway has no one to drain from and a restarted one may take
its port back at once: the quarantine and the minimum draining period go to zero.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator, Mapping
from typing import Literal

from schemas import ConfigurationError, Settings

__all__ = ["Ingress", "check_port_free", "ingress_environment", "resolve_ingress",
           "scoped_environment"]

Ingress = Literal["direct", "proxy"]


def direct_capable(profile: str) -> bool:
    """The profile's Gateway is one replica that never scales: it can own the port."""
    from deployments.app import PROFILES

    gateway = PROFILES[profile]["Gateway"]
    return gateway.get("num_replicas") == 1 and "autoscaling_config" not in gateway


def resolve_ingress(settings: Settings, profile: str) -> Ingress:
    """``settings.ingress`` for ``profile``; ``direct`` where the profile cannot have it is
    a configuration error naming the setting."""
    if settings.ingress == "proxy":
        return "proxy"
    capable = direct_capable(profile)
    if settings.ingress == "direct" and not capable:
        raise ConfigurationError(
            f"VOXLINE_INGRESS=direct needs a profile with one Gateway replica that never "
            f"scales (cpu, cpu-autoscale); the {profile} profile's Gateways scale behind "
            "Serve's proxy: use VOXLINE_INGRESS=proxy or auto",
            setting="VOXLINE_INGRESS",
        )
    return "direct" if capable else "proxy"


def ingress_environment(ingress: Ingress, port: int) -> dict[str, str]:
    """Ray Serve's variables for ``ingress`` with the Gateway on ``port``."""
    if ingress == "proxy":
        return {}
    return {
        "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
        # the range Serve hands ingress replicas their ports from: [min, max)
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(port),
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(port + 1),
        # no load balancer to tell: a replica killed and restarted takes the port back
        # at once (Serve's default holds it 150 s), and a stopping one waits for nothing
        "RAY_SERVE_PORT_QUARANTINE_S": "0",
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "0",
    }


@contextlib.contextmanager
def scoped_environment(env: Mapping[str, str]) -> Iterator[None]:
    """``env`` in this process's environment inside the block (for the processes it
    starts), and what was there before after it."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def check_port_free(host: str, port: int) -> None:
    """A clear error now rather than a server that never starts, or one that polls another
    server's ``/readyz`` and takes it for its own: something already answering on
    ``host:port`` (a connection is tried: a bind would also fail on the connections a
    server stopped a moment ago leaves in TIME_WAIT, which a new one may reuse)."""
    target = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    try:
        socket.create_connection((target, port), timeout=1.0).close()
    except OSError:
        return
    raise ConfigurationError(
        f"{host}:{port} is taken: another server answers there; choose another port with "
        "--port or VOXLINE_PORT",
        setting="VOXLINE_PORT",
    )
