"""``voxline.server.running_server`` stopped by a signal while it waits for the app (no
Ray: Serve, Ray and the drain are stood in for, so only the decision is under test).

``serve.run`` returns only once the controller marks the app RUNNING, and the server's
own ``/readyz`` poll can take seconds: a signal may come after clients were served (they
poll ``/readyz`` themselves) but before the server saw readiness. Such an app is drained
like any served one (full runs of tests/faults/test_sigterm.py saw a socket cut with no
drain that way, twice); an app that never answered ready is not (a drain would wait its
grace for nothing), and a signal before the app is deployed asks nothing."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

import voxline.server as server
from schemas import Settings


class Stage:
    """What running_server did, in order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, answers_ready: bool,
                 where: str = "wait_ready") -> None:
        self.steps: list[str] = []
        self.polls: list[float] = []

        @contextlib.contextmanager
        def redis(url: str | None) -> Iterator[str]:
            yield "redis://127.0.0.1:1/0"

        def interrupted(*args: Any, **kwargs: Any) -> Any:
            self.steps.append(f"interrupted in {where}")
            raise KeyboardInterrupt  # the signal, as StopSignals raises it while starting

        def deployed(*args: Any, **kwargs: Any) -> None:
            self.steps.append("deployed")

        def poll(url: str, timeout_s: float = 10) -> tuple[bool, dict[str, object] | str]:
            self.polls.append(timeout_s)
            return (True, {"ready": True}) if answers_ready else (False, "llm: loading")

        from ray import serve

        import deployments.app

        monkeypatch.setattr(server, "redis_url_or_server", redis)
        monkeypatch.setattr(server, "start_ray", interrupted if where == "ray"
                            else lambda *a, **k: self.steps.append("ray"))
        monkeypatch.setattr(server, "wait_ready",
                            interrupted if where == "wait_ready" else lambda *a: {})
        monkeypatch.setattr(server, "poll_ready", poll)
        monkeypatch.setattr(server, "drain_app", lambda *a, **k: self.steps.append("drain"))
        monkeypatch.setattr(serve, "start", lambda **k: None)
        monkeypatch.setattr(serve, "run", interrupted if where == "serve.run" else deployed)
        monkeypatch.setattr(serve, "shutdown", lambda: self.steps.append("serve shut down"))
        monkeypatch.setattr(deployments.app, "build_app", lambda *a, **k: object())
        monkeypatch.setattr("ray.shutdown", lambda: self.steps.append("ray shut down"))

    def run(self) -> None:
        with pytest.raises(KeyboardInterrupt), server.running_server(
            Settings(), say=lambda _: None
        ):
            pytest.fail("the app was never ready to the server")


@pytest.mark.parametrize("where", ["serve.run", "wait_ready"])
def test_a_signal_while_waiting_drains_an_app_that_answers_ready(
    monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    stage = Stage(monkeypatch, answers_ready=True, where=where)
    stage.run()
    before = ["interrupted in serve.run"] if where == "serve.run" else [
        "deployed", "interrupted in wait_ready"]
    assert stage.steps == ["ray", *before, "drain", "serve shut down", "ray shut down"]
    assert stage.polls == [server._STOP_POLL_S]  # one short question, not a wait


def test_a_signal_while_waiting_stops_an_app_that_is_not_ready_without_a_drain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stage = Stage(monkeypatch, answers_ready=False)
    stage.run()
    assert stage.steps == ["ray", "deployed", "interrupted in wait_ready", "serve shut down",
                           "ray shut down"]


def test_a_signal_before_the_app_is_deployed_asks_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stage = Stage(monkeypatch, answers_ready=True, where="ray")
    stage.run()
    assert stage.steps == ["interrupted in ray", "serve shut down", "ray shut down"]
    assert stage.polls == []
