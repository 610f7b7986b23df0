"""One failover trial, whatever fails over (Redis Cluster or Sentinel): the server holding
a live session is SIGKILLed while a writer appends to it and a reader follows it.

The writer appends a reply's events with ``replica_acks=1``, retrying each one with its
stamped id until it is acknowledged, as the Gateway does; the reader follows the session
through :class:`LogFanout`, resuming from the last id it received whenever its tail ends.
At a seeded point a :class:`Failover` kills the session's primary, waits until a replica
has taken over, and starts the dead server again as a replica (until then ``WAIT 1``
cannot be met and appends are answered "try again", which the writer does).

:func:`check_trial` then asserts: every acknowledged event and every event the reader
received is in the log with the same id and content; nothing is in it twice; the next
turn appended; a resume from the reader's last id is exact or ``resync_required``.

``VOXLINE_FAILOVER_TRIALS`` sets the number of seeded trials (:func:`trial_count`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from pipeline.log import EventLog, LogFanout, StreamId, create_redis
from schemas import (
    Event,
    EventLogError,
    EventLogSettings,
    ResyncRequiredError,
    VoxlineError,
)
from tests.support.event_samples import typed_text as text

EVENTS = 60
S = TypeVar("S", bound="Servers")
DEADLINE_S = 60.0


def trial_count(default: int) -> int:
    """How many seeded trials to run: ``VOXLINE_FAILOVER_TRIALS``, else ``default``."""
    return int(os.environ.get("VOXLINE_FAILOVER_TRIALS", str(default)))


class Failover(Protocol):
    """What a trial kills and how it comes back; blocking work runs in threads."""

    async def kill(self, log: EventLog, session: str) -> None:
        """SIGKILL the primary that holds ``session``'s stream."""

    async def promoted(self) -> None:
        """Return once a replica of the killed primary has taken over."""

    async def restart(self) -> None:
        """Start the killed server again (it rejoins as a replica)."""


@dataclass
class Trial:
    acked: list[Event] = field(default_factory=list)
    received: list[Event] = field(default_factory=list)
    stored: list[Event] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    resumes: Counter[str] = field(default_factory=Counter)
    #: after the trial, a resume from the reader's last id: exact, resync_required or gap
    resume: str = ""
    #: seconds from the kill to the replica's promotion
    promoted_s: float = 0.0
    #: seconds from the kill to the first append acknowledged after the restart
    outage_s: float = 0.0

    def summary(self, seed: int) -> str:
        return (f"seed {seed}: promoted {self.promoted_s:.2f} s, outage {self.outage_s:.2f} s, "
                f"errors {dict(self.errors)}, resumes {dict(self.resumes)}, "
                f"received {len(self.received)}, resume {self.resume}")



async def run_trial(url: str, failover: Failover, seed: int) -> Trial:
    rng = random.Random(seed)
    trial = Trial()
    redis = create_redis(url)
    log = EventLog(redis, EventLogSettings(key_prefix=f"fo{seed}", replica_acks=1))
    fanout = LogFanout(log, block_ms=500)
    session = f"s-{uuid.uuid4().hex[:8]}"
    kill_at = rng.randint(5, EVENTS // 2)
    reached, restarted = asyncio.Event(), asyncio.Event()
    killed = 0.0

    async def crash() -> None:
        nonlocal killed
        await reached.wait()
        await asyncio.sleep(rng.random() * 0.005)  # lands among the writer's appends
        killed = time.monotonic()
        await failover.kill(log, session)
        await failover.promoted()
        trial.promoted_s = time.monotonic() - killed
        await failover.restart()
        restarted.set()

    done = asyncio.Event()
    reader = asyncio.create_task(_read(fanout, session, trial, done))
    crasher = asyncio.create_task(crash())
    try:
        for index in range(EVENTS):
            if index == kill_at:
                reached.set()
            event = log.stamp([text(session, f"word {index}")])[0]
            await _append_until_acked(log, event, trial)
            if restarted.is_set() and not trial.outage_s:
                trial.outage_s = time.monotonic() - killed
            trial.acked.append(event)
            await asyncio.sleep(rng.random() * 0.01)
        await crasher
        # the next turn works
        trial.acked.append(await log.append(text(session, "next turn")))
        if not trial.outage_s:  # the restart came after the reply's last append
            trial.outage_s = time.monotonic() - killed
        await asyncio.sleep(1.0)  # the reader catches up
    finally:
        done.set()
        for task in (reader, crasher):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await fanout.aclose()
    try:  # what the log holds afterwards, and what a client resuming now would get
        trial.stored = list(await log.read_all(session))
        trial.resume = await _resume(log, session, trial)
    finally:
        await redis.aclose()
    return trial


class Servers(Protocol):
    """What a trial runs on: a setup of our own that it can reach and stop."""

    @property
    def url(self) -> str: ...

    def stop(self) -> None: ...


async def run_checked_trial(start: Callable[[], S], failover_of: Callable[[S], Failover],
                            seed: int) -> None:
    """One seeded trial on servers of its own (started, then always stopped), checked."""
    servers = await asyncio.to_thread(start)
    try:
        trial = await asyncio.wait_for(
            run_trial(servers.url, failover_of(servers), seed), timeout=3 * DEADLINE_S)
    finally:
        await asyncio.to_thread(servers.stop)
    print(trial.summary(seed))
    check_trial(trial)


def check_trial(trial: Trial) -> None:
    stored = trial.stored
    by_id = {event.id: event for event in stored}
    assert len(by_id) == len(stored)  # no id twice
    contents = [event.data.text for event in stored]  # type: ignore[union-attr]
    assert len(set(contents)) == len(contents)  # no event twice
    for event in trial.acked:
        assert by_id[event.id].model_dump() == event.model_dump()
    for event in trial.received:
        assert event.id in by_id and by_id[event.id].model_dump() == event.model_dump()
    assert set(trial.resumes) <= {"EventLogError", "OverloadedError", "resync_required"}
    assert trial.resume in {"exact", "resync_required"}


async def _append_until_acked(log: EventLog, event: Event, trial: Trial) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            await log.append(event)
            return
        except EventLogError as exc:
            trial.errors[f"transient={exc.transient}: {exc.message[:60]}"] += 1
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def _read(fanout: LogFanout, session: str, trial: Trial, done: asyncio.Event) -> None:
    """A client: follow the session, resuming from its last id whenever the tail ends."""
    while not done.is_set():
        after = trial.received[-1].id if trial.received else None
        try:
            async for event in fanout.tail(session, after=after):
                trial.received.append(event)
        except ResyncRequiredError:
            trial.resumes["resync_required"] += 1
            return
        except VoxlineError as exc:
            trial.resumes[type(exc).__name__] += 1
            await asyncio.sleep(0.1)


async def _resume(log: EventLog, session: str, trial: Trial) -> str:
    """What a client resuming from its last id gets now, as the Gateway judges it: its
    id must be one the log issued, and what it saw plus what follows must be the log."""
    last = trial.received[-1].id if trial.received else None
    try:
        if last is not None and not await log.issued(session, StreamId.parse(last)):
            return "resync_required"
        rest = await log.read_all(session, last)
    except ResyncRequiredError:
        return "resync_required"
    seen = [event.model_dump() for event in [*trial.received, *rest]]
    return "exact" if seen == [event.model_dump() for event in trial.stored] else "gap"
