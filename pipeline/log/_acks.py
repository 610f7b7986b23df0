"""An append that counts only once replicas confirmed it (``WAIT`` on its connection).

``WAIT n timeout`` answers how many replicas acknowledged the writes *of the connection it
is sent on*, so it must follow the append script on the same connection: a pipeline of
two commands (standalone), or a cluster pipeline with ``WAIT`` aimed at the node that
holds the session's slot. A script cannot call ``WAIT`` itself.

Behind Sentinel, too few confirmations may mean we wrote to a master the sentinels have
since replaced: after a failover that did not kill it (``SENTINEL FAILOVER``, a healed
partition) the old master keeps accepting writes, with no replica, until the sentinels
get round to demoting it (about ten seconds), and redis-py's pool keeps its connections
to it. So the sentinels are asked where the master is, which drops the pool's idle
connections if it moved, and the caller's retry goes to the new one.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError, ResponseError

from pipeline.log import _lua
from pipeline.log.redis_client import is_sentinel
from schemas import EventLogError, EventLogSettings

logger = logging.getLogger(__name__)


async def append_acked(
    redis: Redis,
    script: AsyncScript,
    keys: list[str],
    args: list[bytes | str | int],
    settings: EventLogSettings,
    *,
    cluster: bool,
) -> Any:
    """Run the append script, then ``WAIT``; the script's reply once enough replicas have
    it, else a transient :class:`EventLogError` (the append is on the primary: the caller's
    retry with the same ids finds it a duplicate)."""
    acks, timeout = settings.replica_acks, settings.replica_ack_timeout_ms
    if cluster:
        await redis.initialize()  # the slot map, for get_node_from_key (no-op once known)
    for attempt in range(2):
        async with redis.pipeline(transaction=False) as pipe:
            if cluster:
                node = redis.get_node_from_key(keys[0])  # type: ignore[attr-defined]
                # evalsha() is barred from cluster pipelines; the command is routed by key
                pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
                pipe.execute_command("WAIT", acks, timeout, target_nodes=node)
            else:
                await script(keys=keys, args=args, client=pipe)
                pipe.execute_command("WAIT", acks, timeout)
            try:
                reply, confirmed = await pipe.execute()
            except ResponseError as exc:
                if attempt or not _no_script(exc):
                    raise
                await redis.script_load(_lua.APPEND)  # a new node or a restarted one
                continue
        if int(confirmed) < acks:
            logger.warning("an append to %s reached %d of %d replicas in %d ms",
                           keys[0], int(confirmed), acks, timeout)
            if is_sentinel(redis):  # a master replaced but alive has no replica either
                with contextlib.suppress(RedisError, OSError):
                    await redis.connection_pool.get_master_address()  # type: ignore[attr-defined]
            raise EventLogError(
                f"the event log did not confirm the append on {acks} replica(s) in "
                f"{timeout} ms; try again")
        return reply
    raise AssertionError("unreachable: the second attempt returns or raises")


def _no_script(exc: ResponseError) -> bool:
    """The server does not know the script yet (a new or restarted node)."""
    text = str(exc)
    return isinstance(exc, NoScriptError) or "NOSCRIPT" in text or "No matching script" in text
