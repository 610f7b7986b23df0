"""A Gateway replica killed during a server tool call, and what the next replica makes of it.

A replica is a child process (``python -m loadtests._tool_crash``) that opens a session
whose model calls ``book_table`` (a side effect: a booking in Redis), and runs the turn.
:func:`run_trial` kills it with SIGKILL at a seeded moment after the call's start is in the
log (before, during or after the side effect, or after the call's end), then opens the
session in this process, as the replica a client reconnects to would, and waits until the
call has an end. A trial reports how many bookings were made (the side effect: the goal is
exactly one for an idempotent tool, never two for any tool), how many times the tool ran,
and how the call ended.

The booking tool keys its side effect by the call id (its idempotency key, as a payment
API's ``Idempotency-Key``): run twice for one call, it books once. The booking is one Redis
command (a member added to a set), so a kill can land before or after it, never inside it:
a check-then-count in two commands, killed between them, would lose the booking and read as
a call that never booked.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sys
import uuid
from dataclasses import dataclass
from typing import Any

from loadtests._scripted import RoundsLLM
from pipeline.log import CallLeases, EventLog, create_redis
from pipeline.session import LiveSession, SessionEngines
from pipeline.tools import CallContext, ServerTool, Toolbox
from schemas import (
    EventLogSettings,
    RedisSettings,
    SessionSettings,
    ToolCallDelta,
    ToolFunction,
    ToolSettings,
)

#: the booking's pauses around its side effect, and the lease (short: trials are quick)
BEFORE_S, AFTER_S, LEASE_S = 0.15, 0.15, 0.4
CALL = ToolCallDelta(index=0, id="call_book", name="book_table", arguments='{"people": 4}')


class BookTable(ServerTool):
    """Books a table: its side effect is keyed by the call id when ``idempotent``."""

    function = ToolFunction(name="book_table", description="Book a table.", parameters={
        "type": "object", "properties": {"people": {"type": "integer"}},
        "required": ["people"]})

    def __init__(self, redis: Any, prefix: str, idempotent: bool) -> None:
        self.redis, self.prefix = redis, prefix
        self.idempotent = idempotent

    async def call(self, arguments: dict[str, Any], context: CallContext) -> str:
        await self.redis.rpush(f"{self.prefix}:runs", context.call_id)
        await asyncio.sleep(BEFORE_S)
        # idempotent: one member per call id; otherwise one per run
        booking = context.call_id if self.idempotent else uuid.uuid4().hex
        await self.redis.sadd(f"{self.prefix}:bookings", booking)
        await asyncio.sleep(AFTER_S)
        return json.dumps({"booked": True, "people": arguments["people"]})


def _settings() -> SessionSettings:
    return SessionSettings(tools=[{"type": "server", "name": "book_table"}])  # type: ignore[list-item]


async def _open(redis: Any, prefix: str, session_id: str, idempotent: bool,
                rounds: list[list[str | ToolCallDelta]]) -> LiveSession:
    log = EventLog(redis, EventLogSettings(key_prefix=prefix))
    tool = BookTable(redis, prefix, idempotent)
    toolbox = Toolbox(ToolSettings(allow=("book_table",), lease_s=LEASE_S), [tool],
                      CallLeases(redis, log.keys, LEASE_S))
    return await LiveSession.open(session_id, log, SessionEngines(llm=RoundsLLM(rounds)),
                                  create=_settings(), toolbox=toolbox)


async def _replica(redis_url: str, prefix: str, session_id: str, idempotent: bool) -> None:
    """The child: the turn that calls the tool, run until it ends (or the child is killed)."""
    redis = create_redis(redis_url, RedisSettings())
    session = await _open(redis, prefix, session_id, idempotent, [[CALL], ["Booked."]])
    await session.submit_text("Book a table for four.")
    await session.wait_response()
    await session.close()
    await redis.aclose()


@dataclass(frozen=True)
class Trial:
    seed: int
    kill_after_s: float
    bookings: int
    runs: int
    ended_as: str  # the call's end: output, failed:<code>
    answered: bool  # the turn went on to a reply after the call
    #: the replica logged the call's end before it died (then nobody goes on with a reply
    #: it did not finish: a reply cut without a call in flight is not recovered)
    ended_before_kill: bool = False


def _answered_after(events: list[Any], end: Any) -> bool:
    return any(e.type == "response.done" for e in events[events.index(end):])


async def _recovered(log: EventLog, session_id: str, before: bool,
                     timeout_s: float = 30) -> tuple[list[Any], Any]:
    """The session's events once the call has an end (and, unless it ended before the kill,
    a reply after it), with that end; past ``timeout_s`` an error that lists what was logged,
    so a trial that never recovers says where it stopped."""
    events: list[Any] = []
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                events = await log.read_all(session_id)
                ends = [e for e in events if e.type in ("tool.call.output", "tool.call.failed")]
                if ends and (before or _answered_after(events, ends[0])):
                    return events, ends[0]
                await asyncio.sleep(0.02)
    except TimeoutError:
        logged = ", ".join(e.type for e in events)
        raise TimeoutError(f"{session_id}: no recovered call end within {timeout_s:g} s "
                           f"(ended before the kill: {before}); logged: {logged}") from None


async def run_trial(redis_url: str, prefix: str, seed: int, *, idempotent: bool) -> Trial:
    """One seeded trial (see the module docstring); ``prefix`` is the trial's own."""
    rng = random.Random(seed)
    kill_after = rng.uniform(0, BEFORE_S + AFTER_S + 0.1)
    session_id = f"sess_crash{seed}"
    redis = create_redis(redis_url, RedisSettings())
    log = EventLog(redis, EventLogSettings(key_prefix=prefix))
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadtests._tool_crash", redis_url, prefix, session_id,
        "1" if idempotent else "0")
    try:
        async with asyncio.timeout(60):
            while not any(e.type == "tool.call.started" for e in await log.read_all(session_id)):
                if child.returncode is not None:
                    raise RuntimeError(f"the replica exited with {child.returncode}")
                await asyncio.sleep(0.01)
        await asyncio.sleep(kill_after)
        if child.returncode is None:
            child.send_signal(signal.SIGKILL)
        await child.wait()
        before = any(e.type in ("tool.call.output", "tool.call.failed")
                     for e in await log.read_all(session_id))
        session = await _open(redis, prefix, session_id, idempotent, [["Your table is booked."]])
        try:
            # the call's end, and the reply after it (when it was recovered); any event may
            # follow that reply's response.done, so it is looked for after the end, not last
            events, end = await _recovered(log, session_id, before)
        finally:
            await session.close()
        ended_as = ("output" if end.type == "tool.call.output"
                    else f"failed:{end.data.code.value}")  # type: ignore[union-attr]
        bookings = await redis.scard(f"{prefix}:bookings")
        runs = await redis.llen(f"{prefix}:runs")
        answered = _answered_after(events, end)
        return Trial(seed, round(kill_after, 3), bookings, runs, ended_as, answered, before)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
        keys = [key async for key in redis.scan_iter(match=f"{prefix}:*", count=500)]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


if __name__ == "__main__":
    url, key_prefix, session, flag = sys.argv[1:5]
    asyncio.run(_replica(url, key_prefix, session, flag == "1"))
