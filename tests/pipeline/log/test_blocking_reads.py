"""The live read's own connection (:class:`pipeline.log._blocking.BlockingReads`): XREAD
sent straight onto it answers as redis-py's ``xread`` does by default (a list of streams,
each entry's fields a dict), whichever protocol the connection speaks; an error
reply keeps the connection, a cancel drops it."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from pipeline.log import create_redis
from pipeline.log._blocking import BlockingReads

pytestmark = pytest.mark.redis


@pytest.mark.parametrize("protocol", [2, 3])
async def test_a_read_answers_as_redis_pys_xread(
    redis_url: str, key_prefix: str, protocol: int,
) -> None:
    client = Redis.from_url(redis_url, protocol=protocol)
    reads = BlockingReads(client)
    streams = {f"{key_prefix}:a": "0", f"{key_prefix}:b": "0"}
    try:
        await client.xadd(f"{key_prefix}:a", {"type": "x", "n": "1"})
        await client.xadd(f"{key_prefix}:a", {"type": "y", "n": "2"})
        await client.xadd(f"{key_prefix}:b", {"k": b"\x00\xff"})
        ours = await reads.xread(streams, count=10, block_ms=None)
        plain = Redis.from_url(redis_url)  # redis-py's default shape
        try:
            theirs = await plain.xread(streams, count=10)
        finally:
            await plain.aclose()
        assert ours == theirs and len(ours) == 2
        assert await reads.xread({f"{key_prefix}:a": "$"}, count=10, block_ms=10) is None
        assert reads.opened == 1
    finally:
        await reads.aclose()
        await client.aclose()


async def test_an_error_reply_keeps_the_connection_and_a_cancel_drops_it(
    redis_url: str, key_prefix: str,
) -> None:
    client = Redis.from_url(redis_url)
    reads = BlockingReads(client)
    try:
        await client.set(f"{key_prefix}:plain", "not a stream")
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await reads.xread({f"{key_prefix}:plain": "0"}, count=1, block_ms=None)
        assert await reads.xread({f"{key_prefix}:s": "0"}, count=1, block_ms=None) is None
        assert reads.opened == 1  # the same connection served on

        blocked = asyncio.create_task(
            reads.xread({f"{key_prefix}:s": "$"}, count=1, block_ms=5000))
        await asyncio.sleep(0.1)
        blocked.cancel()
        with pytest.raises(asyncio.CancelledError):
            await blocked
        await client.xadd(f"{key_prefix}:s", {"f": "v"})
        reply = await reads.xread({f"{key_prefix}:s": "0"}, count=1, block_ms=None)
        assert reply is not None and reply[0][1][0][1] == {b"f": b"v"}
        assert reads.opened == 2  # a fresh one: the old one may hold half a reply
    finally:
        await reads.aclose()
        await client.aclose()


async def test_a_slot_no_node_holds_is_a_connection_loss(
    redis_cluster_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Mid-reshard redis-py may know no node for a slot: a Redis error the live read
    retries after refreshing the topology, not an ``AttributeError`` on ``None``."""
    client = create_redis(redis_cluster_url)
    reads = BlockingReads(client)
    try:
        await client.initialize()  # type: ignore[attr-defined]
        monkeypatch.setattr(client, "get_node_from_key", lambda *_, **__: None)
        with pytest.raises(RedisConnectionError, match="no node holds"):
            await reads.xread({f"{{{key_prefix}}}:a": "0"}, count=1, block_ms=None)
    finally:
        await reads.aclose()
        await client.aclose()
