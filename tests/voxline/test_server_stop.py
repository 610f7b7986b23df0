"""``voxline.server.running_server`` stopped by a signal while it waits for readiness (no
Ray: Serve, Ray and the drain are stood in for, so only the decision is under test).

Clients poll ``/readyz`` too, and the server's own poll can take seconds (Serve's proxy
holds it while the Gateway starts): a signal may come after clients were served but
before the server saw readiness. Such an app is drained like any served one (a CI run
of tests/faults/test_sigterm.py once saw its socket cut with no drain that way); an app
that never answered ready is not (a drain would wait its grace for nothing)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

import voxline.server as server
from schemas import Settings


class Stage:
    """What running_server did, in order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, answers_ready: bool) -> None:
        self.steps: list[str] = []
        self.polls: list[float] = []

        @contextlib.contextmanager
        def redis(url: str | None) -> Iterator[str]:
            yield "redis://127.0.0.1:1/0"

        def interrupted(url: str, timeout_s: float, say: Any) -> dict[str, object]:
            self.steps.append("wait_ready")
            raise KeyboardInterrupt  # the signal, as StopSignals raises it while starting

        def poll(url: str, timeout_s: float = 10) -> tuple[bool, dict[str, object] | str]:
            self.polls.append(timeout_s)
            return (True, {"ready": True}) if answers_ready else (False, "llm: loading")

        from ray import serve

        import deployments.app

        monkeypatch.setattr(server, "redis_url_or_server", redis)
        monkeypatch.setattr(server, "start_ray", lambda *a, **k: self.steps.append("ray"))
        monkeypatch.setattr(server, "wait_ready", interrupted)
        monkeypatch.setattr(server, "poll_ready", poll)
        monkeypatch.setattr(server, "drain_app", lambda *a, **k: self.steps.append("drain"))
        monkeypatch.setattr(serve, "start", lambda **k: None)
        monkeypatch.setattr(serve, "run", lambda *a, **k: self.steps.append("deployed"))
        monkeypatch.setattr(serve, "shutdown", lambda: self.steps.append("serve stopped"))
        monkeypatch.setattr(deployments.app, "build_app", lambda *a, **k: object())
        monkeypatch.setattr("ray.shutdown", lambda: self.steps.append("ray stopped"))

    def run(self) -> None:
        with pytest.raises(KeyboardInterrupt), server.running_server(
            Settings(), say=lambda _: None
        ):
            pytest.fail("the app was never ready to the server")


def test_a_signal_while_waiting_drains_an_app_that_answers_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stage = Stage(monkeypatch, answers_ready=True)
    stage.run()
    assert stage.steps == ["ray", "deployed", "wait_ready", "drain", "serve stopped",
                           "ray stopped"]
    assert stage.polls == [server._STOP_POLL_S]  # one short question, not a wait


def test_a_signal_while_waiting_stops_an_app_that_is_not_ready_without_a_drain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stage = Stage(monkeypatch, answers_ready=False)
    stage.run()
    assert stage.steps == ["ray", "deployed", "wait_ready", "serve stopped", "ray stopped"]
