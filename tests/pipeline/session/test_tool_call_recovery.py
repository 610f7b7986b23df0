"""A server tool call whose replica died: the next replica to open the session ends it once.

Seeded trials kill a real replica process (SIGKILL, no cleanup) at a moment drawn around
the call's side effect; ``VOXLINE_TOOL_CRASH_TRIALS`` sets how many (20 by default)."""

from __future__ import annotations

import asyncio
import os

import pytest

from loadtests._tool_crash import Trial, run_trial

pytestmark = pytest.mark.redis

TRIALS = int(os.environ.get("VOXLINE_TOOL_CRASH_TRIALS", "20"))


async def trials(redis_url: str, prefix: str, count: int, *, idempotent: bool) -> list[Trial]:
    """``count`` seeded trials, two at a time (each its own replica process and keys)."""
    places = asyncio.Semaphore(2)

    async def one(seed: int) -> Trial:
        async with places:
            return await run_trial(redis_url, f"{prefix}:{seed}", seed, idempotent=idempotent)

    return list(await asyncio.gather(*(one(seed) for seed in range(count))))


async def test_an_idempotent_call_books_exactly_once_whenever_its_replica_dies(
    redis_url: str, key_prefix: str,
) -> None:
    done = await trials(redis_url, f"{key_prefix}:i", TRIALS, idempotent=True)
    assert all(t.bookings == 1 for t in done), done
    assert all(t.ended_as == "output" and (t.answered or t.ended_before_kill)
               for t in done), done
    assert any(t.runs == 2 for t in done), done  # some were run again, booking once


async def test_any_other_call_is_never_run_twice_and_the_model_is_told(
    redis_url: str, key_prefix: str,
) -> None:
    done = await trials(redis_url, f"{key_prefix}:n", max(4, TRIALS // 3), idempotent=False)
    assert all(t.runs <= 1 and t.bookings <= 1 and (t.answered or t.ended_before_kill)
               for t in done), done
    interrupted = [t for t in done if t.ended_as == "failed:tool_interrupted"]
    assert interrupted and all(t.ended_as in ("output", "failed:tool_interrupted")
                               for t in done), done
