"""The ids a process gives its events, and its appends in flight (pipeline.log._stamping)."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.log import EventLog
from pipeline.log._stamping import SessionIds
from pipeline.log.streamid import StreamId
from tests.support.event_samples import typed_text as text


def test_appends_in_flight_are_counted_until_each_lands() -> None:
    ids = SessionIds()
    ids.fly("s", "5-0")
    ids.fly("s", "7-0")
    assert ids.in_flight("s") == StreamId(7, 0)
    ids.land("s")
    assert ids.in_flight("s") == StreamId(7, 0), "one append still flies"
    ids.land("s")
    assert ids.in_flight("s") is None


def test_an_append_stamped_anew_is_still_one_append() -> None:
    ids = SessionIds()
    ids.fly("s", "5-0")
    ids.fly("s", "9-0", again=True)  # re-stamped above another writer's ids
    assert ids.in_flight("s") == StreamId(9, 0)
    ids.land("s")
    assert ids.in_flight("s") is None


def test_stamps_rise_above_the_last_id_given() -> None:
    ids = SessionIds()
    first, second = ids.stamp([text("s", "a"), text("s", "b")])
    [third] = ids.stamp([text("s", "c")])
    assert StreamId.parse(first.id or "") < StreamId.parse(second.id or "") < StreamId.parse(
        third.id or "")
    with pytest.raises(ValueError, match="one session"):
        ids.stamp([text("s", "a"), text("t", "b")])


@pytest.mark.redis
async def test_appends_that_collide_leave_nothing_in_flight(event_log: EventLog) -> None:
    """Two logs of one process writing one session stamp the same ids; the loser is
    stamped anew and lands, and neither is left counted as flying."""
    other = EventLog(event_log.redis, event_log.settings)
    await asyncio.gather(*(log.append(text("clash", f"{name}{n}")) for n in range(20)
                           for name, log in (("a", event_log), ("b", other))))
    assert len(await event_log.read_all("clash")) == 40
    key = event_log.key("clash")
    assert event_log.ids.in_flight(key) is None and other.ids.in_flight(key) is None
