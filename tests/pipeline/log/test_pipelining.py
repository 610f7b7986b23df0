"""Appends made in one turn of the event loop share one pipeline, and each caller still
gets its own answer: its reply, its own error, a script the server never loaded."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from pipeline.log import EventLog
from pipeline.log._pipelining import ScriptPipeliner
from schemas import InputText, InputTextData

pytestmark = pytest.mark.redis

ECHO = "if ARGV[1] == 'bad' then return redis.error_reply('ERR bad call') end return ARGV[1]"


async def test_appends_of_one_turn_go_in_one_round_trip_and_each_lands(
    event_log: EventLog,
) -> None:
    sessions = [f"p{i}" for i in range(40)]
    before = event_log.appends.pipelines
    appended = await asyncio.gather(*(
        event_log.append(InputText(session_id=s, data=InputTextData(text=s)))
        for s in sessions))
    assert event_log.appends.pipelines - before == 1
    assert [e.session_id for e in appended] == sessions
    for session in sessions:
        [event] = await event_log.read_all(session)
        assert event.data.text == session  # type: ignore[union-attr]


async def test_two_appends_of_one_session_in_one_turn_land_in_order(
    event_log: EventLog,
) -> None:
    first, second = await asyncio.gather(*(
        event_log.append(InputText(session_id="order", data=InputTextData(text=text)))
        for text in ("one", "two")))
    logged = await event_log.read_all("order")
    assert [e.data.text for e in logged] == ["one", "two"]  # type: ignore[union-attr]
    assert [e.id for e in logged] == [first.id, second.id]


async def test_each_caller_gets_its_own_reply_or_error(redis: Redis) -> None:
    calls = ScriptPipeliner(redis, redis.register_script(ECHO))
    replies = await asyncio.gather(*(calls([], [text]) for text in ("a", "bad", "c")),
                                   return_exceptions=True)
    assert replies[0] == b"a" and replies[2] == b"c"
    assert isinstance(replies[1], ResponseError) and "bad call" in str(replies[1])
    assert calls.pipelines == 1


async def test_a_script_the_server_never_loaded_is_loaded_and_answered(redis: Redis) -> None:
    fresh = f"return '{uuid.uuid4().hex}' .. ARGV[1]"  # a script no server has seen
    calls = ScriptPipeliner(redis, redis.register_script(fresh))
    replies = await asyncio.gather(*(calls([], [str(n)]) for n in range(5)))
    assert [r.decode()[-1] for r in replies] == ["0", "1", "2", "3", "4"]


async def test_a_cancelled_caller_leaves_the_others_answered(redis: Redis) -> None:
    calls = ScriptPipeliner(redis, redis.register_script(ECHO))
    doomed = asyncio.ensure_future(calls([], ["x"]))
    kept = asyncio.ensure_future(calls([], ["y"]))
    await asyncio.sleep(0)
    doomed.cancel()
    assert await kept == b"y"
    with pytest.raises(asyncio.CancelledError):
        await doomed
