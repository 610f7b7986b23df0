"""``voxline.ingress``: which way in a profile gets, and the port checked before anything
starts (the end-to-end check: tests/faults/test_sigterm.py looks at which process listens
on the port, each way); Serve's proxy given the handshake guard."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from deployments.api import WS_PROTOCOL
from schemas import ConfigurationError, Settings
from voxline.ingress import check_port_free, resolve_ingress
from voxline.proxy import serve_proxy_callback
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


def test_the_proxy_callback_only_guards_the_handshake(monkeypatch: pytest.MonkeyPatch) -> None:
    """Serve's proxy gets the handshake guard for ``ws="auto"`` and no middleware."""
    from uvicorn import config

    monkeypatch.setitem(config.WS_PROTOCOLS, "auto", "websockets-sansio")
    assert serve_proxy_callback() == []
    assert config.WS_PROTOCOLS["auto"] == WS_PROTOCOL


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
