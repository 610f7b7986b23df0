"""The client :func:`pipeline.log.create_redis` builds, where redis-py alone fails: a
write into a connection another task is closing (as CPython 3.12 reports it), and a
burst of commands from a cluster client that has not learnt its routing yet, past its
nodes' pools."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pipeline.log import EventLog, create_redis
from pipeline.log.redis_client import SafeConnection
from schemas import EventLogSettings, InputText, InputTextData, RedisSettings

pytestmark = pytest.mark.redis

CLOSING = TypeError("'NoneType' object is not callable")  # asyncio's writelines, 3.12


def connect_to(url: str, socket_timeout: float | None = None) -> SafeConnection:
    parts = urlsplit(url)
    return SafeConnection(host=parts.hostname or "127.0.0.1", port=parts.port or 6379,
                          socket_timeout=socket_timeout)


async def test_a_write_into_a_transport_being_closed_is_a_connection_loss(
    standalone_redis_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On 3.12 the write races a close as ``TypeError`` (gh-136234), which nothing retried:
    it must be a connection error, which the client's retry policy takes."""
    connection = connect_to(standalone_redis_url)
    await connection.connect()

    writer = connection._writer
    assert writer is not None

    def closed_under_it(*_: Any) -> None:
        writer.transport.close()  # another task's aclose()
        raise CLOSING

    monkeypatch.setattr(writer, "writelines", closed_under_it)
    with pytest.raises(RedisConnectionError, match="closed while in use"):
        await connection.send_packed_command(b"PING\r\n")
    assert not connection.is_connected


async def test_a_type_error_on_an_open_connection_still_shows(
    standalone_redis_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    connection = connect_to(standalone_redis_url)
    await connection.connect()

    def a_bug(*_: Any) -> None:
        raise TypeError("a bug of ours")

    monkeypatch.setattr(connection._writer, "writelines", a_bug)
    try:
        with pytest.raises(TypeError, match="a bug of ours"):
            await connection.send_packed_command(b"PING\r\n")
    finally:
        await connection.disconnect()


async def test_a_write_that_need_not_wait_runs_no_task_or_timer(
    standalone_redis_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """redis-py wraps every write in ``asyncio.wait_for`` (a task and a timer on 3.11);
    a write into a socket with room is made at once, and answered as before."""
    connection = connect_to(standalone_redis_url, socket_timeout=5.0)
    await connection.connect()

    def no_wait_for(*_: Any, **__: Any) -> None:
        raise AssertionError("a write ran in wait_for")

    monkeypatch.setattr(asyncio, "wait_for", no_wait_for)
    try:
        await connection.send_command("PING")
        assert await connection.read_response() == b"PONG"
    finally:
        await connection.disconnect()


async def test_a_drain_that_does_not_end_is_a_timeout_and_drops_the_connection(
    standalone_redis_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A full send buffer still waits at most the socket timeout, as redis-py's write."""
    connection = connect_to(standalone_redis_url, socket_timeout=0.05)
    await connection.connect()
    writer = connection._writer
    assert writer is not None

    async def never() -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(writer.transport, "get_write_buffer_size", lambda: 1 << 20)
    monkeypatch.setattr(writer, "drain", never)
    with pytest.raises(RedisTimeoutError, match="Timeout writing"):
        await connection.send_command("PING")
    assert not connection.is_connected


async def test_a_startup_burst_on_a_fresh_cluster_client_waits_and_routes_right(
    redis_cluster_url: str, key_prefix: str,
) -> None:
    """A reader's start: many catch-up reads at once from a client that has not asked
    the cluster for its routing, past a node's pool (192 reads on a bound of 100 failed
    92 with MaxConnectionsError). Every read is answered, and no node ever opens more
    connections than its bound."""
    settings = EventLogSettings(key_prefix=key_prefix)
    writer = create_redis(redis_cluster_url)
    sessions = [f"burst{i}" for i in range(24)]
    try:
        log = EventLog(writer, settings)
        for session in sessions:
            await log.append(InputText(session_id=session, data=InputTextData(text=session)))
    finally:
        await writer.aclose()
    fresh = create_redis(redis_cluster_url, RedisSettings(max_connections=6))
    try:
        reader = EventLog(fresh, settings)
        reads = [reader.read_all(sessions[n % len(sessions)]) for n in range(300)]
        answers = await asyncio.wait_for(asyncio.gather(*reads), 60)
        assert [a[0].data.text for a in answers] == [  # type: ignore[union-attr]
            sessions[n % len(sessions)] for n in range(300)]
        opened = {node.name: len(node._connections)  # type: ignore[attr-defined]
                  for node in fresh.get_nodes()}  # type: ignore[attr-defined]
        assert max(opened.values()) <= 6, opened
    finally:
        await fresh.aclose()
