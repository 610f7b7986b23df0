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

The pipeline runs in a task of its own, not the callers': a caller cancelled while its
call is in flight leaves the others' replies whole (its own append may still land, as
one cancelled mid-command always could).
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

#: calls in one pipeline at most; past it the batch is sent at once and another begins
MAX_BATCH = 256

_Call = tuple[list[Any], list[Any], "asyncio.Future[Any]"]


class ScriptPipeliner:
    """Calls of one registered script, sent one pipeline per turn of the loop."""

    def __init__(self, redis: Redis, script: AsyncScript, *, max_batch: int = MAX_BATCH) -> None:
        self.redis = redis
        self.script = script
        self.max_batch = max_batch
        self._queued: list[_Call] = []
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running: set[asyncio.Task[None]] = set()
        #: pipelines sent and calls in them (figures for tests and benchmarks)
        self.pipelines = 0
        self.calls = 0

    async def __call__(self, keys: list[Any], args: list[Any]) -> Any:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new loop (tests run one each): nothing carries over
            self._queued, self._scheduled, self._loop = [], False, loop
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
        task = asyncio.create_task(self._run(batch), name="log-append-pipeline")
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[_Call]) -> None:
        self.pipelines += 1
        self.calls += len(batch)
        if len(batch) == 1:  # no pipeline's bookkeeping for a call alone
            await self._alone(batch[0])
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for keys, args, _ in batch:
                    pipe.execute_command("EVALSHA", self.script.sha, len(keys), *keys, *args)
                replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # the connection: every call of it failed alike
            for *_, future in batch:
                _fail(future, exc)
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
            _fail(future, exc)
            if not isinstance(exc, Exception):
                raise
        else:
            if not future.done():
                future.set_result(reply)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    """Answer a caller with ``exc`` (a cancel of our task: the call is cancelled)."""
    if future.done():
        return
    if isinstance(exc, Exception):
        future.set_exception(exc)
    else:
        future.cancel()
