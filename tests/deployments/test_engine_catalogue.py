"""Readiness as the engine catalogue asks it: every dependency at once, and one late
answer from a dependency that was ready forgiven for a round (busy is not gone)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from deployments.api import _catalogue
from deployments.api._catalogue import EngineCatalogue
from pipeline.session import SessionEngines
from tests.support.engines import ScriptedLLM


class _Redis:
    """Answers ping (the catalogue's only call), or not: fault injection."""

    def __init__(self) -> None:
        self.down = False

    async def ping(self) -> bool:
        if self.down:
            raise ConnectionError("refused")
        return True


class _BusyLLM(ScriptedLLM):
    """A stage whose ``describe`` can be held (busy) or made to fail."""

    def __init__(self) -> None:
        super().__init__(["Hi."])
        self.held = False
        self.failing = False

    async def describe(self) -> dict[str, Any]:
        if self.failing:
            raise RuntimeError("replica died")
        if self.held:
            await asyncio.sleep(3600)
        return await super().describe()


@pytest.fixture
def bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_catalogue, "ASK_BOUND_S", 0.05)
    monkeypatch.setattr(_catalogue, "REDIS_BOUND_S", 0.05)


def _catalogue_of(llm: _BusyLLM, redis: _Redis,
                  workers: dict[str, Any] | None = None) -> EngineCatalogue:
    return EngineCatalogue(redis, lambda: SessionEngines(llm=llm), workers or {},  # type: ignore[arg-type]
                           lambda: None)


async def test_one_late_answer_from_a_ready_stage_is_forgiven_once(bounds: None) -> None:
    llm = _BusyLLM()
    catalogue = _catalogue_of(llm, _Redis())
    first = await catalogue.readiness()
    assert first["ready"] is True and "slow" not in first
    assert first["redis"] == "ok" and first["tts"] == "absent"
    llm.held = True
    late = await catalogue.readiness()
    assert late["ready"] is True and late["slow"] == ["llm"]
    assert late["llm"] == first["llm"]  # the last ready answer stands
    again = await catalogue.readiness()  # late twice running: not ready
    assert again["ready"] is False and "slow" not in again
    assert again["llm"] == "unavailable: no answer within 0.05 s"
    llm.held = False
    assert (await catalogue.readiness())["ready"] is True


async def test_a_failure_other_than_lateness_is_not_ready_at_once(bounds: None) -> None:
    llm, redis = _BusyLLM(), _Redis()
    catalogue = _catalogue_of(llm, redis)
    assert (await catalogue.readiness())["ready"]
    llm.failing, redis.down = True, True
    checks = await catalogue.readiness()
    assert checks["ready"] is False and "slow" not in checks
    assert checks["llm"] == "unavailable: RuntimeError: replica died"
    assert checks["redis"] == "unavailable: ConnectionError: refused"


async def test_a_stage_late_from_the_start_is_not_ready(bounds: None) -> None:
    llm = _BusyLLM()
    llm.held = True
    checks = await _catalogue_of(llm, _Redis()).readiness()
    assert checks["ready"] is False and "slow" not in checks


def _worker(everyone: asyncio.Barrier) -> Callable[[], Awaitable[dict[str, Any]]]:
    """A worker's status question that answers only once every worker of the round has
    been asked."""

    async def status() -> dict[str, Any]:
        await everyone.wait()
        return {"ready": True}

    return status


async def test_dependencies_are_asked_at_once(bounds: None) -> None:
    """Asked one by one, slow answers added up on a loaded machine; asked at once, a round
    takes its slowest. Here the workers answer only when all of them have been asked."""
    everyone = asyncio.Barrier(3)
    workers = {f"w{i}": _worker(everyone) for i in range(3)}
    checks = await _catalogue_of(_BusyLLM(), _Redis(), workers).readiness()
    assert checks["ready"] is True, checks
    assert all(checks[name] == {"ready": True} for name in workers)
