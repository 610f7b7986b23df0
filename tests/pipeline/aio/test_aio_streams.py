"""aclose_stream: the one way a stream is closed early."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator

import pytest

from pipeline.aio import aclose_stream


async def test_a_generator_is_closed_now_and_its_finally_runs() -> None:
    cleaned: list[str] = []

    async def numbers() -> AsyncGenerator[int, None]:
        try:
            for n in range(10):
                yield n
        finally:
            cleaned.append("done")

    stream = numbers()
    assert await anext(stream) == 0
    await aclose_stream(stream)
    assert cleaned == ["done"]
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


async def test_a_plain_async_iterator_has_nothing_to_close() -> None:
    class Countdown:
        def __aiter__(self) -> AsyncIterator[int]:
            return self

        async def __anext__(self) -> int:
            raise StopAsyncIteration

    await aclose_stream(Countdown())  # no aclose(): nothing happens, nothing raised


async def test_a_failing_cleanup_propagates() -> None:
    async def broken() -> AsyncGenerator[int, None]:
        try:
            yield 1
        finally:
            raise RuntimeError("cleanup failed")

    stream = broken()
    await anext(stream)
    with pytest.raises(RuntimeError, match="cleanup failed"):
        await aclose_stream(stream)
