"""Places for work with a bounded line: the count a caller refuses by."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.aio import Places


async def test_places_run_their_holders_queue_the_rest_and_say_when_the_line_is_full() -> None:
    places = Places(ongoing=1, queued=1)
    await places.take()
    assert (places.running, places.waiting, places.full) == (1, 0, False)
    waiter = asyncio.create_task(places.take())
    await asyncio.sleep(0)
    assert (places.admitted, places.full) == (2, True)  # the caller refuses the next
    places.give_back()
    async with asyncio.timeout(5):
        await waiter
    assert (places.running, places.waiting) == (1, 0)
    places.give_back()
    async with places.hold():
        assert places.running == 1
    assert places.admitted == 0


def test_places_need_one_and_a_line_of_none_or_more() -> None:
    with pytest.raises(ValueError, match="ongoing >= 1 and queued >= 0"):
        Places(ongoing=1, queued=-1)
