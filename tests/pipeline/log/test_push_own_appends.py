"""An append that only its writer's own live reader follows is not published: the writer
hands its events out in process, so Redis's push of it would be sent, read and dropped
(EventLog.subscribed_here). Any other reader subscribed to the stream is still pushed
every append, and the writer's reader stays subscribed while an append of its process to
the stream is in flight, so that the script's count of subscribers includes it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pipeline.log import EventLog, LogFanout
from pipeline.log import _live_read as live_read
from tests.support.event_samples import typed_text as text
from tests.support.log_tails import HANG_GUARD_S, follow, texts

pytestmark = pytest.mark.redis

#: a quiet read or a sweep would find what a missing push left behind: none here, so a
#: push that is not sent shows as a tail that waits
NEVER_MS = 3_600_000


@pytest.fixture
def redis_url(both_redis_urls: str) -> str:
    return both_redis_urls


@pytest.fixture
async def other(event_log: EventLog,
                monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[LogFanout]:
    """Another process's live reader (its own EventLog), that only pushes tell of appends."""
    monkeypatch.setattr(live_read, "SWEEP_S", NEVER_MS / 1000)
    reader = LogFanout(EventLog(event_log.redis, event_log.settings), block_ms=NEVER_MS)
    try:
        yield reader
    finally:
        await reader.aclose()


async def test_an_append_only_its_writers_reader_follows_is_not_published(
    event_log: EventLog, fanout: LogFanout,
) -> None:
    tail, pending = await follow(fanout, "solo", 20)
    appended = [await event_log.append(text("solo", str(i))) for i in range(20)]
    received = await asyncio.wait_for(pending, HANG_GUARD_S)
    assert all(mine is theirs for mine, theirs in zip(appended, received, strict=True))
    assert fanout.pushes == 0  # before: one push of each, read and dropped
    await tail.aclose()


async def test_another_reader_of_the_stream_is_still_pushed_each_append(
    event_log: EventLog, fanout: LogFanout, other: LogFanout,
) -> None:
    mine, _ = await follow(fanout, "shared", 10)
    theirs, pending = await follow(other, "shared", 10)
    for i in range(10):
        await event_log.append(text("shared", str(i)))
    assert texts(await asyncio.wait_for(pending, HANG_GUARD_S)) == [str(i) for i in range(10)]
    assert other.pushes == 10
    await mine.aclose()
    await theirs.aclose()


async def test_the_writers_reader_stays_subscribed_while_its_append_is_in_flight(
    event_log: EventLog, fanout: LogFanout, other: LogFanout,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the append is built while this process's reader follows the stream ("mine", so
    # published only if another subscriber is counted) and sent after its tail left: had
    # the reader unsubscribed meanwhile, the script would count the other reader alone
    # and publish nothing, and the other reader would wait
    mine, waiting = await follow(fanout, "leaving", 1)
    theirs, pending = await follow(other, "leaving", 1)
    sent, built = asyncio.Event(), asyncio.Event()
    appends = event_log.appends

    async def sent_later(keys: Any, args: Any) -> Any:
        built.set()
        await sent.wait()
        return await appends(keys, args)

    monkeypatch.setattr(event_log, "appends", sent_later)
    append = asyncio.ensure_future(event_log.append(text("leaving", "last")))
    await asyncio.wait_for(built.wait(), HANG_GUARD_S)
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    await mine.aclose()  # its tail leaves; the next pass of the read resubscribes
    [read] = fanout._reads.values()
    passes = resubscribes(fanout, monkeypatch)
    read.changed.set()
    await asyncio.wait_for(passes.wait(), HANG_GUARD_S)
    assert fanout.log.key("leaving") in read.subscribed
    sent.set()
    await append
    assert texts(await asyncio.wait_for(pending, HANG_GUARD_S)) == ["last"]
    read.changed.set()  # answered: the next pass leaves the channel
    for _ in range(2000):
        if not read.subscribed:
            break
        await asyncio.sleep(0.005)
    assert not read.subscribed
    await theirs.aclose()


def resubscribes(fanout: LogFanout, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Set once the live read has resubscribed (and any leaving it sent was confirmed)."""
    done = asyncio.Event()
    resubscribe = fanout._resubscribe

    async def observed(read: Any, subscription: Any) -> None:
        await resubscribe(read, subscription)
        for _ in range(2000):  # (without the in-flight rule: Redis has let it go)
            if not +subscription._leaving:
                break
            await asyncio.sleep(0.005)
        done.set()

    monkeypatch.setattr(fanout, "_resubscribe", observed)
    return done
