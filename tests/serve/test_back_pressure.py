"""A stage's Serve back-pressure reaches the client as ``overloaded``, through the real app.

The CPU profile gives the LanguageModel deployment ``max_ongoing_requests`` +
``max_queued_requests`` places; more turns at once than that (but within the Gateway's
own turn limit) make Serve refuse the excess LLM calls at once (``BackPressureError``).
Those turns end with an ``overloaded`` error (transient, with a retry hint) instead of
waiting behind the others, and every admitted turn still completes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from deployments.app import PROFILES
from tests.serve._app import App
from voxline.client import VoxlineClient

pytestmark = [pytest.mark.serve, pytest.mark.models, pytest.mark.redis]

# Every reply runs to max_tokens: a count to a thousand, greedy, never ends sooner. With
# "Count to {i}." the first turns' replies ("1, 2.") ended before the last turns reached
# the LLM stage, freeing places, and no turn was refused (a flaky failure, stop 30).
# 96 tokens take seconds on the CPU profile's four parallel sequences, far longer than
# the turns take to arrive.
LONG = {"temperature": 0.0, "max_tokens": 96, "seed": 1}
PROMPT = "Count from {i} to 1000, one number per line, with no other words."


async def test_llm_back_pressure_reaches_clients_as_overloaded(
    app: App, client: VoxlineClient
) -> None:
    llm = PROFILES["cpu"]["LanguageModel"]
    places = llm["max_ongoing_requests"] + llm["max_queued_requests"]
    limit = app.settings.admission.max_turns or places + 8
    turns = min(limit, places + 8)  # within the Gateway's limit: Serve refuses, not it
    assert turns > places

    async def chat(i: int) -> list[tuple[str, dict[str, Any]]]:
        return [m async for m in client.chat_stream(PROMPT.format(i=i + 1), sampling=LONG)]

    results = await asyncio.wait_for(asyncio.gather(*(chat(i) for i in range(turns))), 600)
    refused = [r for r in results if any(
        name == "error" and data["code"] == "overloaded" for name, data in r)]
    completed = [r for r in results if r[-1][0] == "done" and r[-1][1]["status"] == "completed"]
    assert refused, ("no turn met the LLM stage's back-pressure; how the turns ended: "
                     f"{[r[-1] if r else None for r in results]}")
    assert len(completed) + len(refused) == turns
    assert len(completed) >= places - 1  # the admitted ones all finish (one may race)
    for messages in refused:
        error = next(data for name, data in messages if name == "error")
        assert error["transient"] is True and error["stage"] == "llm"
        assert error["details"]["retry_after_ms"] > 0
