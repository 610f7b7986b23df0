"""Forming a local cluster: a node counts as known once it is past its handshake, so a
``REPLICATE`` never names a node its replica does not know yet ("Unknown node")."""

from __future__ import annotations

from voxline.redis_cluster import knows_all

A, B, C = "a" * 40, "b" * 40, "c" * 40
SETTLED = f"""\
{A} 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
{B} 127.0.0.1:7002@17002 master - 0 1700000000000 2 connected 5461-10922
{C} 127.0.0.1:7003@17003 master - 0 1700000000000 3 connected 10923-16383
"""
#: C seen through the handshake: a temporary id, and the link already "connected"
IN_HANDSHAKE = SETTLED.replace(f"{C} 127.0.0.1:7003@17003 master",
                               f"{'d' * 40} 127.0.0.1:7003@17003 handshake")


def test_a_settled_view_knows_every_node() -> None:
    assert knows_all(SETTLED, {A, B, C})


def test_a_node_in_its_handshake_is_not_known_yet() -> None:
    assert len(IN_HANDSHAKE.splitlines()) == 3  # counting connected lines said "all 3"
    assert not knows_all(IN_HANDSHAKE, {A, B, C})


def test_a_failed_or_disconnected_node_is_not_known() -> None:
    failed = SETTLED.replace(f"{B} 127.0.0.1:7002@17002 master",
                             f"{B} 127.0.0.1:7002@17002 master,fail")
    gone = SETTLED.replace("2 connected", "2 disconnected")
    assert not knows_all(failed, {A, B, C}) and not knows_all(gone, {A, B, C})
