"""How clients reach the Gateway when the run command starts the app (``VOXLINE_INGRESS``).

``proxy``: Ray Serve's HTTP proxy listens on ``host:port`` and hands every request to the
Gateway replica. A WebSocket is one long request, and the replica pulls each batch of its
messages from the proxy with an actor call: a voice session's 20–32 ms audio frames cost a
hop each, in two processes. ``direct``: the Gateway replica serves the API on
``host:port`` itself, on a uvicorn server in its own event loop
(:class:`deployments.api.ApiServer`), and Serve's proxy listens on a free loopback port
of its own that nobody is told about.

One port has room for one replica, so ``direct`` is for the profiles whose Gateway is one
replica that never scales (the ``cpu`` profiles): ``auto`` picks it there, and ``proxy``
elsewhere (the GPU profile's Gateways scale behind Serve's proxy, or behind Ray's
HAProxy ingress on a cluster: ``docs/operations.md``). Measured on the 2-core machine
(``loadtests/capacity.py``, 3 voice sessions; README): the whole server's CPU per voice
turn fell by about a quarter, mostly the proxy's and the Gateway's, and a voice session
among 200 idle ones answers in about a second where behind the proxy it waited tens.
"""

from __future__ import annotations

import socket
from typing import Literal

from schemas import ConfigurationError, Settings

__all__ = ["Ingress", "check_port_free", "resolve_ingress"]

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
            f"scales (the cpu profiles); the {profile} profile's Gateways scale behind "
            "Serve's proxy: use VOXLINE_INGRESS=proxy or auto",
            setting="VOXLINE_INGRESS",
        )
    return "direct" if capable else "proxy"


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
