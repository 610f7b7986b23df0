"""Admission limits sized per profile, set per replica, and shown by a readiness answer
that never waits behind the stages."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from ray.serve import Application

from deployments.api._readiness import ReadinessMonitor
from deployments.app import PROFILE_ADMISSION, PROFILES, build_app, sized_admission
from deployments.ingress import Gateway, configured_admission
from pipeline.session import Admission
from schemas import (
    AdmissionSettings,
    ConfigurationError,
    EventLogSettings,
    OverloadedError,
    Settings,
)
from tests.support.api_harness import serve_api
from tests.support.engines import ScriptedLLM

REDIS_URL = "redis://127.0.0.1:6379/0"


def test_every_profile_has_measured_limits() -> None:
    assert set(PROFILE_ADMISSION) == set(PROFILES)
    for limits in PROFILE_ADMISSION.values():
        assert set(limits) <= set(AdmissionSettings.model_fields)


def test_a_profile_fills_the_limits_the_operator_left_unset() -> None:
    settings = sized_admission("cpu", Settings(redis_url=REDIS_URL))
    assert settings.admission.max_turns == PROFILE_ADMISSION["cpu"]["max_turns"]
    # what no measurement sized keeps the settings' default
    assert settings.admission.max_sessions == AdmissionSettings().max_sessions
    gpu = sized_admission("gpu", Settings(redis_url=REDIS_URL))
    assert gpu.admission.max_turns == PROFILE_ADMISSION["gpu"]["max_turns"]


def test_a_limit_the_operator_set_wins_over_the_profile() -> None:
    given = Settings(redis_url=REDIS_URL, admission=AdmissionSettings(max_turns=5))
    assert sized_admission("cpu", given).admission.max_turns == 5
    # None (no limit) is a choice too, not "unset"
    unlimited = Settings(redis_url=REDIS_URL, admission=AdmissionSettings(max_turns=None))
    assert sized_admission("cpu", unlimited).admission.max_turns is None


def test_a_limit_from_the_environment_wins_over_the_profile(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXLINE_ADMISSION__MAX_TURNS", "3")
    assert sized_admission("cpu", Settings(redis_url=REDIS_URL)).admission.max_turns == 3


def test_build_app_hands_the_gateway_the_sized_limits() -> None:
    app = build_app({"profile": "cpu"}, settings=Settings(redis_url=REDIS_URL))
    assert isinstance(app, Application)
    passed = app._bound_deployment.init_args[3]
    assert passed.admission.max_turns == PROFILE_ADMISSION["cpu"]["max_turns"]


def test_the_gateways_user_config_resizes_its_admission_live() -> None:
    base = AdmissionSettings(max_turns=1, max_speech=4)
    admission = Admission(base)
    held = admission.acquire("turns")
    admission.resize(configured_admission(base, {"admission": {"max_turns": 2}}))
    assert admission.limit("turns") == 2 and admission.limit("speech") == 4
    assert admission.in_use("turns") == 1  # admitted work kept its place
    second = admission.acquire("turns")
    with pytest.raises(OverloadedError):
        admission.acquire("turns")
    # a later config without the key goes back to the application's value
    admission.resize(configured_admission(base, {}))
    assert admission.limit("turns") == 1
    held.release(), second.release()


def test_the_gateway_applies_its_user_config_in_reconfigure() -> None:
    assert callable(getattr(Gateway.func_or_class, "reconfigure", None))


@pytest.mark.parametrize("config", [
    {"admission": {"max_turn": 2}},         # misspelt: never ignored in silence
    {"admission": {"max_turns": 0}},        # out of range
    {"admision": {"max_turns": 2}},         # unknown section
])
def test_an_invalid_gateway_user_config_is_refused(config: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError) as info:
        configured_admission(AdmissionSettings(max_turns=1), config)
    assert info.value.details.get("setting") == "Gateway.user_config"


async def test_readiness_is_answered_from_the_background_check() -> None:
    calls = 0
    release, stuck = asyncio.Event(), asyncio.Event()

    async def probe() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls > 1:
            stuck.set()
            await release.wait()  # the second round hangs, as a busy stage would
        return {"ready": True, "round": calls}

    monitor = ReadinessMonitor(probe, refresh_s=0.01)
    try:
        first = await monitor.current()
        assert first["ready"] and first["round"] == 1 and first["checked_ms_ago"] >= 0
        await asyncio.wait_for(stuck.wait(), 5)
        # the probe is stuck in its second round: answers still come, from the first
        for _ in range(5):
            answer = await asyncio.wait_for(monitor.current(), 5)
            assert answer["round"] == 1
        assert calls == 2  # asking did not start more rounds
    finally:
        release.set()
        await monitor.aclose()


async def test_a_stalled_readiness_check_reads_not_ready() -> None:
    async def probe() -> dict[str, Any]:
        return {"ready": True}

    monitor = ReadinessMonitor(probe, refresh_s=30, stale_s=0.05)
    try:
        assert (await monitor.current())["ready"]
        await asyncio.sleep(0.1)
        stale = await monitor.current()
        assert stale["ready"] is False and "stale" in stale
    finally:
        await monitor.aclose()


async def answered_ready(monitor: ReadinessMonitor, within_s: float = 5.0) -> dict[str, Any]:
    """The monitor's answer once it is ready (or the last one after ``within_s``)."""
    deadline = asyncio.get_running_loop().time() + within_s
    answer = await monitor.current()
    while not answer["ready"] and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.005)
        answer = await monitor.current()
    return answer


async def test_a_failing_readiness_probe_reads_not_ready_and_is_retried() -> None:
    calls = 0
    recovered = asyncio.Event()

    async def probe() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("redis went away")
        recovered.set()
        return {"ready": True}

    monitor = ReadinessMonitor(probe, refresh_s=0.01)
    try:
        answer = await monitor.current()
        assert answer["ready"] is False and "redis went away" in answer["probe"]
        await asyncio.wait_for(recovered.wait(), 5)
        # the round's answer is stored once the loop sees the probe end: a few turns of
        # the event loop, more on 3.12 (asyncio.wait) than on 3.11
        assert (await answered_ready(monitor))["ready"]
    finally:
        await monitor.aclose()


async def test_a_round_that_ends_cancelled_reads_not_ready_and_the_checks_go_on() -> None:
    """A call inside the probe that ends cancelled (a stage's handle while its replica
    restarts) once killed the check loop, and every probe after it read "the first check
    is still running"."""
    calls = 0

    async def probe() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise asyncio.CancelledError  # not cancelled by anyone: ended so
        return {"ready": True}

    monitor = ReadinessMonitor(probe, refresh_s=0.01)
    try:
        answer = await monitor.current()
        assert answer["ready"] is False and answer["probe"] == "the check was cancelled"
        for _ in range(100):
            if (await monitor.current())["ready"]:
                break
            await asyncio.sleep(0.01)
        assert (await monitor.current())["ready"]
    finally:
        await monitor.aclose()


async def test_readyz_shows_the_replicas_admission_as_it_is_now(
        redis_url: str, log_settings: EventLogSettings) -> None:
    async with serve_api(redis_url, log_settings, llm=ScriptedLLM(["Hi."]), tts=None,
                         admission=AdmissionSettings(max_turns=3)) as h:
        held = h.services.admission.acquire("turns")
        body = (await h.client.http.get("/readyz")).json()
        assert body["ready"] is True and body["checked_ms_ago"] >= 0
        assert body["admission"]["turns"] == {"in_use": 1, "limit": 3, "waiting": 0,
                                              "refused": 0}
        held.release()
        body = (await h.client.http.get("/readyz")).json()
        assert body["admission"]["turns"]["in_use"] == 0  # live, not the cached round's


async def test_a_probe_that_never_ends_is_left_and_the_next_round_asks_afresh() -> None:
    calls = 0
    answered, released = asyncio.Event(), asyncio.Event()

    async def probe() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:  # ignores its cancel, as a call into a replica still starting can
            while not released.is_set():
                with contextlib.suppress(asyncio.CancelledError):
                    await released.wait()
        answered.set()
        return {"ready": True}

    monitor = ReadinessMonitor(probe, refresh_s=0.01, round_s=0.05)
    try:
        first = await asyncio.wait_for(monitor.current(), 5)
        assert first["ready"] is False  # the stuck round is reported, not waited for
        await asyncio.wait_for(answered.wait(), 5)
        assert (await answered_ready(monitor))["ready"] is True
    finally:
        released.set()  # the stuck round may end now (the test's loop waits for it)
        await monitor.aclose()
