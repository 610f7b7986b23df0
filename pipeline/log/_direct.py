"""Appends written straight onto a connection per server, their replies matched as they arrive.

Sent through redis-py, each append pays its whole client: a cluster pipeline or a
command object, the slot and node looked up again, a connection from the pool and back,
a write wrapped in a timeout, a read awaited in a coroutine per reply. On the log bench
that was a quarter of a writer's CPU per event, and most of a Gateway's appends go one
by one (a delta per loop turn). :class:`DirectChannels` holds one connection per server
(a primary of a cluster, or the one standalone server) that only appends use: the
commands of a batch are written together, in the loop callback that collects them, and
a protocol hands each reply to its caller in order as the bytes arrive (hiredis parses
them: RESP2 or RESP3 alike), with no task, coroutine or timer per batch or reply (a
:class:`Flight` per batch, one watchdog timer per connection).

Only the common case goes this way. Anything else is answered by redis-py as before, by
:class:`pipeline.log._pipelining.ScriptPipeliner`'s fallback: a redirection (a slot that
moved: redis-py learns the new routing there, and this module asks it next time), a
script the server no longer has, a connection that failed or a reply that did not come
within the socket timeout (the channel is closed; a later batch opens another), and a
channel whose send buffer is full. An append is safe to send twice (its ids make a second
landing a duplicate), so a call that may have landed before its channel failed is simply
sent again.

The connection is one of the client's own (from its pool, or from the cluster node's),
held for as long as it lives, so closing the client closes it, and the pool's bound
counts it. It is authenticated, given its database and name by redis-py as any other;
only then are its replies read here.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    NoScriptError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from pipeline.log._cluster_client import BoundedCluster
from pipeline.log._resp import RespProtocol
from pipeline.log.redis_client import is_cluster, is_sentinel

#: how long a reply may take where the client sets no socket timeout
DEFAULT_TIMEOUT_S = 5.0

#: what a direct call is sent again for, through redis-py, which handles it: a moved slot
#: (it learns the routing), a lost script (it loads it), a lost connection (its retry
#: policy; the append's ids make a second landing a duplicate)
CLIENTS_TO_ANSWER = (MovedError, AskError, TryAgainError, ClusterDownError, NoScriptError,
                     RedisConnectionError)


class Flight:
    """One batch's calls on the direct channels. Each reply answers its caller as it
    arrives (no task, no timer of its own); the calls redis-py must answer instead are
    handed to ``again`` together, in batch order, once every reply is in (a moved slot,
    a lost script or a lost connection fails every later call of its session too, so
    none of those landed before them). ``calls[i][2]`` is the caller's future."""

    def __init__(self, calls: list[Any],
                 again: Callable[[list[Any]], asyncio.Future[None]]) -> None:
        self.calls = calls
        self._again_to = again
        self._left = len(calls)
        self._again: list[int] = []
        self._done: asyncio.Future[None] | None = None
        self._finished = False

    def answer(self, at: int, reply: Any) -> None:
        future = self.calls[at][2]
        if isinstance(reply, CLIENTS_TO_ANSWER):
            self._again.append(at)
        elif future.done():  # its caller was cancelled
            pass
        elif isinstance(reply, Exception):
            future.set_exception(reply)
        else:
            future.set_result(reply)
        self._left -= 1
        if not self._left:
            self._finish()

    async def wait(self) -> None:
        """Until every call is answered, the ones sent again to redis-py included."""
        if not self._finished:
            if self._done is None:
                self._done = asyncio.get_running_loop().create_future()
            await self._done

    def _finish(self) -> None:
        if not self._again:
            self._finished_now()
            return
        again = [self.calls[at] for at in sorted(self._again)]
        self._again_to(again).add_done_callback(lambda _: self._finished_now())

    def _finished_now(self) -> None:
        self._finished = True
        if self._done is not None and not self._done.done():
            self._done.set_result(None)


class _Replies(RespProtocol):
    """One connection's replies, each handed to the call that waits for it, in order; a
    call not answered within ``timeout_s`` closes the connection (one timer for all)."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        #: (flight, index in it, when its reply is due): in the order sent
        self._waiting: deque[tuple[Flight, int, float]] = deque()
        self._timeout_s = timeout_s
        self._timer: asyncio.TimerHandle | None = None

    def send(self, packed: list[bytes], flight: Flight, ats: list[int]) -> None:
        """Write the commands of ``flight``'s calls ``ats`` (``packed``, in order) at once."""
        assert not self.closed
        loop = asyncio.get_running_loop()
        due = loop.time() + self._timeout_s
        self._waiting.extend((flight, at, due) for at in ats)
        if self._timer is None:
            self._timer = loop.call_at(due, self._check)
        self.write(packed)

    def _check(self) -> None:
        self._timer = None
        if not self._waiting:
            return
        due = self._waiting[0][2]
        loop = asyncio.get_running_loop()
        if loop.time() >= due:
            self.close("no reply within the socket timeout")
        else:
            self._timer = loop.call_at(due, self._check)

    def replied(self, reply: Any) -> None:
        flight, at, _ = self._waiting.popleft()  # IndexError: a reply nobody asked for
        flight.answer(at, reply)

    def lost(self, why: str) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiting:
            flight, at, _ = self._waiting.popleft()
            flight.answer(at, RedisConnectionError(why))


class Channel:
    """A held connection of the client and the protocol that reads its replies."""

    def __init__(self, connection: Any, replies: _Replies,
                 node: ClusterNode | None) -> None:
        self.connection = connection
        self.replies = replies
        self.node = node

    @property
    def usable(self) -> bool:
        return not (self.replies.closed or self.replies.paused)


class DirectChannels:
    """One append channel per server of ``redis`` (a cluster's primaries, or the one
    standalone server; not behind Sentinel, whose master may move under a held
    connection: :func:`supported`)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._channels: dict[str, Channel] = {}
        self._opening: dict[str, asyncio.Future[Channel]] = {}
        self._cluster = is_cluster(redis)
        #: channels opened (a figure for tests)
        self.opened = 0

    def channels(self) -> list[Channel]:
        """The channels open now (for tests)."""
        return list(self._channels.values())

    @staticmethod
    def supported(redis: Redis) -> bool:
        """Not behind Sentinel; a cluster client must be ours (it lends places)."""
        return not is_sentinel(redis) and (not is_cluster(redis)
                                           or isinstance(redis, BoundedCluster))

    def ready(self, keys_of: list[list[Any]]) -> dict[Channel, list[int]] | None:
        """Each call's usable channel now, by its keys (``keys_of[i]``), without waiting
        for anything: ``{channel: [call index, ...]}``; None unless every call has one
        (the routing not learnt yet, a channel not open or paused: :meth:`channel_for`)."""
        if self._cluster and self.redis._initialize:  # type: ignore[attr-defined]
            return None
        routed: dict[Channel, list[int]] = {}
        for at, keys in enumerate(keys_of):
            place = self._place(keys[0] if keys else None)
            if place is None:
                return None
            channel = self._held(*place)
            if channel is None or channel.replies.paused:
                return None
            routed.setdefault(channel, []).append(at)
        return routed

    async def channel_for(self, key: Any) -> Channel | None:
        """The usable channel to the server that holds ``key`` (opened on first use);
        None where this call should go through redis-py (a full send buffer, a command
        with no key or a slot no node holds on a cluster)."""
        if self._cluster and self.redis._initialize:  # type: ignore[attr-defined]
            await self.redis.initialize()  # the routing first
        place = self._place(key)
        if place is None:
            return None
        name, node = place
        channel = self._held(name, node)
        if channel is not None:
            return None if channel.replies.paused else channel  # (paused: let it drain)
        opening = self._opening.get(name)
        if opening is None:
            opening = self._opening[name] = asyncio.ensure_future(self._open(name, node))
        try:
            channel = await asyncio.shield(opening)
        finally:
            if opening.done():
                self._opening.pop(name, None)
        return channel if channel.usable else None

    def _held(self, name: str, node: ClusterNode | None) -> Channel | None:
        """The channel open to that server now (paused or not), if there is one."""
        channel = self._channels.get(name)
        if channel is None or channel.node is not node or channel.replies.closed:
            return None
        return channel

    def _place(self, key: Any) -> tuple[str, ClusterNode | None] | None:
        """The server that holds ``key`` (its name, its cluster node), by the routing
        known now; None: a command with no key or a slot no node holds (mid-reshard),
        which redis-py routes."""
        if not self._cluster:
            return "", None
        if key is None:
            return None
        node = self.redis.get_node_from_key(key)  # type: ignore[attr-defined]
        return None if node is None else (node.name, node)

    async def _open(self, name: str, node: ClusterNode | None) -> Channel:
        await self._give_back_stale(name)
        if node is not None:
            await self.redis.take_place()  # type: ignore[attr-defined]  # BoundedCluster's
            connection: Any = node.acquire_connection()
        else:
            connection = await self.redis.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await connection.connect()
        except BaseException:
            await self._release(connection, node)
            raise
        replies = _Replies(connection.socket_timeout or DEFAULT_TIMEOUT_S)
        replies.take_over(connection)
        channel = self._channels[name] = Channel(connection, replies, node)
        self.opened += 1
        return channel

    async def _give_back_stale(self, opening: str) -> None:
        """Give back (connection and place) the channel being replaced, every closed
        one, and those to servers that are no longer primaries (after a failover): a
        channel is only ever replaced under its own server's name."""
        primaries = ({node.name for node in self.redis.get_primaries()}  # type: ignore[attr-defined]
                     if self._cluster else {""})
        for name, channel in list(self._channels.items()):
            if name == opening or channel.replies.closed or name not in primaries:
                del self._channels[name]
                await self._give_back(channel)

    async def _give_back(self, channel: Channel) -> None:
        channel.replies.close("replaced")
        await channel.connection.disconnect(nowait=True)
        await self._release(channel.connection, channel.node)

    async def _release(self, connection: Any, node: ClusterNode | None) -> None:
        if node is not None:
            node.release(connection)
            self.redis.give_place()  # type: ignore[attr-defined]
        else:
            await self.redis.connection_pool.release(connection)
