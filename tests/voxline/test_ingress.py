"""``voxline.ingress``: which way in a profile gets, Ray Serve's variables for it, and the
port checked before anything starts (the end-to-end check: tests/faults/test_sigterm.py
looks at which process listens on the port, each way)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import types
from typing import Any

import pytest

from schemas import ConfigurationError, Settings
from voxline.ingress import (
    check_port_free,
    ingress_environment,
    resolve_ingress,
    scoped_environment,
)
from voxline.proxy import (
    WS_PROTOCOL,
    SocketsOwnTheirDisconnects,
    reuse_direct_ingress_port,
    serve_proxy_callback,
)
from voxline.redis_server import free_port


@pytest.mark.parametrize(("setting", "profile", "way"), [
    ("auto", "cpu", "direct"),
    ("auto", "cpu-autoscale", "direct"),  # its stages scale, its one Gateway does not
    ("auto", "gpu", "proxy"),  # Gateways that scale share a port through a proxy
    ("proxy", "cpu", "proxy"),
    ("direct", "cpu", "direct"),
])
def test_the_way_in_follows_the_setting_and_the_profile(setting: str, profile: str,
                                                        way: str) -> None:
    assert resolve_ingress(Settings(ingress=setting), profile) == way  # type: ignore[arg-type]


def test_direct_ingress_where_the_gateway_scales_is_refused_naming_the_setting() -> None:
    with pytest.raises(ConfigurationError, match="VOXLINE_INGRESS") as caught:
        resolve_ingress(Settings(ingress="direct"), "gpu")
    assert caught.value.details["setting"] == "VOXLINE_INGRESS"


def test_direct_ingress_gives_the_gateway_exactly_the_port() -> None:
    env = ingress_environment("direct", 8123)
    assert env["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "1"
    low, high = (int(env[f"RAY_SERVE_DIRECT_INGRESS_{end}_HTTP_PORT"]) for end in ("MIN", "MAX"))
    assert list(range(low, high)) == [8123]  # Serve allocates from [min, max)
    assert env["RAY_SERVE_PORT_QUARANTINE_S"] == "0"  # a restarted Gateway gets it back
    assert ingress_environment("proxy", 8123) == {}


def test_the_environment_is_given_back_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXLINE_TEST_KEPT", "before")
    monkeypatch.delenv("VOXLINE_TEST_NEW", raising=False)
    with scoped_environment({"VOXLINE_TEST_KEPT": "inside", "VOXLINE_TEST_NEW": "x"}):
        assert os.environ["VOXLINE_TEST_KEPT"] == "inside"
        assert os.environ["VOXLINE_TEST_NEW"] == "x"
    assert os.environ["VOXLINE_TEST_KEPT"] == "before"
    assert "VOXLINE_TEST_NEW" not in os.environ


def test_a_port_another_server_answers_on_is_refused_before_anything_starts() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with pytest.raises(ConfigurationError, match=f"127.0.0.1:{port} is taken"):
            check_port_free("127.0.0.1", port)
        with pytest.raises(ConfigurationError):
            check_port_free("0.0.0.0", port)  # all interfaces: loopback's taken too
    check_port_free("127.0.0.1", free_port())  # nothing there: no error


def test_a_port_left_in_time_wait_is_free(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server stopped a moment ago leaves connections in TIME_WAIT, not a listener: a
    new one may start at once, so the check must not refuse it."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server side closes first: its end goes to TIME_WAIT
        client.close()
    check_port_free("127.0.0.1", port)


def test_the_direct_ingress_socket_is_bound_as_the_proxys_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Serve's replica module starts the ingress replica's server without SO_REUSEPORT;
    after the callback it asks for it (as Serve's proxy does), once however often the
    callback runs, and the other arguments go through."""
    calls: list[dict[str, Any]] = []

    async def start(app: Any, options: Any, *, event_loop: Any,
                    enable_so_reuseport: bool = False) -> str:
        calls.append({"app": app, "options": options, "reuse": enable_so_reuseport})
        return "server"

    replica = types.ModuleType("ray.serve._private.replica")
    replica.start_asgi_http_server = start  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ray.serve._private.replica", replica)
    reuse_direct_ingress_port()
    reuse_direct_ingress_port()
    started = asyncio.run(replica.start_asgi_http_server(  # type: ignore[attr-defined]
        "app", "options", event_loop=None, enable_so_reuseport=False))
    assert started == "server"
    assert calls == [{"app": "app", "options": "options", "reuse": True}]


def test_outside_a_serve_replica_the_callback_only_guards_the_handshake(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Serve's proxy (and this process) get the handshake guard and nothing else: its
    sockets and its bind stay Serve's own."""
    from uvicorn import config

    monkeypatch.setitem(config.WS_PROTOCOLS, "auto", "websockets-sansio")
    replica = types.ModuleType("ray.serve._private.replica")
    replica.start_asgi_http_server = object()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ray.serve._private.replica", replica)
    assert serve_proxy_callback() == []
    assert config.WS_PROTOCOLS["auto"] == WS_PROTOCOL
    assert not getattr(replica.start_asgi_http_server, "reuses_port", False)  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", ["websocket", "http"])
def test_a_sockets_disconnect_is_left_to_the_app(kind: str) -> None:
    """Behind the middleware Serve reads the header that keeps a WebSocket's handler
    running when its client goes (the app handles the disconnect, as behind the proxy);
    plain HTTP requests keep Serve's handling: cancelled when the client goes."""
    from ray.serve._private.http_util import parse_disconnect_disabled_header

    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)

    scope = {"type": kind, "headers": [(b"host", b"x")]}
    asyncio.run(SocketsOwnTheirDisconnects(app)(scope, None, None))
    assert parse_disconnect_disabled_header(dict(seen[0]["headers"])) is (kind == "websocket")
    assert scope["headers"] == [(b"host", b"x")]  # the caller's scope is not changed


def test_serve_on_a_taken_port_says_so_and_starts_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before: Serve's proxy failed to bind, and the run command polled the other
    server's /readyz, which may well answer ready."""
    from typer.testing import CliRunner

    from voxline import server as server_module
    from voxline.cli import app

    def no_redis(url: str | None) -> Any:
        raise AssertionError("a Redis was started for a server that cannot listen")

    monkeypatch.setattr(server_module, "redis_url_or_server", no_redis)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", "--no-demo", "--port", str(port)])
    assert result.exit_code == 1, result.output
    assert f"error: 127.0.0.1:{port} is taken" in result.output
    assert "Traceback" not in result.output
