"""A session logged as a live session logs it: audio streamed into a
:class:`pipeline.session.LiveSession` in 20 ms frames, until an event of a given type is
in its log. Shared by ``bench_evaluate`` and the tests of ``voxline evaluate``, ``export``
and ``replay --evaluate``, which evaluate what this logged."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.log import EventLog
    from pipeline.session import SessionEngines
    from schemas import EventBase, SessionSettings

#: 20 ms of PCM16 at 16 kHz: what a client sends at a time
FRAME_BYTES = 640


async def speak_into_session(
    log: EventLog, session_id: str, pcm16: bytes, engines: SessionEngines,
    create: SessionSettings, until: type[EventBase], *, paced: bool = False,
) -> None:
    """Open ``session_id`` with ``create``, stream ``pcm16`` into it, wait for an ``until``
    event in its log, close it. ``paced``: a frame every 20 ms, as a microphone sends
    them (the log then measures the silence waited, and so voice-to-voice); else as fast
    as the session takes them."""
    from pipeline.session import LiveSession

    session = await LiveSession.open(session_id, log, engines, create=create)
    try:
        loop = asyncio.get_running_loop()
        began = loop.time()
        for index, start in enumerate(range(0, len(pcm16), FRAME_BYTES)):
            if paced:
                await asyncio.sleep(max(0.0, began + index * 0.02 - loop.time()))
            await session.push_audio(pcm16[start : start + FRAME_BYTES])
        tail = log.tail(session_id, None)
        async for event in tail:
            if isinstance(event, until):
                break
        await tail.aclose()  # type: ignore[attr-defined]
    finally:
        await session.close()
