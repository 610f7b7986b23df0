"""Appends issued together go to Redis together: one pipeline per turn of the event loop.

A Gateway appends for many sessions at once (each reply's deltas, sentences, audio), one
script call each. Sent one by one, every call pays redis-py's whole round: a connection
from the pool, a write, a read, the pool again; measured on the log bench, that was most
of an append's client CPU (issue 49). :class:`ScriptPipeliner` collects the calls made in
one turn of the event loop and sends them as one pipeline (no transaction: each call is
its own atomic script, as before) on one connection, then answers each caller with its
own reply or error. Nothing waits for a batch to fill: a call alone is sent as soon as
the loop comes round (no timer, no added latency), and a full batch at once.

Order is kept where it matters: calls of one pipeline to one server run in the order
they were made, so two appends of one session made in one turn land in that order.
What a caller sees is what it saw without pipelining: the script's reply, a
``ResponseError`` of its own, or the connection error of the whole pipeline (each
append then retries with its ids, which makes a retry of one that landed a duplicate,
never a second write). A server that lost its scripts (a restart, a failover to a
replica that never ran them) answers NOSCRIPT per call; those calls go through the
script object alone, which loads it.

A batch is sent outside its callers' tasks (in the loop callback that collects it, or a
task of its own where a connection must be opened first): a caller cancelled while its
call is in flight leaves the others' replies whole (its own append may still land, as
one cancelled mid-command always could).

By default (``EventLogSettings.direct_appends``) a batch does not go through redis-py's
pipeline at all but onto one held connection per server (:mod:`pipeline.log._direct`):
the same commands in the same order, with none of the client's per-command layers (a
writer at 3,000 appends/s: 31-32 % of a core with redis-py's pipeline, 24 % direct).
Whatever that path does not answer itself (a redirection, a lost script, a lost or
silent connection, a full send buffer) goes through redis-py as above, in the batch's
order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError

from pipeline.log._direct import Channel, DirectChannels, Flight

#: calls in one pipeline at most; past it the batch is sent at once and another begins
MAX_BATCH = 256

_Call = tuple[list[Any], list[Any], "asyncio.Future[Any]"]


class ScriptPipeliner:
    """Calls of one registered script, sent one pipeline per turn of the loop."""

    def __init__(self, redis: Redis, script: AsyncScript, *, max_batch: int = MAX_BATCH,
                 direct: bool = True) -> None:
        self.redis = redis
        self.script = script
        self.max_batch = max_batch
        self._direct = direct and DirectChannels.supported(redis)
        #: one held connection per server for the calls (None: all through redis-py)
        self.direct: DirectChannels | None = None
        self._queued: list[_Call] = []
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running: set[asyncio.Task[None]] = set()
        #: pipelines sent and calls in them (figures for tests and benchmarks)
        self.pipelines = 0
        self.calls = 0
        #: calls sent on a direct channel (each answered there, or by redis-py after it)
        self.direct_calls = 0

    async def __call__(self, keys: list[Any], args: list[Any]) -> Any:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new loop (tests run one each): nothing carries over
            self._queued, self._scheduled, self._loop = [], False, loop
            self.direct = DirectChannels(self.redis) if self._direct else None
        future: asyncio.Future[Any] = loop.create_future()
        self._queued.append((keys, args, future))
        if len(self._queued) >= self.max_batch:
            self._send()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._send)
        return await future

    def _send(self) -> None:
        batch, self._queued, self._scheduled = self._queued, [], False
        if not batch:
            return
        self.pipelines += 1
        self.calls += len(batch)
        if self.direct is not None:  # every call's channel open: sent now, no task
            routed = self.direct.ready([keys for keys, _, _ in batch])
            if routed is not None:
                try:
                    self._fly(batch, routed)
                except BaseException as exc:  # a bug: no caller may wait forever
                    _fail(batch, exc)
                    raise
                return
        self._spawn(self._run(batch))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work, name="log-append-pipeline")
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    async def _run(self, batch: list[_Call]) -> None:
        if self.direct is None:
            await self._via_client(batch)
            return
        try:
            routed, rest = await self._route(batch)
            if routed:
                flight = self._fly(batch[:len(batch) - len(rest)], routed)
                if rest:
                    await flight.wait()  # a later call may be of the same session
        except BaseException as exc:  # not a reply's error: no caller may wait forever
            _fail(batch, exc)
            raise
        if rest:
            await self._via_client(rest)

    async def _route(self, batch: list[_Call]) -> tuple[dict[Channel, list[int]], list[_Call]]:
        """The channel of each call (opening those not open yet), and the calls from the
        first one no channel took on (each later one may be of its session, and must not
        land before it): those go through redis-py."""
        assert self.direct is not None
        routed: dict[Channel, list[int]] = {}
        for at, (keys, _, _) in enumerate(batch):
            try:
                channel = await self.direct.channel_for(keys[0] if keys else None)
            except (RedisError, OSError):  # no connection to open: redis-py retries
                channel = None
            if channel is None:
                return routed, batch[at:]
            routed.setdefault(channel, []).append(at)
        return routed, []

    def _fly(self, calls: list[_Call], routed: dict[Channel, list[int]]) -> Flight:
        """Write each channel's calls at once; their replies answer the callers."""
        flight = Flight(calls, lambda again: self._spawn(self._via_client(again)))
        for channel, ats in routed.items():
            packed: list[bytes] = []
            for at in ats:
                keys, args, _ = calls[at]
                packed += channel.connection.pack_command(  # (bytes: no split of it)
                    b"EVALSHA", self.script.sha, len(keys), *keys, *args)
            self.direct_calls += len(ats)
            channel.replies.send(packed, flight, ats)
        return flight

    async def _via_client(self, batch: list[_Call]) -> None:
        """redis-py's way: a call alone as a script call, more as one pipeline."""
        if len(batch) == 1:  # no pipeline's bookkeeping for a call alone
            await self._alone(batch[0])
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for keys, args, _ in batch:
                    pipe.execute_command("EVALSHA", self.script.sha, len(keys), *keys, *args)
                replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # the connection: every call of it failed alike
            _fail(batch, exc)
            if not isinstance(exc, Exception):
                raise
            return
        again = []
        for call, reply in zip(batch, replies, strict=True):
            future = call[2]
            if future.done():
                continue
            if isinstance(reply, NoScriptError):
                again.append(call)
            elif isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)
        for call in again:
            await self._alone(call)

    async def _alone(self, call: _Call) -> None:
        keys, args, future = call
        try:
            reply = await self.script(keys=keys, args=args)
        except BaseException as exc:
            _fail([call], exc)
            if not isinstance(exc, Exception):
                raise
        else:
            if not future.done():
                future.set_result(reply)


def _fail(calls: list[_Call], exc: BaseException) -> None:
    """Answer every caller of ``calls`` still waiting with ``exc`` (a cancel of our task:
    their calls are cancelled)."""
    for *_, future in calls:
        if future.done():
            continue
        if isinstance(exc, Exception):
            future.set_exception(exc)
        else:
            future.cancel()
