"""A process's own appends reach its tails as the events it already holds: a push of an
append (when another reader follows it too), a sweep or a stream read may come while
its reply is on the way, and the live reader leaves an append still in flight to the
append instead of decoding it again; an append that ends
without handing its events out (a lost reply retried as a duplicate) has its stream read,
so nothing is missed either way."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from pipeline.log import EventLog, LogFanout
from pipeline.log import _live_read as live_read
from tests.support.event_samples import typed_text as text
from tests.support.log_tails import HANG_GUARD_S, take, texts, until_live
from tests.support.outages import lose_appends_after_sending

pytestmark = pytest.mark.redis

@pytest.fixture
def redis_url(both_redis_urls: str) -> str:
    return both_redis_urls


async def live_tail(fanout: LogFanout, event_log: EventLog, session: str) -> Any:
    """A tail of ``session`` that has joined the live read and been given a live event
    (the first one after joining may be read: the reader learns the stream's numbers)."""
    await event_log.append(text(session, "old"))
    tail = fanout.tail(session)
    assert texts(await take(tail, 1)) == ["old"]
    reading = asyncio.ensure_future(take(tail, 1))
    await until_live(fanout, 1)
    await event_log.append(text(session, "live"))
    assert texts(await asyncio.wait_for(reading, HANG_GUARD_S)) == ["live"]
    return tail


def count_decodes(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """Count the entries the live read decodes from here on (the count, when called)."""
    decoded = 0
    decode = live_read.decode_entry

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal decoded
        decoded += 1
        return decode(*args, **kwargs)

    monkeypatch.setattr(live_read, "decode_entry", counted)
    return lambda: decoded


async def test_own_appends_are_handed_out_as_held_never_decoded_again(
    event_log: EventLog, fanout: LogFanout, monkeypatch: pytest.MonkeyPatch,
) -> None:
    tail = await live_tail(fanout, event_log, "own")
    decoded = count_decodes(monkeypatch)
    reading = asyncio.ensure_future(take(tail, 40))
    results = [await event_log.append_batch([text("own", str(i))]) for i in range(40)]
    received = await asyncio.wait_for(reading, HANG_GUARD_S)
    appended = [result.events[0] for result in results]
    assert [e.id for e in received] == [e.id for e in appended]
    # an append retried after a silent connection comes back a duplicate, handed out
    # by reading its stream: only those may be decoded
    retried = sum(result.duplicate for result in results)
    assert decoded() == retried, f"{decoded()} of 40 own appends were decoded again"
    assert all(mine is theirs for result, mine, theirs in zip(results, appended, received,
                                                              strict=True)
               if not result.duplicate)
    await tail.aclose()


async def test_a_read_that_meets_an_append_in_flight_leaves_it_to_the_append(
    event_log: EventLog, fanout: LogFanout, redis: Any, log_settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the race CI met: the live read reads the stream (a join, a quiet partition, another
    # writer's append) while an append of ours has landed and its reply is still on the
    # way; the read stops at it, and another writer's event behind it comes after it
    # (read again as mine is handed out, not found by a sweep of the changes stream)
    monkeypatch.setattr(live_read, "SWEEP_S", 3600.0)
    tail = await live_tail(fanout, event_log, "race")
    replied, landed = asyncio.Event(), asyncio.Event()
    appends = event_log.appends

    async def reply_held(keys: Any, args: Any) -> Any:
        reply = await appends(keys, args)
        landed.set()
        await replied.wait()
        return reply

    monkeypatch.setattr(event_log, "appends", reply_held)
    decoded = count_decodes(monkeypatch)
    read_after, theirs_in = asyncio.Event(), False
    read_streams = fanout._read_streams

    async def observed(read: Any) -> None:
        started_after = theirs_in
        await read_streams(read)
        if started_after:
            read_after.set()

    monkeypatch.setattr(fanout, "_read_streams", observed)
    reading = asyncio.ensure_future(take(tail, 2))
    mine = asyncio.ensure_future(event_log.append(text("race", "mine")))
    await asyncio.wait_for(landed.wait(), HANG_GUARD_S)
    await EventLog(redis, log_settings).append(text("race", "theirs"))  # another process
    theirs_in = True
    fanout._unheard("race")  # a read of the stream now, whatever else asks for one
    await asyncio.wait_for(read_after.wait(), HANG_GUARD_S)
    assert not reading.done() and decoded() == 0
    replied.set()
    received = await asyncio.wait_for(reading, HANG_GUARD_S)
    assert texts(received) == ["mine", "theirs"]
    assert received[0] is await mine
    assert decoded() == 1  # theirs, read after mine was handed out
    await tail.aclose()


async def test_an_append_whose_reply_was_lost_still_reaches_the_tail(
    event_log: EventLog, fanout: LogFanout, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # no sweep of the changes stream to fall back on: the append itself must have the
    # stream read (else this waits for the hang guard)
    monkeypatch.setattr(live_read, "SWEEP_S", 3600.0)
    tail = await live_tail(fanout, event_log, "lost")
    lose_appends_after_sending(monkeypatch)
    reading = asyncio.ensure_future(take(tail, 10))
    for i in range(10):
        await event_log.append(text("lost", str(i)))
    received = await asyncio.wait_for(reading, HANG_GUARD_S)
    assert texts(received) == [str(i) for i in range(10)]
    await tail.aclose()


async def test_a_closed_reader_is_told_of_no_more_appends(event_log: EventLog) -> None:
    reader = LogFanout(event_log, block_ms=200)
    assert reader._appended in event_log.appended and reader._unheard in event_log.unheard
    await reader.aclose()
    assert reader._appended not in event_log.appended
    assert reader._unheard not in event_log.unheard
