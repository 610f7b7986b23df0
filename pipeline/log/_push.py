"""The appends Redis pushes to a live reader: a sharded Pub/Sub subscription per partition.

Why: a live read that blocks on its partition's changes stream is woken by *every*
append there, and each wake is an XREAD round trip. With sessions spread over readers
(as sockets spread over Gateways) every reader follows every partition, so each event
cost as many reads as there were readers, all but one finding nothing of theirs (the
16-core run of issue 49: 4.5–5.3 reads an event with 6–7 readers). Redis can instead
send each append to the readers that follow its session: the append script publishes
(``SPUBLISH``) the very fields of its changes entry on a channel named as the session's
stream (a channel is not a key, and the name puts it in the stream's slot), and a reader
subscribes (``SSUBSCRIBE``) to the streams it follows. A reader then hears only its own
sessions, and a small event arrives whole, with no read at all.

Nor is a reader pushed its own process's appends when no one else follows them: a
Gateway appends its sessions' replies and hands its sockets the events it holds
(:class:`pipeline.log.LogFanout`), so the push of each was sent, read and dropped (some
7–10 % of a live Gateway's CPU per event, issue 49). The writer says when its own
reader is subscribed to the stream (:attr:`EventLog.subscribed_here`), and the script
publishes then only if the channel has more than that one subscriber (``PUBSUB
SHARDNUMSUB``, on the node the script runs on, where readers subscribe). A reader that
joins after the script ran reads the stream once subscribed, as always. The writer's
reader keeps its subscription while an append of its process to the stream is in
flight, so that the count includes it; if that subscription was lost and not yet
noticed (or closed to start the read over), another reader misses the push and its
sweep brings the append (``push_only`` never skips a publish).

Pub/Sub keeps nothing: a message sent while a subscription was down is gone. A
subscription that fails, or that Redis ends itself (a shard channel's slot moved away),
fails the read, which starts over as after any outage: subscribed again *before* every
stream is read from its cursor, so no append falls between the two. And the changes
stream stays the truth, a push only a shortcut: the live read still reads the changes
stream from its cursor, without blocking, every :data:`SWEEP_S`
(:mod:`pipeline.log._live_read`), so an append that was never pushed (a writer with
``live_read`` = ``changes``, or of an older version) is late by at most that, never
unheard. With ``push_only`` no changes stream is written or read: one write less an
append, and no reader reads every append of its partitions; for a deployment whose
every Gateway pushes.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from typing import Any

import msgpack  # type: ignore[import-untyped]
from redis.asyncio import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pipeline.log._blocking import BlockingReads
from pipeline.log._resp import RespProtocol

#: how often a pushed live read reads the changes stream too (seconds): the most an
#: append whose push was lost waits
SWEEP_S = 0.5
#: pushed appends held for the read at most; past it they are dropped and the read
#: reads every stream from its cursor instead (the log has them all)
INBOX_LIMIT = 10_000


class Subscription(BlockingReads):
    """One partition's shard-channel subscription, on a connection of its own.

    Its connection's replies are read as they arrive, by a protocol (no task: a push is
    parsed in the loop callback that receives its bytes; :mod:`pipeline.log._resp`):
    pushed appends queue in :attr:`inbox` (as changes-entry fields) and set ``changed``;
    confirmations of :meth:`subscribe` release its waiter.
    Only the owner's task calls :meth:`subscribe`, :meth:`unsubscribe` and :meth:`aclose`.
    It takes :class:`BlockingReads`' way to its node (the slot's primary, the master behind
    Sentinel, a fresh connection after a failure), never its ``xread``: a subscribed
    connection takes no other command.
    """

    def __init__(self, redis: Any, changed: asyncio.Event) -> None:
        super().__init__(redis)
        self.changed = changed
        #: pushed appends not handled yet: each a changes entry's fields, as Redis lists
        #: them (``[name, value, ...]``)
        self.inbox: deque[list[bytes]] = deque()
        #: set when the inbox overflowed (and was emptied): the owner reads everything
        self.overflowed = False
        #: why the subscription ended (the owner raises it); ``None`` while it holds
        self.error: RedisError | None = None
        #: what reads the subscribed connection (None: not open)
        self._pushes: _Pushes | None = None
        self._confirmations: deque[asyncio.Future[None]] = deque()
        #: unsubscriptions sent and not yet confirmed, by channel
        self._leaving: Counter[bytes] = Counter()

    @property
    def node(self) -> tuple[str, int] | None:
        return self._node

    async def subscribe(self, keys: list[str], near: str) -> None:
        """Subscribe to these streams' channels (``near``: a key of their slot) and wait
        until Redis confirms them all: an append after that is pushed here."""
        if not keys:
            return
        if self.error is not None:  # ended meanwhile: nothing would confirm
            raise self.error
        pushes, timeout_s = await self._open(near)
        if self.error is not None:  # lost while opening (moved to another node)
            raise self.error
        waiters = [asyncio.get_running_loop().create_future() for _ in keys]
        self._confirmations.extend(waiters)
        try:
            async with asyncio.timeout(timeout_s):
                pushes.send("SSUBSCRIBE", *keys)
                await asyncio.gather(*waiters)
        except TimeoutError as exc:  # asyncio's: the server did not answer in time
            error = RedisTimeoutError(f"no answer to a subscription in {timeout_s} s")
            self._fail(error)
            raise error from exc
        if self.error is not None:
            raise self.error

    async def unsubscribe(self, keys: list[str]) -> None:
        """Leave these streams' channels (their confirmations are not waited for)."""
        pushes = self._pushes
        if not keys or pushes is None or pushes.closed:
            return
        self._leaving.update(key.encode() for key in keys)  # a count per channel
        pushes.send("SUNSUBSCRIBE", *keys)

    async def aclose(self) -> None:
        self._pushes = None  # its close, whenever it comes, is not this subscription's
        await super().aclose()
        self._release(RedisConnectionError("the subscription was closed"))
        # closed, it starts clean: the next subscribe opens a new one
        self.error, self.overflowed = None, False
        self.inbox.clear()
        self._leaving.clear()

    async def _open(self, near: str) -> tuple[_Pushes, float]:
        connection, timeout_s = await self._connect(near)
        if self._pushes is None:
            await connection.connect()  # type: ignore[no-untyped-call]
            # no timeout (the connection has none): a quiet subscription is a healthy
            # one, and the read's sweep finds a dead server
            self._pushes = _Pushes(self, connection)
        return self._pushes, timeout_s

    def _take(self, reply: Any) -> None:
        if isinstance(reply, RedisError):  # an error reply (a refused subscription)
            self._fail(reply)
            return
        kind = reply[0]
        if kind == b"smessage":
            if len(self.inbox) >= INBOX_LIMIT:
                self.inbox.clear()
                self.overflowed = True
            self.inbox.append(msgpack.unpackb(reply[2], raw=True))
            self.changed.set()
        elif kind == b"ssubscribe":
            if self._confirmations:
                waiter = self._confirmations.popleft()
                if not waiter.done():
                    waiter.set_result(None)
        elif kind == b"sunsubscribe" and self._leaving[reply[1]] > 0:
            self._leaving[reply[1]] -= 1
        elif kind == b"sunsubscribe":
            # Redis ended it (the slot moved to another node): what is pushed now goes
            # elsewhere, so the read starts over there
            self._fail(RedisConnectionError("Redis ended a shard channel subscription"))

    def _fail(self, error: RedisError) -> None:
        if self.error is None:
            self.error = error
        self._release(error)
        self.changed.set()

    def _release(self, error: RedisError) -> None:
        while self._confirmations:
            waiter = self._confirmations.popleft()
            if not waiter.done():
                waiter.set_exception(error)


class _Pushes(RespProtocol):
    """Reads a subscribed connection: each message to its subscription, as it arrives."""

    def __init__(self, subscription: Subscription, connection: Connection) -> None:
        super().__init__()
        self._subscription = subscription
        self._connection = connection
        self.take_over(connection)

    def send(self, *command: Any) -> None:
        self.write(self._connection.pack_command(*command))

    def replied(self, reply: Any) -> None:
        if self._subscription._pushes is self:
            self._subscription._take(reply)

    def lost(self, why: str) -> None:
        if self._subscription._pushes is self:
            self._subscription._fail(RedisConnectionError(f"the subscription was lost: {why}"))
