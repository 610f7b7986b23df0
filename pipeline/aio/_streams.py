"""Closing a stream early, the one way every part of the pipeline does it."""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Any


async def aclose_stream(stream: AsyncIterable[Any]) -> None:
    """``aclose()`` a stream now if it can be closed (async generators can; a plain async
    iterator has nothing to close), so the producer's ``finally`` runs at once, not
    whenever the garbage collector gets to it. Errors of the producer's cleanup propagate:
    wrap the call in ``contextlib.suppress`` where they must not."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
