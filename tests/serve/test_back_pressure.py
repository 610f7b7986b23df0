"""A stage's back-pressure reaches the client as ``overloaded``, through the real app.

The CPU profile gives the LanguageModel stage ``max_ongoing_requests`` +
``max_queued_requests`` places (kept in the Gateway, which runs the stage itself: the
profile's bounds in :class:`pipeline.engines.StageBound`, as Serve keeps a deployment's
elsewhere); a turn that finds them all taken (but is within the Gateway's own turn limit)
has its LLM call refused at once.
Such a turn ends with an ``overloaded`` error (transient, with a retry hint) instead of
waiting behind the others, and the admitted turns complete: every turn that ended either
completed or was refused, and at least one completed. The holders' replies still running
then are hung up on, which cancels them: waiting for all twelve had cost up to three more
rounds of 96 tokens on the LLM's four sequences (281 s of one worker in a loaded
clean-clone run), CPU that every other test of the suite waited for.
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

# A reply of the packaged Gemma 3 270M can end within a few tokens whatever it is asked
# (a count to a thousand was answered "1000." in a clean-clone run, 2026-11-25), so no
# prompt alone holds a place for long: each holder asks again as soon as its reply ends
# (see the test). This prompt's replies ran longest (29–95 of 96 tokens, greedy).
LONG = {"temperature": 0.0, "max_tokens": 96, "seed": 1}
PROMPT = "Continue this sequence forever: {i}, {i}, {i}, {i}, {i}, {i},"


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


def _refused(messages: list[tuple[str, dict[str, Any]]]) -> bool:
    return any(name == "error" and data["code"] == "overloaded" for name, data in messages)


def _completed(messages: list[tuple[str, dict[str, Any]]]) -> bool:
    return bool(messages) and messages[-1][0] == "done" \
        and messages[-1][1]["status"] == "completed"


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

    results: list[list[tuple[str, dict[str, Any]]]] = []
    done_holding = asyncio.Event()
    one_completed = asyncio.Event()  # (or a holder failed: the asserts say why)

    async def hold(slot: int) -> None:
        """Keeps one of the LLM stage's places taken until the late turns are done."""
        round_ = 0
        try:
            while not done_holding.is_set():
                results.append(await chat(slot + round_ * places))
                round_ += 1
                if _completed(results[-1]):
                    one_completed.set()
                elif _refused(results[-1]):  # a late turn took this place: not in a tight loop
                    await asyncio.sleep(0.2)
        except Exception:
            one_completed.set()
            raise

    # The holders take every place; only then come the late ones. Sent all at once, the
    # late ones sometimes arrived after the first replies had ended and freed places (no
    # turn refused, on a loaded machine: CI, stop 37).
    holders = [asyncio.create_task(hold(i)) for i in range(places)]
    try:
        try:
            await llm_calls_reach(app, places)
        except AssertionError as exc:  # say how the holders' turns had ended, if they had
            ended = [r[-1] if r else None for r in results]
            failed = [t.exception() for t in holders if t.done() and not t.cancelled()]
            raise AssertionError(f"{exc}; holders' turns ended: {ended}; holders failed: "
                                 f"{failed}") from None
        results.extend(await asyncio.wait_for(
            asyncio.gather(*(chat(1000 + i) for i in range(late))), 600))
        done_holding.set()
        await asyncio.wait_for(one_completed.wait(), 600)
    finally:
        for task in holders:  # hung up on: their replies are cancelled
            task.cancel()
        outcomes = await asyncio.gather(*holders, return_exceptions=True)
    assert not [e for e in outcomes if isinstance(e, Exception)], outcomes  # none failed
    refused = [r for r in results if _refused(r)]
    completed = [r for r in results if _completed(r)]
    assert refused, ("no turn met the LLM stage's back-pressure; how the turns ended: "
                     f"{[r[-1] if r else None for r in results]}")
    # every turn either finished or was refused at once: none failed or hung
    assert len(completed) + len(refused) == len(results), [r[-1] for r in results]
    assert completed  # the admitted ones finish
    for messages in refused:
        error = next(data for name, data in messages if name == "error")
        assert error["transient"] is True and error["stage"] == "llm"
        assert error["details"]["retry_after_ms"] > 0
