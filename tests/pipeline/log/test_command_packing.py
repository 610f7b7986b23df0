"""Commands packed by hiredis (:class:`pipeline.log.redis_client.SafeConnection`) are the
bytes redis-py's own packing sends, for every argument redis-py takes; what it refuses is
still refused as redis-py refuses it. A cluster client's remembered key slots are
redis-py's."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio.connection import Connection
from redis.cluster import key_slot
from redis.exceptions import DataError

from pipeline.log._cluster_client import SLOT_CACHE, BoundedCluster
from pipeline.log.redis_client import SafeConnection

ARGUMENT = st.one_of(
    st.binary(max_size=64), st.text(max_size=32), st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.binary(max_size=16).map(memoryview),
    st.binary(min_size=7000, max_size=9000),  # past redis-py's buffer cutoff
)
HEAD = st.sampled_from(["EVALSHA", "XREAD", "CONFIG GET", b"SET", b"CLIENT SETNAME"])


def sent(packed: list[bytes]) -> bytes:
    return b"".join(bytes(piece) for piece in packed)


@given(HEAD, st.lists(ARGUMENT, max_size=12))
def test_hiredis_packs_the_bytes_redis_py_packs(head: str | bytes, args: list[object]) -> None:
    ours, theirs = SafeConnection(), Connection()
    assert sent(ours.pack_command(head, *args)) == sent(theirs.pack_command(head, *args))


@pytest.mark.parametrize("bad", [True, None, [1], {"a": 1}])
def test_what_redis_py_refuses_is_refused_the_same_way(bad: object) -> None:
    with pytest.raises(DataError) as ours:
        SafeConnection().pack_command("SET", "key", bad)
    with pytest.raises(DataError) as theirs:
        Connection().pack_command("SET", "key", bad)
    assert str(ours.value) == str(theirs.value)


def test_another_encoding_is_packed_by_redis_py() -> None:
    connection = SafeConnection(encoding="latin-1")
    assert sent(connection.pack_command("SET", "k", "é")).endswith(b"\r\n\xe9\r\n")


@given(st.lists(st.one_of(st.text(max_size=40), st.binary(max_size=40)), max_size=50))
def test_a_remembered_slot_is_redis_pys(keys: list[str | bytes]) -> None:
    cluster = BoundedCluster(max_connections=4, wait_s=1.0, host="127.0.0.1", port=1)
    for key in keys + keys:
        expected = key_slot(key.encode() if isinstance(key, str) else key)
        assert cluster.keyslot(key) == expected
    assert cluster.keyslot(7) == key_slot(b"7")  # not remembered: not a str or bytes


def test_the_slot_memory_is_bounded() -> None:
    cluster = BoundedCluster(max_connections=4, wait_s=1.0, host="127.0.0.1", port=1)
    for number in range(SLOT_CACHE + 10):
        cluster.keyslot(f"session:{number}")
    assert len(cluster._slots) <= SLOT_CACHE
