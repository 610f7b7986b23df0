"""A stage's Serve back-pressure reaches the client as ``overloaded``, through the real app.

The CPU profile gives the LanguageModel deployment ``max_ongoing_requests`` +
``max_queued_requests`` places; a turn that finds them all taken (but is within the
Gateway's own turn limit) has its LLM call refused by Serve at once (``BackPressureError``).
Such a turn ends with an ``overloaded`` error (transient, with a retry hint) instead of
waiting behind the others, and every admitted turn still completes.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from deployments.app import PROFILES
from pipeline.meters import ReplicaBoard
from tests.serve._app import App
from voxline.client import VoxlineClient

pytestmark = [pytest.mark.serve, pytest.mark.models, pytest.mark.redis]

# Every reply runs to max_tokens: a count to a thousand, greedy, never ends sooner, so
# the turns that hold the places keep them for seconds on the CPU profile's four
# parallel sequences.
LONG = {"temperature": 0.0, "max_tokens": 96, "seed": 1}
PROMPT = "Count from {i} to 1000, one number per line, with no other words."


async def llm_calls_reach(app: App, count: int, timeout_s: float = 120.0) -> None:
    """Until the Gateway reports ``count`` LLM calls in flight (generating, or waiting in
    its handle's queue), from the report it publishes every ``api.metrics_report_s``."""
    redis = Redis.from_url(app.settings.redis_url)
    board = ReplicaBoard(redis, app.settings.log.key_prefix)
    seen: list[int] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            reports = await board.read()
            seen.append(sum(r.stages["llm"].in_flight for r in reports if "llm" in r.stages))
            if seen[-1] >= count:
                return
            await asyncio.sleep(0.1)
    finally:
        await redis.aclose()
    raise AssertionError(f"the LLM calls in flight never reached {count}: {seen[-20:]}")


async def test_llm_back_pressure_reaches_clients_as_overloaded(
    app: App, client: VoxlineClient
) -> None:
    llm = PROFILES["cpu"]["LanguageModel"]
    places = llm["max_ongoing_requests"] + llm["max_queued_requests"]
    limit = app.settings.admission.max_turns or places + 8
    late = min(limit, places + 8) - places  # within the Gateway's limit: Serve refuses
    assert late > 0

    async def chat(i: int) -> list[tuple[str, dict[str, Any]]]:
        return [m async for m in client.chat_stream(PROMPT.format(i=i + 1), sampling=LONG)]

    # The first turns take every place; only then come the late ones. Sent all at once,
    # the late ones sometimes arrived after the first replies had ended and freed places
    # (no turn refused, on a loaded machine: CI, stop 37).
    holding = [asyncio.create_task(chat(i)) for i in range(places)]
    try:
        try:
            await llm_calls_reach(app, places)
        except AssertionError as exc:  # say how the holding turns had ended, if they had
            ended = [t.exception() or (t.result()[-1] if t.result() else None)
                     for t in holding if t.done() and not t.cancelled()]
            raise AssertionError(f"{exc}; holding turns ended meanwhile: {ended}") from None
        results = await asyncio.wait_for(
            asyncio.gather(*holding, *(chat(places + i) for i in range(late))), 600)
    finally:
        for task in holding:
            task.cancel()
    refused = [r for r in results if any(
        name == "error" and data["code"] == "overloaded" for name, data in r)]
    completed = [r for r in results if r[-1][0] == "done" and r[-1][1]["status"] == "completed"]
    assert refused, ("no turn met the LLM stage's back-pressure; how the turns ended: "
                     f"{[r[-1] if r else None for r in results]}")
    assert len(completed) + len(refused) == places + late
    assert len(completed) >= places - 1  # the admitted ones all finish (one may race)
    for messages in refused:
        error = next(data for name, data in messages if name == "error")
        assert error["transient"] is True and error["stage"] == "llm"
        assert error["details"]["retry_after_ms"] > 0
